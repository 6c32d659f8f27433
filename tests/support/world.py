"""The test world: estates, staff of every role, tickets, alarms and rounds, built once here and shared by
the api, dashboards, tickets and rounds tests.

One builder, ``populate``, puts estates of a chosen shape (``estate_file``: small, with residents, one room of
every kind, or the sample estate examples/estate.yaml) and accounts (one per role, named extras, tokens)
into a session; the worlds below are its option sets:

- ``build_world``: a migrated database of its own with two estates (apia with residents, apib), one account
  per role scoped to apia, head-office and scope accounts, and an alarm, ticket and round in each estate
  (``World`` adds fresh ones on demand: ``new_ticket(status)``, ``new_alarm()``, ``new_round()``, ...);
- ``build_sample_world``: a migrated database of its own with the sample estate and a second one nobody but
  head office sees, one account per role (display names) and 张工 (the dashboards; they seed history on it);
- ``rooms_estate_in``: an estate with one room of every kind in the test's rolled-back session, with the
  default rules (the rounds and stale-data tests), as a ``RoomsEstate`` handle;
- ``staff_per_role``: one account of every role for an estate (the dashboards' and tickets API's worlds);
- ``make_estate``/``make_rule``/``make_staff``/``insert_alarm``: small ORM-built estates with fresh codes for
  tests that share the session database (the ticket domain tests and the ticket pages).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_token, create_user
from alarms.packs import ensure_default_rules
from alarms.store import NewAlarm, insert_alarms
from core import clock
from devkit.estate import small_estate
from facility.importer import import_estate
from protocol.estate_file import EstateFile, load_estate_file
from storage.models import AlarmRuleRow, Building, Device, Estate, Point, Room, StaffEstate, StaffUser, Ticket, Unit

PASSWORD = "correct-horse-battery"
# Accounts for the scope rows of the access matrix: (role, estates, all_estates). The one-per-role accounts
# ("admin-user", "supervisor-user", ...) are scoped to apia; these add no-estate and head-office ones.
SCOPE_ACCOUNTS: dict[str, tuple[Role, list[str], bool]] = {
    "noestate-admin": (Role.admin, [], False),
    "noestate-engineer": (Role.engineer, [], False),
    "hq-engineer": (Role.engineer, [], True),
    "hq-supervisor": (Role.supervisor, [], True),
    "hq-manager": (Role.manager, [], True),
}


@dataclass(frozen=True)
class World:
    engine: Engine
    estate: str  # the estate every account may see
    other_estate: str  # an estate nobody but the head-office admin may see
    tokens: dict[Role, str]
    room_id: int
    device_id: int
    point_id: int
    other_room_id: int
    other_device_id: int
    other_point_id: int
    alarm_id: int
    other_alarm_id: int
    ticket_id: int
    other_ticket_id: int
    round_id: int
    other_round_id: int
    room_code: str = "PR1"
    # Accounts beside the one-per-role set, by username (see SCOPE_ACCOUNTS): tokens for the scope rows.
    named_tokens: dict[str, str] = field(default_factory=dict)

    def new_alarm(self, estate: str | None = None) -> int:
        """A fresh open alarm on the estate's first sensor point (for routes that close one)."""
        return raise_alarm(self.engine, estate or self.estate)

    def new_ticket(
        self, status: str = "received", estate: str | None = None, *, complaint: bool = False, source: str | None = None
    ) -> int:
        """A fresh resident ticket walked to ``status`` (assigned to engineer-user), for routes that move one;
        `source` opens another kind (a patrol finding for the extension route)."""
        return make_ticket(self.engine, estate or self.estate, status, complaint=complaint, source=source)

    def new_token(self, username: str = "engineer-user") -> int:
        """A fresh bearer token of the account (for routes that revoke one); returns its id."""
        from sqlalchemy import select

        from accounts.service import issue_token
        from storage.models import StaffUser

        with Session(self.engine) as s, s.begin():
            user = s.scalars(select(StaffUser).where(StaffUser.username == username)).one()
            return int(issue_token(s, user, "to-revoke")[1].id)

    def new_user(self, estate: str | None = None) -> int:
        """A fresh viewer account of the estate (for routes that deactivate one); no password can open it."""
        import uuid

        from storage.models import Estate, StaffEstate, StaffUser

        with Session(self.engine) as s, s.begin():
            user = StaffUser(username=f"victim-{uuid.uuid4().hex[:10]}", password_hash="!", role="viewer", active=True)
            s.add(user)
            s.flush()
            estate_id = s.query(Estate.id).filter(Estate.code == (estate or self.estate)).scalar()
            s.add(StaffEstate(user_id=user.id, estate_id=estate_id))
            return int(user.id)

    def new_round(self, estate: str | None = None) -> int:
        """A fresh open inspection round of the estate's power room, its window around `core.clock` now."""
        return make_round(self.engine, estate or self.estate)


