"""A shift worth handing over: an estate of its own (two rooms, a transformer with labelled points), the people of a
shift (two engineers, a supervisor, a project manager, a viewer, a steward) and a busy day shift's facts — alarms
raised, cleared and still open, tickets received, closed and still open with running and breached clocks,
inspection windows done and missed — each at a fixed local time of a given day.

Used by tests/alarms/test_handover.py (in the rolled-back session), the handover and wall pages (committed into
the dashboard world) and the access matrix (``new_handover``)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from accounts.const import Role
from accounts.service import create_user
from alarms.rounds import ensure_default_schedules
from storage.models import (
    Alarm,
    AlarmRuleRow,
    Device,
    Estate,
    InspectionRound,
    Point,
    Room,
    RoundSchedule,
    ShiftHandover,
    StaffUser,
)
from tests.support.world import PASSWORD
from tickets import service as tickets

SH = ZoneInfo("Asia/Shanghai")
POINTS = {
    "winding_temp_a_c": ("A相绕组温度", "°C"),
    "winding_temp_b_c": ("B相绕组温度", "°C"),
    "winding_temp_c_c": ("C相绕组温度", "°C"),
    "room_temp_c": ("室内温度", "°C"),
}


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), SH)


@dataclass
class HandoverPlace:
    estate_id: int
    code: str
    name: str
    room_id: int
    pump_room_id: int
    device_id: int
    device_code: str
    points: dict[str, int]
    users: dict[str, str] = field(
        default_factory=dict
    )  # who → username: eng1, eng2, supervisor, manager, viewer, steward
    user_ids: dict[str, int] = field(default_factory=dict)


_PEOPLE = {
    "eng1": (Role.engineer, "李工"),
    "eng2": (Role.engineer, "王工"),
    "supervisor": (Role.supervisor, "赵主管"),
    "manager": (Role.manager, "陈经理"),
    "viewer": (Role.viewer, "只读值守"),
    "steward": (Role.steward, "周管家"),
}


def seed_place(session: Session, *, people: bool = True, password: str = PASSWORD) -> HandoverPlace:
    """An estate with a power room (a transformer with four labelled points) and a pump room, and its people."""
    code = f"ho-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"交接班小区 {code[-4:]}", city="上海", timezone="Asia/Shanghai")
    session.add(estate)
    session.flush()
    room = Room(estate_id=estate.id, code="PR1", name="1号配电房", kind="power_room")
    pump = Room(estate_id=estate.id, code="PUMP1", name="生活水泵房", kind="pump_room")
    session.add_all([room, pump])
    session.flush()
    device = Device(
        estate_id=estate.id, code=f"{code.upper()}-TR1", kind="dry_type_transformer", name="1号变压器", room_id=room.id
    )
    session.add(device)
    session.flush()
    points = {}
    for metric, (label, unit) in POINTS.items():
        p = Point(device_id=device.id, metric=metric, unit=unit, kind="gauge", label=label)
        session.add(p)
        session.flush()
        points[metric] = p.id
    place = HandoverPlace(estate.id, code, estate.name, room.id, pump.id, device.id, device.code, points)
    if people:
        for who, (role, name) in _PEOPLE.items():
            user = create_user(
                session, username=f"{code}-{who}", password=password, role=role, display_name=name, estates=[code]
            )
            place.users[who] = user.username
            place.user_ids[who] = user.id
    return place


def user(session: Session, place: HandoverPlace, who: str) -> StaffUser:
    found = session.get(StaffUser, place.user_ids[who])
    assert found is not None
    return found


def _rule(session: Session, title: str) -> int:
    rule = AlarmRuleRow(
        code=f"ho.{uuid.uuid4().hex[:10]}",
        kind="threshold",
        metric="winding_temp_a_c",
        room_kind="power_room",
        title_zh=title,
        title_en="Winding temperature high",
        params={},
    )
    session.add(rule)
    session.flush()
    return rule.id


def add_alarm(
    session: Session,
    place: HandoverPlace,
    *,
    metric: str,
    severity: str,
    raised_at: datetime,
    cleared_at: datetime | None = None,
    acknowledged: bool = False,
    peak: float = 158.0,
    title: str = "绕组温度过高",
) -> int:
    """An alarm episode on one of the transformer's points, as the evaluator stores it."""
    state = "cleared" if cleared_at else ("acknowledged" if acknowledged else "active")
    alarm = Alarm(
        rule_id=_rule(session, title),
        subject=f"point:{place.points[metric]}:{uuid.uuid4().hex[:6]}",
        point_id=place.points[metric],
        device_id=place.device_id,
        room_id=place.room_id,
        estate_id=place.estate_id,
        severity=severity,
        state=state,
        raised_at=raised_at,
        acknowledged_at=raised_at + timedelta(minutes=3) if acknowledged or cleared_at else None,
        acknowledged_by=place.users.get("eng1") if acknowledged or cleared_at else None,
        cleared_at=cleared_at,
        clear_reason="condition_ended" if cleared_at else None,
        peak=peak,
        last_value=peak - 2.0,
    )
    session.add(alarm)
    session.flush()
    return alarm.id


