"""Customer-service rounds of an estate: the calendar, the tasks due (one's own role's by default), one task, and
recording a task on site (permissions: alarms.policy; reads: alarms.service_rounds_queries)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from alarms import policy
from alarms import service_rounds_queries as queries
from alarms.service_round_defaults import KIND_LABELS
from alarms.service_rounds import ROUND_STATUS_LABELS, TASK_STATUS_LABELS, Finding, TaskNotFound, record_task
from api.deps import EstateCode, ObjectId
from api.pagination import time_window
from api.routes.estates import estate_or_404
from api.routes.rounds import Time
from api.routes.tickets import CategoryName
from api.schemas import NO_NUL, Input, Output
from core import clock
from storage.models import StaffUser
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api", tags=["service rounds"], responses=error_responses(401, 403, 404, 422))
Readers = Annotated[StaffUser, Depends(require_roles(policy.SERVICE_ROUND_READERS))]
Recorders = Annotated[StaffUser, Depends(require_roles(policy.SERVICE_TASK_RECORDERS))]

DEFAULT_SPAN = timedelta(days=14)
MAX_ROUNDS = 1000
MAX_TASKS = 1000


class ServiceScheduleOut(Output):
    id: int
    code: str
    kind: str
    kind_zh: str
    kind_en: str
    role: str | None
    name_zh: str
    name_en: str
    interval_minutes: int = Field(description="window length; 0 with a calendar")
    calendar: str | None = Field(description="'quarter': calendar quarters, estate-local")
    grace_minutes: int
    enabled: bool


class ServiceRoundOut(Output):
    id: int
    schedule_id: int
    kind: str
    window_start: datetime
    window_end: datetime
    status: str
    status_zh: str
    status_en: str
    satisfied_by: str | None = Field(description="manual (every task recorded) or no_tasks (nothing to do)")
    alarm_id: int | None
    performed_by: str | None = Field(description="who recorded the last task")
    performed_at: datetime | None = Field(description="when the last task was done")
    tasks: int
    done: int
    skipped: int
    pending: int
    findings: int


class ServiceCalendarOut(Output):
    estate_code: str
    start: datetime
    end: datetime
    schedules: list[ServiceScheduleOut]
    items: list[ServiceRoundOut]
    truncated: bool = Field(description="more rounds in the range than returned (narrow the range)")


class TaskOut(Output):
    id: int
    round_id: int
    estate_code: str
    kind: str
    kind_zh: str
    kind_en: str
    role: str | None
    schedule_name_zh: str
    schedule_name_en: str
    window_start: datetime
    window_end: datetime
    round_status: str
    unit_code: str | None
    building_code: str | None
    building_name: str | None
    status: str
    status_zh: str
    status_en: str
    performed_by: str | None
    performed_at: datetime | None
    outcome: str | None = Field(description="ok or finding (done tasks)")
    notes: str | None
    ticket_id: int | None
    ticket_number: str | None


class TaskListOut(Output):
    estate_code: str
    items: list[TaskOut]
    truncated: bool


class FindingIn(Input):
    text: str = Field(min_length=1, max_length=2000, pattern=NO_NUL, description="what was found, as for a ticket")
    category: CategoryName = Field(default="civil", description="ticket category of the finding")
    complaint: bool = Field(default=False, description="a household's complaint (投诉) rather than a repair")


class TaskRecordIn(Input):
    status: Literal["done", "skipped"] = "done"
    notes: str | None = Field(default=None, max_length=2000, pattern=NO_NUL, description="required when skipped")
    finding: FindingIn | None = Field(default=None, description="opens a ticket (patrol repair or complaint)")
    performed_at: Time | None = Field(default=None, description="when it was done (default: now)")


def _task_out(row: queries.TaskRow) -> TaskOut:
    kzh, ken = KIND_LABELS.get(row.kind, (row.kind, row.kind))
    szh, sen = TASK_STATUS_LABELS.get(row.status, (row.status, row.status))
    return TaskOut(
        **{k: getattr(row, k) for k in TaskOut.model_fields if hasattr(row, k)},
        kind_zh=kzh,
        kind_en=ken,
        status_zh=szh,
        status_en=sen,
    )


def _visible_task(session: Any, task_id: int, visible: set[int]) -> queries.TaskRow:
    row = queries.task_row(session, task_id)
    if row is None or row.estate_id not in visible:
        raise TaskNotFound("task not found / 未找到该巡查任务")
    return row


@router.get("/estates/{code}/service-rounds", response_model=ServiceCalendarOut)
def service_calendar(
    code: EstateCode,
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    start: Annotated[Time | None, Query(alias="from", description="windows ending after this time")] = None,
    end: Annotated[Time | None, Query(alias="to", description="windows starting before this time")] = None,
) -> ServiceCalendarOut:
    """Customer-service round calendar of an estate: schedules, and rounds with their task counts."""
    estate = estate_or_404(session, code, visible)
    lo, hi = time_window(start, end, DEFAULT_SPAN)
    rows = queries.service_rounds_between(session, estate.id, lo, hi, limit=MAX_ROUNDS + 1)
    schedules = []
    for s in queries.service_schedules(session, estate.id):
        kzh, ken = KIND_LABELS.get(s.kind, (s.kind, s.kind))
        schedules.append(ServiceScheduleOut(**vars(s), kind_zh=kzh, kind_en=ken))
    items = []
    for r in rows[:MAX_ROUNDS]:
        zh, en = ROUND_STATUS_LABELS.get(r.status, (r.status, r.status))
        items.append(ServiceRoundOut(**vars(r), status_zh=zh, status_en=en))
    return ServiceCalendarOut(
        estate_code=estate.code, start=lo, end=hi, schedules=schedules, items=items, truncated=len(rows) > MAX_ROUNDS
    )


@router.get("/estates/{code}/service-tasks", response_model=TaskListOut)
def service_tasks(
    code: EstateCode,
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    scope: Annotated[
        Literal["mine", "all"], Query(description="mine: the rounds of the caller's role (admins, managers: all)")
    ] = "mine",
    recorded: Annotated[bool, Query(description="also the tasks already recorded in the current windows")] = False,
) -> TaskListOut:
    """Tasks of the rounds under way (and of missed rounds still pending): pending first, overdue first."""
    estate = estate_or_404(session, code, visible)
    roles = policy.service_roles_of(user.role) if scope == "mine" else None
    rows = queries.tasks_due(
        session, [estate.id], clock.now(), roles=roles, include_recorded=recorded, limit=MAX_TASKS + 1
    )
    return TaskListOut(
        estate_code=estate.code, items=[_task_out(r) for r in rows[:MAX_TASKS]], truncated=len(rows) > MAX_TASKS
    )


@router.get("/service-tasks/{service_task_id}", response_model=TaskOut)
def get_task(service_task_id: ObjectId, session: ReadSessionDep, user: Readers, visible: VisibleEstates) -> TaskOut:
    """One customer-service round task."""
    return _task_out(_visible_task(session, service_task_id, visible))


@router.post("/service-tasks/{service_task_id}/record", response_model=TaskOut, responses=error_responses(400, 409))
def record(
    service_task_id: ObjectId, body: TaskRecordIn, session: SessionDep, user: Recorders, visible: VisibleEstates
) -> TaskOut:
    """Record a task done on site (a finding opens a ticket) or skipped with a reason; late on a missed round too."""
    _visible_task(session, service_task_id, visible)
    finding = (
        Finding(text=body.finding.text, category=body.finding.category, complaint=body.finding.complaint)
        if body.finding is not None
        else None
    )
    record_task(
        session,
        service_task_id,
        performed_by=user.username,
        performed_at=body.performed_at,
        skipped=body.status == "skipped",
        notes=body.notes,
        finding=finding,
    )
    return _task_out(_visible_task(session, service_task_id, visible))