def _with_residents(doc: EstateFile) -> EstateFile:
    data = doc.model_dump(mode="json")
    data["buildings"] = [{"code": "1", "name": "1幢", "floors": 2, "units_per_floor": 2}]
    data["residents"] = [
        {"unit": "1-1-101", "name": "张三丰", "phone": "13812345678", "role": "owner"},
        {"unit": "1-1-102", "name": "李四", "phone": "13987654321", "role": "tenant", "lease_end": "2027-06-30"},
    ]
    return EstateFile.model_validate(data)


def rooms_estate(code: str) -> EstateFile:
    """An estate with one room of every kind: a power room with LV, capacitor, environment and transformer
    points, a heat station with one exchanger, empty pump, fire-pump and hot-water rooms, one household meter."""
    return EstateFile.model_validate(
        {
            "estate": {"code": code, "name": f"巡检测试 {code}", "timezone": "Asia/Shanghai"},
            "rooms": [
                {
                    "code": "PR1",
                    "name": "1号配电房",
                    "kind": "power_room",
                    "devices": [
                        {
                            "code": f"{code.upper()}-LV1",
                            "kind": "lv_incomer",
                            "expected_interval_s": 15,
                            "points": [{"metric": "voltage_a_v", "unit": "V"}],
                        },
                        {
                            "code": f"{code.upper()}-CAP1",
                            "kind": "capacitor_cabinet",
                            "expected_interval_s": 60,
                            "points": [{"metric": "case_temp_c", "unit": "°C"}],
                        },
                        {
                            "code": f"{code.upper()}-ENV",
                            "kind": "room_environment",
                            "expected_interval_s": 30,
                            "points": [{"metric": "room_temp_c", "unit": "°C"}],
                        },
                        {
                            "code": f"{code.upper()}-TR1",
                            "kind": "dry_type_transformer",
                            "expected_interval_s": 30,
                            "points": [{"metric": "winding_temp_a_c", "unit": "°C"}],
                        },
                    ],
                },
                {
                    "code": "HS1",
                    "name": "热力站",
                    "kind": "heat_station",
                    "devices": [
                        {
                            "code": f"{code.upper()}-HX1",
                            "kind": "plate_heat_exchanger",
                            "points": [{"metric": "secondary_supply_temp_c", "unit": "°C"}],
                        }
                    ],
                },
                {"code": "PUMP1", "name": "生活水泵房", "kind": "pump_room", "devices": []},
                {"code": "FIRE1", "name": "消防泵房", "kind": "fire_pump_room", "devices": []},
                {"code": "HWP1", "name": "热水机房", "kind": "hot_water_plant", "devices": []},
            ],
            "devices": [{"code": f"{code.upper()}-HW1", "kind": "hot_water_meter", "register_max": "99999.999"}],
        }
    )


SAMPLE_ESTATE_FILE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"
Shape = Literal["small", "residents", "rooms", "sample"]


def estate_file(shape: Shape, code: str = "", *, sensors: int = 20, meters: int = 5) -> EstateFile:
    """An estate of one shape: ``small`` (``sensors`` transformer sensors and ``meters`` meters), ``residents``
    (small, plus a building with two resident households), ``rooms`` (one room of every kind) or ``sample``
    (examples/estate.yaml; its own code)."""
    if shape == "sample":
        return load_estate_file(SAMPLE_ESTATE_FILE)
    if shape == "rooms":
        return rooms_estate(code)
    doc = small_estate(code, sensors=sensors, meters=meters)
    return _with_residents(doc) if shape == "residents" else doc


@dataclass(frozen=True)
class Account:
    """An account beside the one-per-role set."""

    username: str
    role: Role
    estates: Sequence[str] = ()
    all_estates: bool = False
    display_name: str = ""


HEAD_OFFICE = Account("head-office", Role.admin, all_estates=True)


@dataclass(frozen=True)
class Populated:
    staff: dict[Role, StaffUser]  # one account per role (empty if not asked)
    tokens: dict[Role, str]  # their bearer tokens (if asked)
    named_tokens: dict[str, str]  # every token by username (if asked)