def add_ticket(
    session: Session,
    place: HandoverPlace,
    *,
    title: str,
    received_at: datetime,
    priority: str = "high",
    closed_at: datetime | None = None,
) -> int:
    """A ticket received at ``received_at``; with ``closed_at`` cancelled then (a reasoned close of an unstarted
    ticket, the shortest honest way to a closed one)."""
    t = tickets.open_ticket(
        session,
        estate_id=place.estate_id,
        source="manual",
        category="electrical",
        priority=priority,
        title=title,
        received_by=place.users.get("eng1", "system"),
        room_id=place.room_id,
        device_id=place.device_id,
        received_at=received_at,
    )
    if closed_at is not None:
        tickets.close(session, t, place.users.get("supervisor", "system"), reason="重复报修 / duplicate", at=closed_at)
    session.flush()
    return int(t.id)


def add_rounds(session: Session, place: HandoverPlace, day: date, statuses: dict[int, str]) -> list[int]:
    """Inspection windows of the power room's first schedule starting at these local hours of ``day``."""
    ensure_default_schedules(session, place.estate_id, now=local(day, 0))
    schedule = session.scalars(
        select(RoundSchedule).where(RoundSchedule.room_id == place.room_id).order_by(RoundSchedule.code)
    ).first()
    assert schedule is not None
    ids = []
    for hour, status in sorted(statuses.items()):
        start = local(day, hour) if hour < 24 else local(day + timedelta(days=1), hour - 24)
        r = InspectionRound(
            schedule_id=schedule.id,
            estate_id=place.estate_id,
            room_id=place.room_id,
            window_start=start,
            window_end=start + timedelta(hours=2),
            status=status,
            satisfied_by="telemetry" if status == "satisfied" else ("manual" if status == "done" else None),
            performed_by=place.users.get("eng1") if status == "done" else None,
            performed_at=start + timedelta(minutes=40) if status == "done" else None,
        )
        session.add(r)
        session.flush()
        ids.append(r.id)
    return ids


def busy_day_shift(session: Session, place: HandoverPlace, day: date, *, extra: int = 0) -> None:
    """The day shift (08:00–20:00) of ``day``, with facts on both sides of its edges. ``extra`` adds that many more
    alarms and tickets of each kind (a storm: the printed record must still fit one A4 page)."""
    prev = day - timedelta(days=1)
    # Alarms: one from the night before, cleared in the night (not this shift's); one raised in the night and
    # cleared at 09:10 (cleared this shift); one raised 10:05 and cleared 11:30; a critical one from 17:40, open.
    add_alarm(
        session, place, metric="room_temp_c", severity="warning", raised_at=local(prev, 15), cleared_at=local(prev, 21)
    )
    add_alarm(
        session,
        place,
        metric="winding_temp_b_c",
        severity="alarm",
        raised_at=local(day, 6, 20),
        cleared_at=local(day, 9, 10),
    )
    add_alarm(
        session,
        place,
        metric="winding_temp_c_c",
        severity="alarm",
        raised_at=local(day, 10, 5),
        cleared_at=local(day, 11, 30),
    )
    add_alarm(
        session,
        place,
        metric="winding_temp_a_c",
        severity="critical",
        raised_at=local(day, 17, 40),
        peak=176.5,
        title="绕组温度严重超限",
    )
    for i in range(extra):
        add_alarm(
            session,
            place,
            metric="room_temp_c",
            severity="warning",
            raised_at=local(day, 12, i % 60),
            cleared_at=local(day, 13, i % 60),
        )
        add_alarm(
            session,
            place,
            metric="winding_temp_b_c",
            severity="alarm",
            raised_at=local(day, 14, i % 60),
            acknowledged=True,
        )
    # Tickets: one received yesterday still open (its clock ran out), one received 12:00 open, one received 09:00
    # and closed 14:00, one received after the shift (tomorrow 06:00 would be the night's: not created here).
    add_ticket(session, place, title="变压器风机异响", received_at=local(prev, 16), priority="normal")
    add_ticket(session, place, title="低压柜指示灯不亮", received_at=local(day, 12), priority="high")
    add_ticket(
        session, place, title="配电房门锁损坏", received_at=local(day, 9), priority="minor", closed_at=local(day, 14)
    )
    for i in range(extra):
        add_ticket(session, place, title=f"照明回路跳闸 {i + 1}", received_at=local(day, 15, i % 60), priority="urgent")
        add_ticket(
            session,
            place,
            title=f"重复报修 {i + 1}",
            received_at=local(day, 10, i % 60),
            priority="minor",
            closed_at=local(day, 16, i % 60),
        )
    # Rounds of the power room: 06:00 (the night's), 08:00 done by telemetry, 10:00 manual, 12:00 missed,
    # 14:00 missed, 16:00 satisfied, 18:00 still open; 20:00 is the night's.
    add_rounds(
        session,
        place,
        day,
        {
            6: "satisfied",
            8: "satisfied",
            10: "done",
            12: "missed",
            14: "missed",
            16: "satisfied",
            18: "open",
            20: "open",
        },
    )


