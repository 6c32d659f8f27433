"""Repair tickets (报修/投诉工单): list with SLA countdowns, detail with timeline, and every lifecycle step.

Who may do what is tickets/policy.py (the pages ask it too). Tickets of estates the caller
may not see are 404 like missing ones. Reporter names and phones are masked for roles that do not
need them, and every read that shows them, and every change, is audited.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.const import PERSONAL_DATA_ROLES, Role
from accounts.masking import mask_name, mask_phone
from api.deps import ObjectId, PageDep
from api.pagination import page_out
from api.schemas import ESTATE_CODE, NO_NUL, Input, Output, Page
from core import clock
from core.errors import NotFound
from facility import queries as facility
from storage.models import StaffUser, Ticket
from tickets import policy, queries, service, sla
from tickets.const import (
    CALLBACK_CHANNEL_LABELS,
    CATEGORY_LABELS,
    CLOCK_LABELS,
    OPEN_STATUSES,
    PRIORITY_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
    CallbackChannel,
    Category,
    Priority,
    Source,
    TicketStatus,
)
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import Forbidden, error_responses

router = APIRouter(prefix="/api/tickets", tags=["tickets"], responses=error_responses(401, 403, 404, 422))
# Who may do what: tickets/policy.py, which the pages ask too.
Readers = Annotated[StaffUser, Depends(require_roles(policy.READ_ROLES))]
Desk = Annotated[StaffUser, Depends(require_roles(policy.DESK_ROLES))]
Workers = Annotated[StaffUser, Depends(require_roles(policy.WORK_ROLES))]
CallbackStaff = Annotated[StaffUser, Depends(require_roles(policy.CALLBACK_ROLES))]
Commenters = Annotated[StaffUser, Depends(require_roles(policy.COMMENT_ROLES))]
Extenders = Annotated[StaffUser, Depends(require_roles(policy.EXTEND_ROLES))]
CONFLICT = error_responses(400, 409)  # 400: a body that is not JSON

# Query/body vocabularies spelled out for the OpenAPI document; tests check they match tickets.const.
StatusName = Literal["received", "dispatched", "accepted", "on_site", "resolved", "callback_done", "closed"]
PriorityName = Literal["urgent", "high", "normal", "minor"]
CategoryName = Literal[
    "electrical", "water", "hot_water", "heating", "fire", "civil", "meter", "access", "lift", "other"
]
SourceName = Literal["alarm", "inspection", "resident", "complaint", "manual", "patrol"]
# Alarm and inspection tickets are opened by the platform itself, never through this API.
ReportSource = Literal["resident", "complaint", "manual", "patrol"]
ChannelName = Literal["in_person", "phone", "sms", "wechat"]
MAX_ID = 2_147_483_647


def _integral(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; strict mode alone would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _body_time(value: Any) -> Any:
    # Strict models take no strings for datetimes: parse ISO 8601 here. A time outside what UTC can hold (year 1
    # at +14:00) is clamped rather than refused: it is a valid date-time, and the service answers 409 (past).
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", value.strip()):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        if parsed.tzinfo is None:
            return parsed  # AwareDatetime refuses it with a clear message
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC) if parsed.year < 5000 else datetime.max.replace(tzinfo=UTC)
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_integral)]
BodyTime = Annotated[AwareDatetime, BeforeValidator(_body_time)]
Text = Annotated[str, Field(max_length=4000, pattern=NO_NUL)]
Line = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*\S[^\x00]*$")]


# --- I/O models ----------------------------------------------------------------------------------------------------


class TicketIn(Input):
    estate: str = Field(pattern=ESTATE_CODE, description="estate code")
    source: ReportSource = "resident"
    category: CategoryName
    priority: PriorityName = "normal"
    title: Line
    description: Text = ""
    unit: str | None = Field(
        default=None, max_length=32, pattern=r"^[A-Za-z0-9-]+$", description="unit code, e.g. 1-1-101"
    )
    room_id: Id | None = None
    device_id: Id | None = None
    reporter_name: str | None = Field(default=None, min_length=1, max_length=64, pattern=NO_NUL)
    reporter_phone: str | None = Field(default=None, min_length=3, max_length=32, pattern=r"^[0-9+() -]+$")
    fault: Literal["outage", "leak"] | None = Field(
        default=None, description="停水/停电/停暖 (outage) or 漏水 (leak): called back in person before closing"
    )


class DispatchIn(Input):
    assignee_id: Id
    note: Text = ""


class ResolveIn(Input):
    work_done: Annotated[str, Field(min_length=1, max_length=4000, pattern=r"^[^\x00]*\S[^\x00]*$")]
    parts: Text | None = None
    labour_minutes: Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_integral)] | None = None
    resident_signoff: bool | None = None


class CallbackIn(Input):
    channel: ChannelName
    satisfaction: Annotated[int, Field(ge=1, le=5), BeforeValidator(_integral)]
    note: Text | None = None


class CloseIn(Input):
    reason: Text | None = Field(default=None, description="required when cancelling an unstarted ticket")


class ReasonIn(Input):
    reason: Line


class WarrantyIn(Input):
    party: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$")]
    due_at: BodyTime
    ref: str | None = Field(default=None, max_length=64, pattern=NO_NUL)


class ExtendIn(Input):
    due_at: BodyTime
    reason: Line


class NoteIn(Input):
    text: Annotated[str, Field(min_length=1, max_length=4000, pattern=r"^[^\x00]*\S[^\x00]*$")]


class ClockOut(BaseModel):
    clock: str
    label_zh: str
    label_en: str
    due_at: datetime
    seconds_remaining: int = Field(description="negative once breached")
    breached: bool


class TicketOut(Output):
    id: int
    number: str
    estate_id: int
    estate: str
    source: str
    category: str
    priority: str
    status: str
    status_zh: str
    priority_zh: str
    category_zh: str
    source_zh: str
    title: str
    description: str
    unit_id: int | None
    room_id: int | None
    device_id: int | None
    reporter_name: str | None
    reporter_phone: str | None
    masked: bool = Field(description="reporter name and phone are masked for the caller's role")
    received_by: str
    received_at: datetime
    assignee_id: int | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    on_site_at: datetime | None
    resolved_at: datetime | None
    callback_at: datetime | None
    closed_at: datetime | None
    on_site_due_at: datetime | None
    resolve_due_at: datetime | None
    callback_due_at: datetime | None
    feedback_due_at: datetime | None
    feedback_at: datetime | None
    continuous: bool = Field(description="urgent repair: work continues until fixed (连续抢修)")
    escalation_level: int
    escalated_at: datetime | None
    warranty_party: str | None
    warranty_due_at: datetime | None
    warranty_ref: str | None
    reopened_count: int
    fault: str | None = Field(description="outage or leak: the callback is made in person (上门回访)")
    clocks: list[ClockOut] = Field(description="running SLA clocks, soonest first")
    breached: bool
    seconds_remaining: int | None = Field(description="to the soonest running clock; null when none runs")


class EventOut(Output):
    id: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]


class TicketAlarmOut(Output):
    id: int
    rule_code: str
    title_zh: str
    subject: str
    severity: str
    state: str
    raised_at: datetime
    cleared_at: datetime | None


class TicketDetailOut(TicketOut):
    work_done: str | None
    parts: str | None
    labour_minutes: int | None
    resident_signoff: bool | None
    callback_by: str | None
    callback_channel: str | None
    callback_channel_zh: str | None
    satisfaction: int | None
    callback_note: str | None
    events: list[EventOut]
    alarms: list[TicketAlarmOut]


# --- helpers -------------------------------------------------------------------------------------------------------


def _masked(user: StaffUser) -> bool:
    return Role(user.role) not in PERSONAL_DATA_ROLES


def _out(t: Ticket, estate_code: str, user: StaffUser, now: datetime) -> dict[str, Any]:
    masked = _masked(user)
    clocks = sorted(sla.running_clocks(t).items(), key=lambda kv: kv[1])
    clock_out = [
        ClockOut(
            clock=c.value,
            label_zh=CLOCK_LABELS[c][0],
            label_en=CLOCK_LABELS[c][1],
            due_at=due,
            seconds_remaining=int((due - now).total_seconds()),
            breached=now >= due,
        )
        for c, due in clocks
    ]
    data = {name: getattr(t, name) for name in TicketDetailOut.model_fields if hasattr(Ticket, name)}
    data.update(
        estate=estate_code,
        status_zh=STATUS_LABELS[TicketStatus(t.status)][0],
        priority_zh=PRIORITY_LABELS[Priority(t.priority)][0],
        category_zh=CATEGORY_LABELS[Category(t.category)][0],
        source_zh=SOURCE_LABELS[Source(t.source)][0],
        reporter_name=mask_name(t.reporter_name) if masked and t.reporter_name else t.reporter_name,
        reporter_phone=mask_phone(t.reporter_phone) if masked and t.reporter_phone else t.reporter_phone,
        masked=masked,
        continuous=t.priority == Priority.urgent and t.status in OPEN_STATUSES,
        clocks=clock_out,
        breached=any(c.breached for c in clock_out),
        seconds_remaining=clock_out[0].seconds_remaining if clock_out else None,
        callback_channel_zh=CALLBACK_CHANNEL_LABELS[CallbackChannel(t.callback_channel)][0]
        if t.callback_channel
        else None,
    )
    return data


def _ticket(session: Session, ticket_id: int, visible: set[int], *, lock: bool = False) -> Ticket:
    """The ticket, or 404 whether it does not exist or belongs to an estate the caller may not see."""
    try:
        t = service.get(session, ticket_id, for_update=lock)
    except NotFound:
        raise NotFound("ticket not found / 未找到该工单") from None
    if t.estate_id not in visible:
        raise NotFound("ticket not found / 未找到该工单")
    return t


def _detail(session: Session, t: Ticket, user: StaffUser) -> TicketDetailOut:
    data = _out(t, facility.estate_code(session, t.estate_id), user, clock.now())
    data["events"] = [EventOut.model_validate(e) for e in queries.events(session, t.id)]
    data["alarms"] = [
        TicketAlarmOut(
            id=ta.alarm.id,
            rule_code=ta.rule_code,
            title_zh=ta.title_zh,
            subject=ta.alarm.subject,
            severity=ta.alarm.severity,
            state=ta.alarm.state,
            raised_at=ta.alarm.raised_at,
            cleared_at=ta.alarm.cleared_at,
        )
        for ta in queries.ticket_alarms(session, t.id)
    ]
    return TicketDetailOut.model_validate(data)


def _audit(session: Session, user: StaffUser, action: str, t: Ticket, detail: dict[str, Any] | None = None) -> None:
    accounts.audit(session, user, f"tickets.{action}", f"ticket:{t.number}", detail)


def _own_work(user: StaffUser, t: Ticket) -> None:
    # Engineers act only on the tickets dispatched to them; supervisors and admins may step in for anyone.
    if not policy.owns_work(user.role, user.id, t):
        raise Forbidden("only the assigned engineer may do this / 仅被派单的维修人员可操作")


# --- reads ---------------------------------------------------------------------------------------------------------


@router.get("", response_model=Page[TicketOut])
def list_tickets(
    session: SessionDep,
    user: Readers,
    visible: VisibleEstates,
    page: PageDep,
    estate: Annotated[str | None, Query(pattern=ESTATE_CODE, description="estate code")] = None,
    status: Annotated[list[StatusName] | None, Query(max_length=7, description="repeatable")] = None,
    priority: PriorityName | None = None,
    category: CategoryName | None = None,
    source: SourceName | None = None,
    open_only: bool = False,
    sort: Annotated[Literal["newest", "due"], Query(description="newest first, or soonest due first")] = "newest",
) -> dict[str, Any]:
    """Tickets of the caller's estates, with running SLA clocks, breach flags and seconds remaining (for boards)."""
    estates = facility.estate_codes(session, visible)
    scope = list(estates)
    if estate is not None:
        scope = [i for i, code in estates.items() if code == estate][:1]
        if not scope:
            raise NotFound("estate not found / 未找到该小区")
    found = queries.tickets_page(
        session,
        scope,
        statuses=status,
        open_only=open_only,
        priority=priority,
        category=category,
        source=source,
        sort=sort,
        limit=page.limit,
        offset=page.offset,
    )
    now = clock.now()
    rows = found.items
    result = page_out(found, page, [_out(t, estates[t.estate_id], user, now) for t in rows])
    with_reporter = [t.id for t in rows if t.reporter_name or t.reporter_phone]
    if with_reporter:
        accounts.audit(session, user, "tickets.read", "tickets", {"ticket_ids": with_reporter, "masked": _masked(user)})
    return result