def populate(
    session: Session,
    estates: Sequence[EstateFile],
    *,
    staff_in: Sequence[str] | None = None,
    display_names: bool = False,
    accounts: Sequence[Account] = (),
    tokens: bool = False,
    default_rules: bool = False,
) -> Populated:
    """The one world builder: import the estates, then (``staff_in``) one account per role scoped to those
    estates (their role as display name with ``display_names``), then ``accounts`` in order, each with a bearer
    token right after it if ``tokens``; then the default alarm rules if ``default_rules``. All with PASSWORD."""
    for doc in estates:
        import_estate(session, doc)
    staff: dict[Role, StaffUser] = {}
    if staff_in is not None:
        staff = staff_per_role(
            session, list(staff_in), display_name=(lambda role: f"{role.value}") if display_names else (lambda _: "")
        )
    role_tokens = {role: create_token(session, user, "tests") for role, user in staff.items()} if tokens else {}
    named_tokens = {f"{role.value}-user": token for role, token in role_tokens.items()}
    for account in accounts:
        user = create_user(
            session,
            username=account.username,
            password=PASSWORD,
            role=account.role,
            estates=list(account.estates),
            all_estates=account.all_estates,
            display_name=account.display_name,
        )
        if tokens:
            named_tokens[account.username] = create_token(session, user, "tests")
    if default_rules:
        ensure_default_rules(session)
    return Populated(staff, role_tokens, named_tokens)


@contextmanager
def own_database(pg_server_url: str, prefix: str) -> Iterator[tuple[str, Engine]]:
    """A migrated database of its own (url, engine), dropped on exit."""
    from devkit.postgres import create_database, drop_database
    from storage.migrate import upgrade

    url = create_database(pg_server_url, prefix=prefix)
    upgrade(url)
    engine = create_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        drop_database(pg_server_url, url)


@contextmanager
def build_world(pg_server_url: str, prefix: str = "steward_api") -> Iterator[World]:
    """A migrated database of its own with estates apia (residents) and apib, one account per role
    scoped to apia, and the head-office admin 'head-office' who sees every estate. Dropped on exit.
    Rows dated "now" (alarms, rounds, schedule anchors) take it from `core.clock`: pin it to build the world
    at an instant."""
    scope_accounts = [
        Account(name, role, estates, all_estates) for name, (role, estates, all_estates) in SCOPE_ACCOUNTS.items()
    ]
    with own_database(pg_server_url, prefix) as (_, engine):
        with Session(engine) as s, s.begin():
            made = populate(
                s,
                [
                    estate_file("residents", "apia", sensors=3, meters=2),
                    estate_file("small", "apib", sensors=2, meters=1),
                ],
                staff_in=["apia"],
                accounts=[HEAD_OFFICE, *scope_accounts],
                tokens=True,
            )
            ids = {}
            for code in ("apia", "apib"):
                room, device, point = s.execute(
                    select(Room.id, Device.id, Point.id)
                    .join(Device, Device.room_id == Room.id)
                    .join(Point, Point.device_id == Device.id)
                    .where(Device.code == f"{code.upper()}-S0000")
                    .limit(1)
                ).one()
                ids[code] = (room, device, point)
            ensure_default_rules(s)
        alarms = {code: raise_alarm(engine, code) for code in ("apia", "apib")}
        tickets = {code: make_ticket(engine, code, "received") for code in ("apia", "apib")}
        rounds = {code: make_round(engine, code) for code in ("apia", "apib")}
        yield World(
            engine,
            "apia",
            "apib",
            made.tokens,
            *ids["apia"],
            *ids["apib"],
            alarms["apia"],
            alarms["apib"],
            tickets["apia"],
            tickets["apib"],
            rounds["apia"],
            rounds["apib"],
            named_tokens=made.named_tokens,
        )


# --- the sample estate (the dashboards) ------------------------------------------------------------------------

SAMPLE_ESTATE = "lvyuan"  # the code in examples/estate.yaml
SAMPLE_OTHER = "dashb"


@dataclass(frozen=True)
class SampleWorld:
    url: str
    engine: Engine
    estate: str
    other_estate: str
    rooms: dict[str, int]  # room code -> id (sample estate)
    devices: dict[str, int]  # device code -> id (both estates)
    other_room_id: int
    # device code -> metric -> (nominal, noise), for the room devices of the sample estate
    nominal: dict[str, dict[str, tuple[float, float]]]
    point_ids: dict[tuple[str, str], int]


