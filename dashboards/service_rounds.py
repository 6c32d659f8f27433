"""Customer-service rounds: the estate's round calendar (``/estates/{code}/service-rounds``) and the phone page of
one's own tasks (``/service-tasks``, 我的巡查任务) with a task's record form (``/service-tasks/{id}``).

Who may see and record is ``alarms.policy`` (the JSON API asks it too); the task page lists the rounds of the
viewer's role in the estates the viewer may see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import policy
from alarms import service_rounds_queries as queries
from alarms.service_rounds import Finding, record_task
from core import clock
from core.errors import StewardError
from dashboards import i18n, service_rounds_view
from dashboards.forms import clean_text, flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import estate_of, viewer_tz
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from tickets.const import CATEGORY_LABELS, Category
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
MAX_TASKS = 300
# The categories a finding on a service round is likely to be, in the order the form offers them.
FINDING_CATEGORIES = (
    Category.civil,
    Category.water,
    Category.electrical,
    Category.fire,
    Category.lift,
    Category.access,
    Category.heating,
    Category.hot_water,
    Category.other,
)


def service_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, policy.may_read_service_rounds(viewer.role))


ServiceViewer = Annotated[Viewer, Depends(service_viewer)]


@router.get("/estates/{code}/service-rounds", response_class=HTMLResponse)
def service_calendar_page(
    code: str,
    request: Request,
    session: ReadSessionDep,
    viewer: ServiceViewer,
    round_: Annotated[int | None, Query(alias="round", ge=1, le=2**62)] = None,
) -> HTMLResponse:
    estate = estate_of(session, code, viewer)
    tz = i18n.zone(estate.timezone)
    cal = service_rounds_view.service_calendar(session, estate, viewer.lang, tz, selected=round_)
    return form_page(
        request,
        "service_rounds/calendar.html",
        viewer,
        estate=estate,
        cal=cal,
        can_record=policy.may_record_service_task(viewer.role),
        sees_estate=viewer.sees_equipment,
        tz=tz.key,
    )


@router.get("/service-tasks", response_class=HTMLResponse)
def my_tasks_page(request: Request, session: ReadSessionDep, viewer: ServiceViewer) -> HTMLResponse:
    tz = viewer_tz(session, viewer)
    rows = queries.tasks_due(
        session,
        viewer.visible,
        clock.now(),
        roles=policy.service_roles_of(viewer.role),
        include_recorded=True,
        limit=MAX_TASKS,
    )
    tasks = [service_rounds_view.task_view(r, viewer.lang, i18n.zone(r.timezone)) for r in rows]
    pending = [t for t in tasks if t["status"] == "pending"]
    recorded = [t for t in tasks if t["status"] != "pending"]
    estates = sorted({(t["estate_code"], t["estate"]) for t in tasks})
    return form_page(
        request,
        "service_rounds/tasks.html",
        viewer,
        pending=pending,
        recorded=recorded,
        estates=estates,
        can_record=policy.may_record_service_task(viewer.role),
        tz=tz.key,
    )


def _task_or_404(session: Session, task_id: int, viewer: Viewer) -> queries.TaskRow:
    row = queries.task_row(session, task_id)
    if row is None or row.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    return row


@router.get("/service-tasks/{task_id}", response_class=HTMLResponse)
def task_page(task_id: int, request: Request, session: ReadSessionDep, viewer: ServiceViewer) -> HTMLResponse:
    row = _task_or_404(session, task_id, viewer)
    tz = i18n.zone(row.timezone)
    return form_page(
        request,
        "service_rounds/task.html",
        viewer,
        task=service_rounds_view.task_view(row, viewer.lang, tz),
        can_record=policy.may_record_service_task(viewer.role) and row.status == "pending",
        categories=[(c.value, i18n.label(CATEGORY_LABELS, c, viewer.lang)) for c in FINDING_CATEGORIES],
        now_local=clock.now().astimezone(tz).strftime("%Y-%m-%dT%H:%M"),
        tz=tz.key,
    )


@router.post("/service-tasks/{task_id}/record")
def task_record(
    task_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    outcome: Annotated[str, Form(max_length=16)] = "ok",
    notes: Annotated[str, Form(max_length=2000)] = "",
    finding: Annotated[str, Form(max_length=2000)] = "",
    category: Annotated[str, Form(max_length=24)] = "civil",
    performed_at: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    same_origin(request, viewer)
    require(viewer, policy.may_record_service_task(viewer.role))
    row = _task_or_404(session, task_id, viewer)
    here = f"/service-tasks/{task_id}"
    tz = i18n.zone(row.timezone)
    try:
        if outcome not in ("ok", "finding", "complaint", "skipped"):
            raise StewardError("!csr_bad_outcome", 422)
        when = clock.now()
        if performed_at.strip():
            try:
                when = datetime.fromisoformat(performed_at.strip()).replace(tzinfo=tz)
            except ValueError:
                raise StewardError("!bad_time", 422) from None
        found = None
        if outcome in ("finding", "complaint"):
            found = Finding(text=clean_text(finding, "bad_text"), category=category, complaint=outcome == "complaint")
        record_task(
            session,
            task_id,
            performed_by=viewer.username,
            performed_at=when,
            skipped=outcome == "skipped",
            notes=clean_text(notes, "bad_text") or None,
            finding=found,
        )
        session.flush()
    except StewardError as exc:
        session.rollback()
        return flash_error(here, exc)
    accounts.audit(session, viewer.username, "service_rounds.task", f"round_task:{task_id}", {"outcome": outcome})
    return flash_ok("/service-tasks", "csr_flash_recorded")