@router.get("/{ticket_id}", response_model=TicketDetailOut)
def get_ticket(ticket_id: ObjectId, session: SessionDep, user: Readers, visible: VisibleEstates) -> TicketDetailOut:
    """One ticket with its timeline (events) and the alarms attached to it."""
    t = _ticket(session, ticket_id, visible)
    if t.reporter_name or t.reporter_phone:
        _audit(session, user, "read", t, {"masked": _masked(user)})
    return _detail(session, t, user)


# --- changes -------------------------------------------------------------------------------------------------------


@router.post("", response_model=TicketDetailOut, status_code=201, responses=CONFLICT)
def create_ticket(body: TicketIn, session: SessionDep, user: Desk, visible: VisibleEstates) -> TicketDetailOut:
    """Log a resident's repair report, a complaint, a patrol finding or a manual ticket (SLA clocks start now)."""
    estate = facility.estate_by_code(session, body.estate)
    if estate is None or estate.id not in visible:
        raise NotFound("estate not found / 未找到该小区")
    unit_id = None
    if body.unit is not None:
        unit_id = facility.unit_id_by_code(session, estate.id, body.unit)
        if unit_id is None:
            raise NotFound("unit not found / 未找到该房屋")
    t = service.open_ticket(
        session,
        estate_id=estate.id,
        source=body.source,
        category=body.category,
        priority=body.priority,
        title=body.title,
        description=body.description,
        unit_id=unit_id,
        room_id=body.room_id,
        device_id=body.device_id,
        reporter_name=body.reporter_name,
        reporter_phone=body.reporter_phone,
        received_by=user.username,
        fault=body.fault,
    )
    _audit(session, user, "create", t, {"source": t.source})
    return _detail(session, t, user)