def nominal_values(doc: EstateFile) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for room in doc.rooms:
        for device in room.devices:
            if device.points:
                out[device.code] = {p.metric: (float(p.nominal or 0.0), float(p.noise or 0.0)) for p in device.points}
    return out


@contextmanager
def build_sample_world(pg_server_url: str, prefix: str = "steward_dash") -> Iterator[SampleWorld]:
    """A migrated database of its own with the sample estate (examples/estate.yaml) and a second estate nobody
    but head office sees, one account per role of the sample estate (their role as display name), the
    engineer 张工 (zhang.gong) and the head-office admin (总部). No history: the caller seeds what it shows."""
    doc = estate_file("sample")
    nominal = nominal_values(doc)
    with own_database(pg_server_url, prefix) as (url, engine):
        with Session(engine) as s, s.begin():
            populate(
                s,
                [doc, estate_file("small", SAMPLE_OTHER, sensors=2, meters=1)],
                staff_in=[SAMPLE_ESTATE],
                display_names=True,
                accounts=[
                    Account("zhang.gong", Role.engineer, [SAMPLE_ESTATE], display_name="张工"),
                    Account("head-office", Role.admin, all_estates=True, display_name="总部"),
                ],
            )
            rooms: dict[str, int] = dict(
                s.execute(
                    text("SELECT r.code, r.id FROM rooms r JOIN estates e ON e.id = r.estate_id WHERE e.code = :e"),
                    {"e": SAMPLE_ESTATE},
                ).all()
            )
            other_room = s.scalar(
                text("SELECT r.id FROM rooms r JOIN estates e ON e.id = r.estate_id WHERE e.code = :e"),
                {"e": SAMPLE_OTHER},
            )
            devices = dict(s.execute(select(Device.code, Device.id)).all())
            point_ids = {
                (code, metric): pid
                for code, metric, pid in s.execute(
                    select(Device.code, Point.metric, Point.id).join(Point, Point.device_id == Device.id)
                ).all()
                if code in nominal
            }
        yield SampleWorld(url, engine, SAMPLE_ESTATE, SAMPLE_OTHER, rooms, devices, int(other_room), nominal, point_ids)


# --- an estate with one room of every kind, in the test's session (rounds, stale data) -------------------------


@dataclass
class RoomsEstate:
    session: Session
    code: str
    id: int

    def room(self, code: str) -> Room:
        return self.session.scalars(select(Room).where(Room.estate_id == self.id, Room.code == code)).one()

    def point(self, device_suffix: str, metric: str) -> int:
        return int(
            self.session.scalar(
                select(Point.id)
                .join(Device, Device.id == Point.device_id)
                .where(Device.code == f"{self.code.upper()}-{device_suffix}", Point.metric == metric)
            )
            or 0
        )

    def device(self, suffix: str) -> Device:
        return self.session.scalars(select(Device).where(Device.code == f"{self.code.upper()}-{suffix}")).one()

    def sample(self, point_id: int, ts: datetime, value: float) -> None:
        self.session.execute(
            text("INSERT INTO samples (ts, point_id, value) VALUES (:ts, :p, :v) ON CONFLICT DO NOTHING"),
            {"ts": ts, "p": point_id, "v": value},
        )


def rooms_estate_in(session: Session, prefix: str = "rd") -> RoomsEstate:
    """A fresh ``rooms`` estate (code ``{prefix}-…``) with the default rules, in the caller's session."""
    code = f"{prefix}-{uuid.uuid4().hex[:8]}"
    populate(session, [estate_file("rooms", code)], default_rules=True)
    estate_id = session.scalar(select(Estate.id).where(Estate.code == code))
    assert estate_id is not None
    return RoomsEstate(session, code, estate_id)


ALARM_RULE = "dry_transformer.winding_temp_a.high"


