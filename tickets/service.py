"""Repair-ticket lifecycle (domain-defaults §4): open, dispatch, accept, on site, resolve, callback, close, reopen.

Every function takes a Session and plain values, flushes and never commits (the caller owns the
transaction), writes one `TicketEvent` per step and sets the step's timestamp (``core.clock.now()``
unless `at` is given). Transitions lock the ticket row (SELECT … FOR UPDATE) so two people acting on
one ticket at once take turns, and follow `tickets.const.TRANSITIONS`; anything else is a Conflict.
Messages are "English / 中文".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import (
    Alarm,
    Building,
    Device,
    Estate,
    Room,
    StaffEstate,
    StaffUser,
    Ticket,
    TicketEvent,
    Unit,
)
from tickets import sla, warranty
from tickets.const import (
    BEFORE_RESOLVED,
    CALLBACK_SOURCES,
    IN_PERSON_FAULTS,
    NUMBER_PREFIX,
    REOPENABLE,
    SYSTEM_ACTOR,
    TRANSITIONS,
    CallbackChannel,
    Category,
    ClockKind,
    Fault,
    Priority,
    Source,
    TicketStatus,
)

S = TicketStatus
# Tickets a source opens by itself take this row of §4's platform table unless the opener names one:
# an inspection ticket is a round that telemetry could not confirm (a missed round: the warning row).
DEFAULT_CLOCK_KIND: dict[Source, ClockKind] = {Source.inspection: ClockKind.warning}
# pg_advisory_xact_lock(space, yyyymmdd) serialises number allocation for one day (see allocate_numbers).
NUMBER_LOCK_SPACE = 0x7469636B  # "tick"
# The arbiter of "at most one open ticket per source_key" (the partial unique index uq_tickets_open_source_key).
OPEN_KEY_WHERE = and_(Ticket.status != S.closed.value, Ticket.source_key.is_not(None))
OPEN_KEY_SQL = text("status <> 'closed' AND source_key IS NOT NULL")


# --- numbers -----------------------------------------------------------------------------------------------------


def local_day(at: datetime, tz: str | None) -> date:
    return at.astimezone(ZoneInfo(tz or sla.DEFAULT_TZ)).date()


def local_minute(at: datetime, tz: str | None) -> str:
    """An instant as the estate's staff read it in a ticket's text: "2026-12-06 14:05", the estate's local time
    (never a UTC ISO timestamp)."""
    return at.astimezone(ZoneInfo(tz or sla.DEFAULT_TZ)).strftime("%Y-%m-%d %H:%M")


def allocate_numbers(conn: Connection, days: Sequence[date]) -> list[str]:
    """Ticket numbers GD<yyyymmdd>-<nnnn> for new tickets received on `days` (one number per entry, in order).

    Numbers are unique across estates (the column is globally unique) and run per local day. A
    transaction-scoped advisory lock per day makes allocation race-safe: a second transaction waits
    here until the first commits, then sees its numbers. Locks are taken in day order (no deadlock
    between two allocators) and only by transactions that actually open tickets.
    """
    if not days:
        return []
    keys = sorted({int(d.strftime("%Y%m%d")) for d in days})
    conn.execute(
        text("SELECT pg_advisory_xact_lock(:space, d) FROM unnest(CAST(:days AS int[])) AS d ORDER BY d"),
        {"space": NUMBER_LOCK_SPACE, "days": keys},
    )
    # A range on the unique index of `number` (valid in C and linguistic collations alike, as every number has
    # the same shape), rechecked with LIKE; the suffix is compared as an integer so 10000 sorts after 9999.
    rows = conn.execute(
        text(
            """
            SELECT d, coalesce(max(split_part(t.number, '-', 2)::int), 0)
            FROM unnest(CAST(:days AS int[])) AS d
            LEFT JOIN tickets t
              ON t.number >= :prefix || d::text AND t.number < :prefix || (d + 1)::text
             AND t.number LIKE :prefix || d::text || '-%'
            GROUP BY d
            """
        ),
        {"days": keys, "prefix": NUMBER_PREFIX},
    ).all()
    last = {int(d): int(n) for d, n in rows}
    out = []
    for day in days:
        key = int(day.strftime("%Y%m%d"))
        last[key] += 1
        out.append(f"{NUMBER_PREFIX}{key}-{last[key]:04d}")
    return out


# --- opening -----------------------------------------------------------------------------------------------------


def _enum(kind: type[Any], value: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidInput(f"unknown {what} {value!r} / 未知的{what}") from None


def open_for_key(session: Session, source_key: str) -> Ticket | None:
    """The open (not closed) ticket holding `source_key`, if any."""
    return session.scalar(select(Ticket).where(Ticket.source_key == source_key, OPEN_KEY_WHERE))


def _check_place(
    session: Session, estate_id: int, unit_id: int | None, room_id: int | None, device_id: int | None
) -> None:
    if unit_id is not None:
        ok = session.scalar(
            select(exists().where(Unit.id == unit_id, Unit.building_id == Building.id, Building.estate_id == estate_id))
        )
        if not ok:
            raise NotFound("unit not found in this estate / 本小区无此房屋")
    if room_id is not None and session.scalar(select(Room.estate_id).where(Room.id == room_id)) != estate_id:
        raise NotFound("room not found in this estate / 本小区无此机房")
    if device_id is not None and session.scalar(select(Device.estate_id).where(Device.id == device_id)) != estate_id:
        raise NotFound("device not found in this estate / 本小区无此设备")


def open_ticket(
    session: Session,
    *,
    estate_id: int,
    source: str,
    category: str,
    priority: str,
    title: str,
    received_by: str,
    description: str = "",
    unit_id: int | None = None,
    room_id: int | None = None,
    device_id: int | None = None,
    reporter_name: str | None = None,
    reporter_phone: str | None = None,
    received_at: datetime | None = None,
    source_key: str | None = None,
    clock_kind: str | None = None,
    fault: str | None = None,
) -> Ticket:
    """Open a ticket with its SLA due times and an 'opened' event.

    `fault` marks an outage (停水/停电/停暖) or a leak: such a ticket is called back in person before it closes.
    A repair inside the developer's warranty (tickets/warranty.py) is routed to the developer by itself: the
    ticket names the developer as the responsible party, the developer's due date is its resolve clock, and a
    'warranty_routed' event (actor system) records it.

    `clock_kind` is the row of §4's platform table for a ticket the platform opens by itself
    (tickets.const.ClockKind); an inspection ticket (a missed round) without one is a warning-row ticket.

    With a `source_key` (e.g. ``round:<id>``) there is at most one open ticket per key: when one is
    already open it is returned unchanged instead of a new one (check ``ticket.received_at`` or the
    number to tell), also when a concurrent transaction opens it first.
    """
    src = _enum(Source, source, "source")
    cat = _enum(Category, category, "category")
    prio = _enum(Priority, priority, "priority")
    kind = _enum(ClockKind, clock_kind, "clock kind") if clock_kind is not None else DEFAULT_CLOCK_KIND.get(src)
    flt = _enum(Fault, fault, "fault") if fault is not None else None
    if not title.strip():
        raise InvalidInput("a ticket needs a title / 工单需要标题")
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 未找到该小区")
    _check_place(session, estate_id, unit_id, room_id, device_id)
    if source_key is not None and (existing := open_for_key(session, source_key)) is not None:
        return existing
    at = received_at or clock.now()
    if at.tzinfo is None:
        raise InvalidInput("received_at needs a timezone / 受理时间需带时区")
    due = sla.due_times(cat, prio, src, at, estate.timezone, sla.policy_from(estate.policy), kind)
    cover = warranty.covering(
        session,
        estate,
        source=src.value,
        category=cat.value,
        priority=prio.value,
        fault=flt.value if flt else None,
        unit_id=unit_id,
        at=at,
        local_day=local_day(at, estate.timezone),
    )
    conn = session.connection()
    number = allocate_numbers(conn, [local_day(at, estate.timezone)])[0]
    stmt = (
        insert(Ticket)
        .values(
            number=number,
            estate_id=estate_id,
            source=src.value,
            source_key=source_key,
            category=cat.value,
            priority=prio.value,
            status=S.received.value,
            title=title.strip()[:200],
            description=description,
            unit_id=unit_id,
            room_id=room_id,
            device_id=device_id,
            reporter_name=reporter_name,
            reporter_phone=reporter_phone,
            received_by=received_by,
            received_at=at,
            on_site_due_at=due.on_site,
            # The developer's due date is the resolve clock of a routed ticket, as for a hand-routed one.
            resolve_due_at=cover.due_at if cover else due.resolve,
            feedback_due_at=due.feedback,
            clock_kind=kind.value if kind is not None else None,
            fault=flt.value if flt is not None else None,
            warranty_party=cover.developer if cover else None,
            warranty_due_at=cover.due_at if cover else None,
            updated_at=at,
        )
        # The predicate is literal SQL: as a bound parameter ('closed' → $1) PostgreSQL cannot match it to the
        # partial index once psycopg prepares the statement (after 5 runs), and the insert fails.
        .on_conflict_do_nothing(index_elements=[Ticket.source_key], index_where=OPEN_KEY_SQL)
        .returning(Ticket.id)
    )
    ticket_id = session.scalar(stmt)
    if ticket_id is None:  # a concurrent transaction opened the key's ticket first (and committed)
        assert source_key is not None
        existing = open_for_key(session, source_key)
        if existing is None:
            raise Conflict("ticket source is busy, try again / 工单来源冲突，请重试")
        return existing
    detail: dict[str, Any] = {"number": number, "continuous": due.continuous}
    if kind is not None:
        detail["clock_kind"] = kind.value
    if source_key:
        detail["source_key"] = source_key
    session.add(
        TicketEvent(
            ticket_id=ticket_id, at=at, actor=received_by, action="opened", to_status=S.received.value, detail=detail
        )
    )
    if cover is not None:
        session.add(
            TicketEvent(
                ticket_id=ticket_id,
                at=at,
                actor=SYSTEM_ACTOR,
                action="warranty_routed",
                from_status=S.received.value,
                to_status=S.received.value,
                detail={
                    "party": cover.developer,
                    "due_at": cover.due_at.isoformat(),
                    "item": cover.item.value,
                    "handover_on": cover.handover_on.isoformat(),
                    "expires_on": cover.expires_on.isoformat(),
                    "automatic": True,
                },
            )
        )
    session.flush()
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    return ticket


# --- transitions -------------------------------------------------------------------------------------------------


def get(session: Session, ticket_id: int, *, for_update: bool = False) -> Ticket:
    """The ticket (locked FOR UPDATE when asked, with its attributes re-read), or NotFound."""
    stmt = select(Ticket).where(Ticket.id == ticket_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    ticket = session.scalar(stmt)
    if ticket is None:
        raise NotFound("ticket not found / 未找到该工单")
    return ticket


def _locked(session: Session, ticket: Ticket | int) -> Ticket:
    return get(session, ticket if isinstance(ticket, int) else ticket.id, for_update=True)


def _event(
    session: Session,
    t: Ticket,
    actor: str,
    action: str,
    at: datetime,
    frm: str | None,
    to: str | None,
    detail: dict[str, Any],
) -> None:
    session.add(
        TicketEvent(ticket_id=t.id, at=at, actor=actor, action=action, from_status=frm, to_status=to, detail=detail)
    )


def _move(
    session: Session,
    t: Ticket,
    to: TicketStatus,
    actor: str,
    action: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    frm = TicketStatus(t.status)
    if to not in TRANSITIONS[frm]:
        raise Conflict(f"ticket {t.number} is {frm.value}; it cannot be {action} / 工单{t.number}当前状态不允许此操作")
    t.status = to.value
    t.updated_at = at
    _event(session, t, actor, action, at, frm.value, to.value, detail or {})


def _staff_in_estate(session: Session, user_id: int, estate_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None or not user.active:
        raise NotFound("assignee not found / 未找到该维修人员")
    if not user.all_estates and session.get(StaffEstate, (user_id, estate_id)) is None:
        raise NotFound("assignee does not work in this estate / 该人员不负责本小区")
    return user


def dispatch(
    session: Session, ticket: Ticket | int, assignee_id: int, actor: str, *, at: datetime | None = None, note: str = ""
) -> Ticket:
    """Assign the ticket to a technician (派单); from dispatched/accepted this re-dispatches to someone else."""
    t = _locked(session, ticket)
    at = at or clock.now()
    assignee = _staff_in_estate(session, assignee_id, t.estate_id)
    detail: dict[str, Any] = {"assignee_id": assignee.id, "assignee": assignee.username}
    if t.assignee_id is not None and t.assignee_id != assignee_id:
        detail["previous_assignee_id"] = t.assignee_id
    if note:
        detail["note"] = note
    _move(session, t, S.dispatched, actor, "dispatched", at, detail)
    t.assignee_id, t.dispatched_by, t.dispatched_at, t.accepted_at = assignee.id, actor, at, None
    session.flush()
    return t


def accept(session: Session, ticket: Ticket | int, actor: str, *, at: datetime | None = None) -> Ticket:
    """The technician takes the job (接单)."""
    t = _locked(session, ticket)
    at = at or clock.now()
    _move(session, t, S.accepted, actor, "accepted", at)
    t.accepted_at = at
    session.flush()
    return t


def arrive_on_site(session: Session, ticket: Ticket | int, actor: str, *, at: datetime | None = None) -> Ticket:
    """The technician is on site (stops the on-site clock); straight from dispatched it also counts as accepting."""
    t = _locked(session, ticket)
    at = at or clock.now()
    _move(session, t, S.on_site, actor, "on_site", at)
    t.accepted_at = t.accepted_at or at
    t.on_site_at = at
    session.flush()
    return t


def needs_callback(t: Ticket) -> bool:
    """Tickets with a resident behind them are called back (回访率 100 %); alarm/round/patrol tickets are not,
    unless they were an outage or a leak (the residents affected are called on)."""
    return t.source in CALLBACK_SOURCES or bool(t.reporter_phone) or t.fault is not None


def needs_in_person(t: Ticket) -> bool:
    """After an outage or a leak the callback is made in person (seeds/004 回访流程 4.2.2: 应上门进行回访)."""
    return t.fault in IN_PERSON_FAULTS


def resolve(
    session: Session,
    ticket: Ticket | int,
    actor: str,
    *,
    work_done: str,
    parts: str | None = None,
    labour_minutes: int | None = None,
    resident_signoff: bool | None = None,
    at: datetime | None = None,
) -> Ticket:
    """Record the repair (完工: work done, parts, labour, the resident's signature) and start the callback clock."""
    if not work_done.strip():
        raise InvalidInput("describe the work done / 请填写维修情况")
    if labour_minutes is not None and not 0 <= labour_minutes <= 100_000:
        raise InvalidInput("labour minutes out of range / 工时超出范围")
    t = _locked(session, ticket)
    at = at or clock.now()
    detail: dict[str, Any] = {"labour_minutes": labour_minutes, "resident_signoff": resident_signoff}
    still_active = _alarms_in_state(session, t.id, "active")
    if still_active and t.status == S.on_site:
        raise Conflict(
            f"ticket {t.number} has {still_active} unacknowledged alarm(s): acknowledge them before resolving"
            f" / 工单{t.number}有 {still_active} 条关联报警尚未确认，请先确认报警再完工"
        )
    # Acknowledged but not yet recovered: the repair may be done before the reading comes back down (a winding
    # cools for an hour); the work note is the record, and the event keeps how many were still open.
    still_open = _alarms_in_state(session, t.id, "acknowledged")
    if still_open:
        detail["alarms_open"] = still_open
    _move(session, t, S.resolved, actor, "resolved", at, detail)
    t.resolved_at, t.work_done, t.parts = at, work_done.strip(), parts
    t.labour_minutes, t.resident_signoff = labour_minutes, resident_signoff
    if needs_callback(t):
        estate = session.get(Estate, t.estate_id)
        assert estate is not None
        t.callback_due_at = sla.callback_due(t.category, at, estate.timezone, sla.policy_from(estate.policy))
    session.flush()
    return t


def _alarms_in_state(session: Session, ticket_id: int, state: str) -> int:
    """How many of the ticket's attached alarms are in this state (active: nobody acknowledged it yet)."""
    return int(
        session.scalar(
            select(func.count()).select_from(Alarm).where(Alarm.ticket_id == ticket_id, Alarm.state == state)
        )
        or 0
    )


def complete_by_record(
    session: Session, ticket: Ticket | int, actor: str, *, work_done: str, on_site_at: datetime, at: datetime
) -> Ticket:
    """A task ticket whose work another record proves done (a manual inspection round): on site at
    the record's time, resolved, and closed when nobody is to be called back; each step an event by
    ``actor``. A ticket already resolved, closed or in callback is left as it is."""
    t = _locked(session, ticket)
    status = TicketStatus(t.status)
    if status not in BEFORE_RESOLVED:
        return t
    if status != S.on_site:
        # The record is the proof of presence; the on-site step is recorded as such, not invented.
        t.status = S.on_site.value
        t.accepted_at = t.accepted_at or on_site_at
        t.on_site_at = t.on_site_at or on_site_at
        _event(session, t, actor, "on_site", at, status.value, S.on_site.value, {"by_record": work_done})
    _move(session, t, S.resolved, actor, "resolved", at, {"by_record": work_done})
    t.resolved_at, t.work_done = at, work_done
    if not needs_callback(t):
        _move(session, t, S.closed, actor, "closed", at)
        t.closed_at = at
    t.updated_at = at
    session.flush()
    return t


def record_callback(
    session: Session,
    ticket: Ticket | int,
    by: str,
    channel: str,
    satisfaction: int,
    note: str | None = None,
    *,
    at: datetime | None = None,
) -> Ticket:
    """Record the callback (回访): who called, how, and the resident's satisfaction 1–5."""
    ch = _enum(CallbackChannel, channel, "callback channel")
    if isinstance(satisfaction, bool) or not 1 <= satisfaction <= 5:
        raise InvalidInput("satisfaction must be 1–5 / 满意度须为 1–5")
    t = _locked(session, ticket)
    at = at or clock.now()
    if needs_in_person(t) and ch != CallbackChannel.in_person:
        raise Conflict("an outage or a leak is called back in person / 停水停电停暖及漏水须上门回访")
    # 1–2 is dissatisfied: the SOP agrees improvements and calls back again, usually through a reopen.
    _move(
        session,
        t,
        S.callback_done,
        by,
        "callback",
        at,
        {"channel": ch.value, "satisfaction": satisfaction, "dissatisfied": satisfaction <= 2},
    )
    t.callback_by, t.callback_at, t.callback_channel = by, at, ch.value
    t.satisfaction, t.callback_note = satisfaction, note
    session.flush()
    return t


def close(
    session: Session, ticket: Ticket | int, actor: str, *, reason: str | None = None, at: datetime | None = None
) -> Ticket:
    """Close the ticket: after the callback (or after resolving, when nobody is to be called back);
    an unstarted ticket (received/dispatched) may be cancelled with a reason (duplicate, withdrawn)."""
    t = _locked(session, ticket)
    at = at or clock.now()
    status = TicketStatus(t.status)
    if status in (S.received, S.dispatched) and not (reason or "").strip():
        raise Conflict("cancelling an unstarted ticket needs a reason / 撤销未处理的工单需填写原因")
    if status == S.resolved and needs_callback(t):
        raise Conflict("call the resident back before closing / 关闭前须完成回访")
    if status == S.callback_done and needs_in_person(t) and t.callback_channel != CallbackChannel.in_person:
        raise Conflict("an outage or a leak closes after an in-person callback / 停水停电停暖及漏水须上门回访后关闭")
    _move(
        session,
        t,
        S.closed,
        actor,
        "closed" if status not in (S.received, S.dispatched) else "cancelled",
        at,
        {"reason": reason} if reason else {},
    )
    t.closed_at = at
    session.flush()
    return t


def reopen(session: Session, ticket: Ticket | int, actor: str, reason: str, *, at: datetime | None = None) -> Ticket:
    """Reopen a resolved, called-back or closed ticket (返修 for a repair, 重新处理 otherwise).

    Back to dispatched when someone is assigned, else received. The SLA clocks restart from now (on site,
    resolve) as for a new report; the history stays in events."""
    if not reason.strip():
        raise InvalidInput("a reopen needs a reason / 重新处理须填写原因")
    t = _locked(session, ticket)
    at = at or clock.now()
    frm = TicketStatus(t.status)
    if frm not in REOPENABLE:
        raise Conflict(f"ticket {t.number} is {frm.value}; only finished tickets reopen / 工单未完工，无需重新处理")
    if frm == S.closed and t.source_key is not None:
        other = open_for_key(session, t.source_key)
        if other is not None and other.id != t.id:
            raise Conflict(
                f"ticket {other.number} is already open for this source / 同一来源已有未关闭的工单{other.number}"
            )
    to = S.dispatched if t.assignee_id is not None else S.received
    _move(session, t, to, actor, "reopened", at, {"reason": reason.strip(), "reopened_count": t.reopened_count + 1})
    estate = session.get(Estate, t.estate_id)
    assert estate is not None
    due = sla.due_times(
        t.category, t.priority, t.source, at, estate.timezone, sla.policy_from(estate.policy), t.clock_kind
    )
    t.reopened_count += 1
    t.accepted_at = t.on_site_at = t.resolved_at = t.closed_at = None
    t.callback_at = t.callback_due_at = t.callback_by = t.callback_channel = None
    t.satisfaction = t.callback_note = None
    t.on_site_due_at, t.resolve_due_at = due.on_site, due.resolve
    if to == S.dispatched:
        t.dispatched_at = at
    try:
        session.flush()
    except IntegrityError:  # a concurrent transaction took the source key between the check and here
        raise Conflict("another ticket is open for this source / 同一来源已有未关闭的工单") from None
    return t


def route_to_warranty(
    session: Session,
    ticket: Ticket | int,
    actor: str,
    *,
    party: str,
    due_at: datetime,
    ref: str | None = None,
    at: datetime | None = None,
) -> Ticket:
    """Hand a defect inside the developer's warranty to the developer's customer service (工作联系单) with a due date.

    The developer's due date replaces the resolve clock: if they miss it the ticket escalates and
    engineering repairs it (and bills them). Only before anyone is on site.
    """
    if not party.strip():
        raise InvalidInput("name the warranty party / 请填写保修责任方")
    t = _locked(session, ticket)
    at = at or clock.now()
    if t.status not in (S.received, S.dispatched, S.accepted):
        raise Conflict("only a ticket not yet worked on can go to warranty / 仅未施工的工单可转保修")
    if due_at.tzinfo is None or due_at <= at:
        raise Conflict("the warranty due date must be in the future / 保修完成期限须晚于当前时间")
    t.warranty_party, t.warranty_due_at, t.warranty_ref = party.strip(), due_at, ref
    t.resolve_due_at, t.updated_at = due_at, at
    _event(
        session,
        t,
        actor,
        "warranty_routed",
        at,
        t.status,
        t.status,
        {"party": party.strip(), "due_at": due_at.isoformat(), "ref": ref},
    )
    session.flush()
    return t


def extend_patrol(
    session: Session,
    ticket: Ticket | int,
    actor: str,
    *,
    due_at: datetime,
    reason: str,
    at: datetime | None = None,
) -> Ticket:
    """A manager extends a patrol finding's one-week deadline (§4: "fixed within one week unless a manager
    extends it"): the resolve clock moves to `due_at`, which must be later than it was; the reason and the
    old deadline stay on the timeline, and a breach of the new deadline escalates afresh."""
    if not reason.strip():
        raise InvalidInput("an extension needs a reason / 延期需填写原因")
    t = _locked(session, ticket)
    at = at or clock.now()
    if t.source != Source.patrol:
        raise Conflict("only patrol findings are extended / 仅巡查发现的问题可延期")
    if t.status not in BEFORE_RESOLVED:
        raise Conflict(f"ticket {t.number} is {t.status}; only unfinished work is extended / 工单已完工，无需延期")
    if due_at.tzinfo is None or due_at <= at:
        raise Conflict("the new deadline must be in the future / 新的完成期限须晚于当前时间")
    if t.resolve_due_at is not None and due_at <= t.resolve_due_at:
        raise Conflict("an extension moves the deadline later / 延期后的期限须晚于原期限")
    old = t.resolve_due_at
    t.resolve_due_at, t.updated_at = due_at, at
    _event(
        session,
        t,
        actor,
        "extended",
        at,
        t.status,
        t.status,
        {
            "from": old.astimezone(UTC).isoformat() if old else None,
            "to": due_at.astimezone(UTC).isoformat(),
            "reason": reason.strip(),
        },
    )
    session.flush()
    return t


def record_feedback(
    session: Session, ticket: Ticket | int, actor: str, note: str, *, at: datetime | None = None
) -> Ticket:
    """Give the complainant feedback (投诉 24 小时内反馈); the first feedback stops the feedback clock."""
    if not note.strip():
        raise InvalidInput("feedback needs a note / 反馈内容不能为空")
    t = _locked(session, ticket)
    at = at or clock.now()
    if t.source != Source.complaint:
        raise Conflict("feedback is for complaints / 仅投诉工单需反馈")
    if t.status == S.closed:
        raise Conflict("ticket is closed / 工单已关闭")
    t.feedback_at = t.feedback_at or at
    t.updated_at = at
    _event(session, t, actor, "feedback", at, t.status, t.status, {"note": note.strip()})
    session.flush()
    return t


def add_comment(
    session: Session, ticket: Ticket | int, actor: str, body: str, *, at: datetime | None = None
) -> TicketEvent:
    """A free-text note on the timeline (备注); allowed in every status."""
    if not body.strip():
        raise InvalidInput("comment is empty / 备注不能为空")
    t = _locked(session, ticket)
    at = at or clock.now()
    event = TicketEvent(
        ticket_id=t.id,
        at=at,
        actor=actor,
        action="comment",
        from_status=t.status,
        to_status=t.status,
        detail={"text": body.strip()},
    )
    session.add(event)
    session.flush()
    return event


def events(session: Session, ticket_id: int) -> list[TicketEvent]:
    return list(session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id)))


__all__ = [
    "accept",
    "add_comment",
    "allocate_numbers",
    "arrive_on_site",
    "close",
    "dispatch",
    "events",
    "get",
    "needs_callback",
    "needs_in_person",
    "open_for_key",
    "open_ticket",
    "record_callback",
    "record_feedback",
    "reopen",
    "resolve",
    "route_to_warranty",
]