@router.post("/{ticket_id}/dispatch", response_model=TicketDetailOut, responses=CONFLICT)
def dispatch_ticket(
    ticket_id: ObjectId, body: DispatchIn, session: SessionDep, user: Desk, visible: VisibleEstates
) -> TicketDetailOut:
    """Dispatch (派单) to a staff member of the ticket's estate, or re-dispatch to someone else."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.dispatch(session, t, body.assignee_id, user.username, note=body.note)
    _audit(session, user, "dispatch", t, {"assignee_id": body.assignee_id})
    return _detail(session, t, user)


@router.post("/{ticket_id}/accept", response_model=TicketDetailOut, responses=CONFLICT)
def accept_ticket(ticket_id: ObjectId, session: SessionDep, user: Workers, visible: VisibleEstates) -> TicketDetailOut:
    """The assigned engineer takes the job (接单)."""
    t = _ticket(session, ticket_id, visible, lock=True)
    _own_work(user, t)
    service.accept(session, t, user.username)
    _audit(session, user, "accept", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/on-site", response_model=TicketDetailOut, responses=CONFLICT)
def arrive(ticket_id: ObjectId, session: SessionDep, user: Workers, visible: VisibleEstates) -> TicketDetailOut:
    """The engineer is on site (stops the on-site clock)."""
    t = _ticket(session, ticket_id, visible, lock=True)
    _own_work(user, t)
    service.arrive_on_site(session, t, user.username)
    _audit(session, user, "on_site", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/resolve", response_model=TicketDetailOut, responses=CONFLICT)
def resolve_ticket(
    ticket_id: ObjectId, body: ResolveIn, session: SessionDep, user: Workers, visible: VisibleEstates
) -> TicketDetailOut:
    """Record the repair: work done, parts, labour minutes, the resident's sign-off (完工).

    Refused (409) while an alarm attached to the ticket is still unacknowledged (未确认); acknowledged alarms
    that have not recovered yet do not block it (the resolved event counts them)."""
    t = _ticket(session, ticket_id, visible, lock=True)
    _own_work(user, t)
    service.resolve(
        session,
        t,
        user.username,
        work_done=body.work_done,
        parts=body.parts,
        labour_minutes=body.labour_minutes,
        resident_signoff=body.resident_signoff,
    )
    _audit(session, user, "resolve", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/callback", response_model=TicketDetailOut, responses=CONFLICT)
def callback(
    ticket_id: ObjectId, body: CallbackIn, session: SessionDep, user: CallbackStaff, visible: VisibleEstates
) -> TicketDetailOut:
    """Record the callback (回访): channel and satisfaction 1–5."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.record_callback(session, t, user.username, body.channel, body.satisfaction, body.note)
    _audit(session, user, "callback", t, {"channel": body.channel, "satisfaction": body.satisfaction})
    return _detail(session, t, user)