def raise_alarm(engine: Engine, estate: str) -> int:
    """Open an alarm the way the evaluator does (alarms.store), on a point of its own so none collide."""
    import uuid

    from sqlalchemy import text

    from alarms.store import NewAlarm, insert_alarms

    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT p.id AS point, d.id AS device, d.estate_id AS estate, r.id AS rule FROM points p "
                "JOIN devices d ON d.id = p.device_id JOIN estates e ON e.id = d.estate_id "
                "JOIN alarm_rules r ON r.code = :rule WHERE e.code = :e AND p.metric = 'winding_temp_a_c' "
                "ORDER BY p.id LIMIT 1"
            ),
            {"e": estate, "rule": ALARM_RULE},
        ).one()
        [alarm_id] = insert_alarms(
            conn,
            [
                NewAlarm(
                    rule_id=row.rule,
                    subject=f"test:{uuid.uuid4().hex}",  # unique, so every call opens a new episode
                    estate_id=row.estate,
                    severity="alarm",
                    raised_at=clock.now(),
                    point_id=row.point,
                    device_id=row.device,
                    peak=160.0,
                    last_value=160.0,
                )
            ],
        )
    return alarm_id


# The steps a ticket takes to reach each status (tickets/service.py), all by their usual actors.
_WALK = ("dispatched", "accepted", "on_site", "resolved", "callback_done", "closed")


def make_ticket(engine: Engine, estate: str, status: str, *, complaint: bool = False, source: str | None = None) -> int:
    from sqlalchemy import select

    from storage.models import Estate, StaffUser
    from tickets import service

    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()
        # engineer-user works in apia only; in the other estate the head-office admin takes the job.
        worker = "engineer-user" if estate == "apia" else "head-office"
        engineer = s.scalars(select(StaffUser.id).where(StaffUser.username == worker)).one()
        t = service.open_ticket(
            s,
            estate_id=estate_id,
            source=source or ("complaint" if complaint else "resident"),
            category="water",
            priority="normal",
            title="厨房水龙头漏水 / kitchen tap leaking",
            received_by="steward-user",
            reporter_name="张三丰",
            reporter_phone="13812345678",
        )
        steps = _WALK[: _WALK.index(status) + 1] if status in _WALK else ()
        for step in steps:
            if step == "dispatched":
                service.dispatch(s, t, engineer, "steward-user")
            elif step == "accepted":
                service.accept(s, t, worker)
            elif step == "on_site":
                service.arrive_on_site(s, t, worker)
            elif step == "resolved":
                service.resolve(s, t, worker, work_done="换阀芯 / replaced the cartridge")
            elif step == "callback_done":
                service.record_callback(s, t, "steward-user", "phone", 5)
            else:
                service.close(s, t, "steward-user")
        return int(t.id)


_round_seq = iter(range(1, 1_000_000))


def make_round(engine: Engine, estate: str) -> int:
    from datetime import timedelta

    from sqlalchemy import text

    from alarms.rounds import ensure_default_schedules

    with Session(engine) as s, s.begin():
        estate_id = s.execute(text("SELECT id FROM estates WHERE code = :e"), {"e": estate}).scalar_one()
        ensure_default_schedules(s, estate_id)
        # A window of its own (the unique key is schedule + window start), open around now: whole seconds
        # plus a per-call count of microseconds, so no two calls share a start whatever the clock does.
        base = clock.now().replace(microsecond=0)
        start = base - timedelta(hours=1) + timedelta(microseconds=next(_round_seq))
        now = base + timedelta(hours=3)
        return int(
            s.execute(
                text(
                    "INSERT INTO inspection_rounds (schedule_id, estate_id, room_id, window_start, window_end) "
                    "SELECT id, estate_id, room_id, :start, :end FROM round_schedules "
                    "WHERE estate_id = :e ORDER BY id LIMIT 1 RETURNING id"
                ),
                {"start": start, "end": now + timedelta(hours=1), "e": estate_id},
            ).scalar_one()
        )


def staff_per_role(
    session: Session,
    estates: list[str],
    *,
    username: Callable[[Role], str] = lambda role: f"{role.value}-user",
    display_name: Callable[[Role], str] = lambda role: "",
) -> dict[Role, StaffUser]:
    """One account of every role, scoped to these estates, all with PASSWORD."""
    return {
        role: create_user(
            session,
            username=username(role),
            password=PASSWORD,
            role=role,
            estates=estates,
            display_name=display_name(role),
        )
        for role in Role
    }


_addresses = iter(range(1, 1 << 24))


def client_address() -> str:
    """A client address of its own (only a string in the ASGI scope: nothing is sent anywhere), so the login
    limits per address of one test do not spill into the next."""
    n = next(_addresses)
    return f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def bearer(world: World, role: Role | str) -> dict[str, str]:
    """The bearer header of the apia account of a role, or of a named account (SCOPE_ACCOUNTS)."""
    token = world.tokens[role] if isinstance(role, Role) else world.named_tokens[role]
    return {"Authorization": f"Bearer {token}"}


