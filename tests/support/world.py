"""The test world: estates, staff of every role, tickets, alarms and rounds, built once here and shared by
the api, dashboards, tickets and rounds tests.

- ``build_world``: a migrated database of its own with two estates (apia with residents, apib), one account
  per role scoped to apia, head-office and scope accounts, and an alarm, ticket and round in each estate
  (``World`` adds fresh ones on demand: ``new_ticket(status)``, ``new_alarm()``, ``new_round()``, ...);
- ``staff_per_role``: one account of every role for an estate (the dashboards' and tickets API's worlds);
- ``make_estate``/``make_rule``/``make_staff``/``insert_alarm``: small ORM-built estates with fresh codes for
  tests that share the session database (the ticket domain tests and the ticket pages).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, select
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_token, create_user
from alarms.packs import ensure_default_rules
from alarms.store import NewAlarm, insert_alarms
from core import clock
from facility.importer import import_estate
from protocol.estate_file import EstateFile
from storage.models import AlarmRuleRow, Building, Device, Estate, Room, StaffEstate, StaffUser, Ticket, Unit
from tests.support.estate import small_estate

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

    def new_ticket(self, status: str = "received", estate: str | None = None, *, complaint: bool = False) -> int:
        """A fresh resident ticket walked to ``status`` (assigned to engineer-user), for routes that move one."""
        return make_ticket(self.engine, estate or self.estate, status, complaint=complaint)

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


@contextmanager
def build_world(pg_server_url: str, prefix: str = "steward_api") -> Iterator[World]:
    """A migrated database of its own with estates apia (residents) and apib, one account per role
    scoped to apia, and the head-office admin 'head-office' who sees every estate. Dropped on exit.
    Rows dated "now" (alarms, rounds, schedule anchors) take it from `core.clock`: pin it to build the world
    at an instant."""
    from sqlalchemy import select

    from storage.migrate import upgrade
    from storage.models import Device, Point, Room
    from tests.support.postgres import create_database, drop_database

    url = create_database(pg_server_url, prefix=prefix)
    upgrade(url)
    engine = create_engine(url)
    with Session(engine) as s, s.begin():
        import_estate(s, _with_residents(small_estate("apia", sensors=3, meters=2)))
        import_estate(s, small_estate("apib", sensors=2, meters=1))
        tokens = {role: create_token(s, user, "tests") for role, user in staff_per_role(s, ["apia"]).items()}
        head_office = create_user(s, username="head-office", password=PASSWORD, role=Role.admin, all_estates=True)
        named_tokens = {f"{role.value}-user": token for role, token in tokens.items()}
        named_tokens["head-office"] = create_token(s, head_office, "tests")
        for name, (role, estates, all_estates) in SCOPE_ACCOUNTS.items():
            user = create_user(s, username=name, password=PASSWORD, role=role, estates=estates, all_estates=all_estates)
            named_tokens[name] = create_token(s, user, "tests")

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
    try:
        yield World(
            engine,
            "apia",
            "apib",
            tokens,
            *ids["apia"],
            *ids["apib"],
            alarms["apia"],
            alarms["apib"],
            tickets["apia"],
            tickets["apib"],
            rounds["apia"],
            rounds["apib"],
            named_tokens=named_tokens,
        )
    finally:
        engine.dispose()
        drop_database(pg_server_url, url)


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


def make_ticket(engine: Engine, estate: str, status: str, *, complaint: bool = False) -> int:
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
            source="complaint" if complaint else "resident",
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