def busy_day_shift_committed(engine: Engine, day: date, *, extra: int = 0, password: str = PASSWORD) -> HandoverPlace:
    """seed_place and busy_day_shift, committed (for the pages' and the browser's server)."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        place = seed_place(s, password=password)
        busy_day_shift(s, place, day, extra=extra)
    return place


# --- the access matrix: records to read and sign, and a clear slot to hand over ---------------------------------

_past_shifts = itertools.count()


def new_handover(engine: Engine, estate: str, outgoing: str = "hq-engineer") -> int:
    """An unsigned record of a long-past shift of the estate, handed over by ``outgoing`` (so any other account may
    sign it): each call a shift of its own."""
    n = next(_past_shifts)
    start = local(date(2001, 1, 1), 8) + timedelta(hours=12 * n)
    with Session(engine) as s, s.begin():
        estate_id = s.scalars(select(Estate.id).where(Estate.code == estate)).one()
        who = s.scalars(select(StaffUser).where(StaffUser.username == outgoing)).one()
        rec = ShiftHandover(
            estate_id=estate_id,
            shift_code="day" if n % 2 == 0 else "night",
            shift_name_zh="白班" if n % 2 == 0 else "夜班",
            shift_name_en="Day shift" if n % 2 == 0 else "Night shift",
            shift_start=start,
            shift_end=start + timedelta(hours=12),
            outgoing_id=who.id,
            outgoing_name=who.display_name or who.username,
            notes="矩阵测试 / matrix",
            snapshot={},
            handed_over_at=start + timedelta(hours=12),
        )
        s.add(rec)
        s.flush()
        return int(rec.id)


def clear_recent_handovers(engine: Engine, estate: str) -> None:
    """Forget the estate's records of the last three days (signed ones too: a DELETE is not an UPDATE), so the shift
    due now may be handed over afresh by whichever account calls next."""
    from core import clock

    with Session(engine) as s, s.begin():
        s.execute(
            delete(ShiftHandover).where(
                ShiftHandover.estate_id == select(Estate.id).where(Estate.code == estate).scalar_subquery(),
                ShiftHandover.shift_start > clock.now() - timedelta(days=3),
            )
        )


def set_updated(session: Session, handover_id: int, notes: str) -> None:
    """A raw UPDATE, as a buggy or malicious writer would: the trigger must refuse it once the record is signed."""
    session.execute(text("UPDATE shift_handovers SET notes = :n WHERE id = :id"), {"n": notes, "id": handover_id})


def new_display_token(engine: Engine, estate: str) -> int:
    """A live display token of the estate (each call a new one: revoking ends it)."""
    from accounts import display

    with Session(engine) as s, s.begin():
        place = s.scalars(select(Estate).where(Estate.code == estate)).one()
        _, row = display.issue(s, place, name="矩阵大屏 / matrix screen", created_by="matrix")
        return int(row.id)