def add_samples(engine: Engine, point_id: int, samples: list[tuple[datetime, float]]) -> int:
    """Store samples the way ingest does (and its hourly rollup on plain PostgreSQL); returns how many were new."""
    from ingest.decode import DecodedBatch
    from ingest.writer import write_batch
    from storage.timescale import has_timescale

    batch = DecodedBatch(
        sample_ts=[ts for ts, _ in samples],
        sample_point=[point_id] * len(samples),
        sample_value=[v for _, v in samples],
    )
    with engine.begin() as conn:
        result = write_batch(conn, batch, now=clock.now(), gaps=[], last_seq={}, keep_rollup=not has_timescale(conn))
    return result.samples_stored


# --- small ORM-built estates (ticket domain tests, ticket pages) ----------------------------------------

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


@dataclass(frozen=True)
class Place:
    estate_id: int
    code: str
    room_id: int
    unit_id: int
    sensor_id: int
    valve_meter_id: int
    plain_meter_id: int


def make_estate(session: Session, *, policy: dict[str, Any] | None = None) -> Place:
    code = f"tk-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"工单测试 {code}", timezone="Asia/Shanghai", policy=policy or {})
    session.add(estate)
    session.flush()
    building = Building(estate_id=estate.id, code="1", name="1幢", floors=2)
    room = Room(estate_id=estate.id, code="PR1", name="配电房", kind="power_room")
    session.add_all([building, room])
    session.flush()
    unit = Unit(building_id=building.id, code="1-1-101", floor=1, area_m2=Decimal("88.50"), occupancy="vacant")
    session.add(unit)
    session.flush()
    sensor = Device(
        estate_id=estate.id, code=f"{code.upper()}-S0", kind="transformer", name="1号变压器", room_id=room.id
    )
    valve = Device(
        estate_id=estate.id, code=f"{code.upper()}-MV", kind="hot_water_meter", unit_id=unit.id, has_valve=True
    )
    plain = Device(estate_id=estate.id, code=f"{code.upper()}-MP", kind="hot_water_meter", unit_id=unit.id)
    session.add_all([sensor, valve, plain])
    session.flush()
    return Place(estate.id, code, room.id, unit.id, sensor.id, valve.id, plain.id)


def make_rule(
    session: Session,
    *,
    kind: str = "threshold",
    metric: str = "winding_temp_a_c",
    ticket_policy: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    room_kind: str | None = "power_room",
    device_kind: str | None = None,
    title_zh: str = "绕组温度过高",
) -> int:
    rule = AlarmRuleRow(
        code=f"test.{uuid.uuid4().hex[:10]}",
        kind=kind,
        metric=metric,
        room_kind=room_kind,
        device_kind=device_kind,
        title_zh=title_zh,
        title_en="Winding temperature high",
        params=params or {},
        ticket_policy=ticket_policy or {},
    )
    session.add(rule)
    session.flush()
    return rule.id


def make_staff(session: Session, place: Place, role: str = "engineer") -> int:
    user = StaffUser(username=f"{role}-{uuid.uuid4().hex[:8]}", password_hash="x", role=role, active=True)
    session.add(user)
    session.flush()
    session.add(StaffEstate(user_id=user.id, estate_id=place.estate_id))
    session.flush()
    return user.id


def insert_alarm(
    conn: Connection,
    rule_id: int,
    place: Place,
    *,
    severity: str = "alarm",
    subject: str | None = None,
    device_id: int | None = None,
    at: datetime = T0,
    cleared: bool = False,
) -> int:
    """Insert one alarm episode the way producers do (alarms.store), without the ticket hook."""
    device = device_id if device_id is not None else place.sensor_id
    ids = insert_alarms(
        conn,
        [
            NewAlarm(
                rule_id=rule_id,
                subject=subject or f"device:{device}",
                estate_id=place.estate_id,
                severity=severity,
                raised_at=at,
                device_id=device,
                cleared_at=at if cleared else None,
            )
        ],
    )
    assert len(ids) == 1, "an open alarm already exists for this rule and subject"
    return ids[0]


def tickets_of(conn: Connection | Session, estate_id: int) -> list[Ticket]:
    stmt = select(Ticket).where(Ticket.estate_id == estate_id).order_by(Ticket.id)
    if isinstance(conn, Session):
        return list(conn.scalars(stmt.execution_options(populate_existing=True)))
    with Session(bind=conn) as s:
        return list(s.scalars(stmt))