@router.post("/{ticket_id}/feedback", response_model=TicketDetailOut, responses=CONFLICT)
def feedback(
    ticket_id: ObjectId, body: NoteIn, session: SessionDep, user: CallbackStaff, visible: VisibleEstates
) -> TicketDetailOut:
    """Give a complainant feedback (投诉 24 小时内反馈)."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.record_feedback(session, t, user.username, body.text)
    _audit(session, user, "feedback", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/close", response_model=TicketDetailOut, responses=CONFLICT)
def close_ticket(
    ticket_id: ObjectId, body: CloseIn, session: SessionDep, user: Desk, visible: VisibleEstates
) -> TicketDetailOut:
    """Close after the callback, or cancel an unstarted ticket with a reason."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.close(session, t, user.username, reason=body.reason)
    _audit(session, user, "close", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/reopen", response_model=TicketDetailOut, responses=CONFLICT)
def reopen_ticket(
    ticket_id: ObjectId, body: ReasonIn, session: SessionDep, user: Desk, visible: VisibleEstates
) -> TicketDetailOut:
    """Reopen a finished ticket (返修 for a repair, 重新处理 otherwise); its SLA clocks restart."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.reopen(session, t, user.username, body.reason)
    _audit(session, user, "reopen", t)
    return _detail(session, t, user)


@router.post("/{ticket_id}/warranty", response_model=TicketDetailOut, responses=CONFLICT)
def warranty(
    ticket_id: ObjectId, body: WarrantyIn, session: SessionDep, user: Desk, visible: VisibleEstates
) -> TicketDetailOut:
    """Route to the developer's customer service under warranty (工作联系单) with a due date."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.route_to_warranty(session, t, user.username, party=body.party, due_at=body.due_at, ref=body.ref)
    _audit(session, user, "warranty", t, {"party": body.party})
    return _detail(session, t, user)


@router.post("/{ticket_id}/extend", response_model=TicketDetailOut, responses=CONFLICT)
def extend(
    ticket_id: ObjectId, body: ExtendIn, session: SessionDep, user: Extenders, visible: VisibleEstates
) -> TicketDetailOut:
    """Extend a patrol finding's one-week deadline (项目经理延期), with a reason."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.extend_patrol(session, t, user.username, due_at=body.due_at, reason=body.reason)
    _audit(session, user, "extend", t, {"due_at": body.due_at.isoformat()})
    return _detail(session, t, user)


@router.post("/{ticket_id}/comment", response_model=TicketDetailOut, responses=CONFLICT)
def comment(
    ticket_id: ObjectId, body: NoteIn, session: SessionDep, user: Commenters, visible: VisibleEstates
) -> TicketDetailOut:
    """Add a note to the ticket's timeline."""
    t = _ticket(session, ticket_id, visible, lock=True)
    service.add_comment(session, t, user.username, body.text)
    return _detail(session, t, user)
