"""The alarm list (``/alarms``) with filters; acknowledge (确认) and clear with a reason (手动解除).

Who may see and act is ``alarms.policy`` (the JSON API asks it too); every POST checks again (403 page
otherwise). A refused action (Conflict, bad input) rolls back and comes back as a flash message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import policy
from alarms import store as alarm_store
from alarms.banner_prefs import banner_prefs
from core import clock
from core.errors import StewardError
from dashboards import alarms_view
from dashboards.forms import error_text, flash_error, flash_ok, form_page, in_place, same_origin
from dashboards.lookups import viewer_tz
from dashboards.render import live_page_data, render_fragment
from dashboards.viewer import PageError, Viewer, ViewerDep, require, safe_next
from facility.queries import visible_estates
from storage.models import Alarm
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)

EstateFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{0,32}$")]
StateFilter = Annotated[str, Query(pattern="^(open|all)$")]
SeverityFilter = Annotated[str | None, Query(pattern="^(warning|alarm|critical)?$")]


def alarm_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, policy.may_read_alarms(viewer.role))


AlarmViewer = Annotated[Viewer, Depends(alarm_viewer)]


def alarm_filters(estate: str | None, state: str, severity: str | None) -> dict[str, Any]:
    return {"estate": estate or "", "state": state, "severity": severity or ""}


def query_string(params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v not in ("", None, False)}
    return ("?" + urlencode(clean)) if clean else ""


@router.get("/alarms", response_class=HTMLResponse)
def alarms_page(
    request: Request,
    session: ReadSessionDep,
    viewer: AlarmViewer,
    estate: EstateFilter = None,
    state: StateFilter = "open",
    severity: SeverityFilter = None,
) -> HTMLResponse:
    tz = viewer_tz(session, viewer)
    estates = [(e.code, e.name) for e in visible_estates(session, viewer.visible)]
    view = alarms_view.alarm_list(
        session, viewer.visible, viewer.lang, tz, estate=estate or None, state=state, severity=severity or None
    )
    filters = alarm_filters(estate, state, severity)
    return form_page(
        request,
        "alarms/alarms.html",
        viewer,
        v=view,
        f=filters,
        estates=sorted(estates),
        can_act=policy.may_handle_alarms(viewer.role),
        here_q=query_string(filters),
        tz=tz.key,
        page_data=live_page_data(viewer.lang, "/live/tickets" + query_string({"view": "alarms", **filters})),
        banner_prefs=banner_prefs(session, viewer.user_id),
    )


def alarms_fragment(
    session: Session, viewer: Viewer, tz: ZoneInfo, estate: str | None, state: str, severity: str | None
) -> dict[str, Any]:
    """The alarm list's body for the live stream (``/live/tickets?view=alarms``)."""
    v = alarms_view.alarm_list(
        session, viewer.visible, viewer.lang, tz, estate=estate or None, state=state, severity=severity or None
    )
    filters = alarm_filters(estate, state, severity)
    html = render_fragment(
        "alarms/_alarms_body.html",
        viewer.lang,
        v=v,
        f=filters,
        here_q=query_string(filters),
        can_act=policy.may_handle_alarms(viewer.role),
    )
    return {"now": v["now"], "html": html}


def _alarm_action(
    request: Request, session: Session, viewer: Viewer, alarm_id: int, back: str, act: Callable[[], None], key: str
) -> Response:
    same_origin(request, viewer)
    require(viewer, policy.may_handle_alarms(viewer.role))
    alarm = session.get(Alarm, alarm_id)
    if alarm is None or alarm.estate_id not in viewer.visible:
        raise PageError(404, viewer)
    target = safe_next(back) if back.startswith("/alarms") else "/alarms"
    try:
        act()
    except StewardError as exc:
        session.rollback()
        if in_place(request):  # the banner shows the refusal where the button was
            return PlainTextResponse(error_text(exc.message, viewer.lang), status_code=exc.status_code)
        return flash_error(target, exc)
    if in_place(request):
        return Response(status_code=204)
    return flash_ok(target, key)


@router.post("/alarms/{alarm_id}/acknowledge")
def alarm_acknowledge(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    back: Annotated[str, Form(max_length=2000)] = "/alarms",
) -> Response:
    def act() -> None:
        alarm_store.acknowledge(session.connection(), alarm_id, viewer.username, clock.now())
        accounts.audit(session, viewer.username, "alarm.acknowledge", f"alarm:{alarm_id}", {"via": "dashboards"})

    return _alarm_action(request, session, viewer, alarm_id, back, act, "flash_acknowledged")


@router.post("/alarms/{alarm_id}/clear")
def alarm_clear(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str, Form(max_length=2000)] = "/alarms",
) -> Response:
    def act() -> None:
        if not reason.strip() or "\x00" in reason:
            raise StewardError("!need_clear_reason", 422)
        alarm_store.clear_manually(session.connection(), alarm_id, viewer.username, clock.now(), reason)
        accounts.audit(session, viewer.username, "alarm.clear", f"alarm:{alarm_id}", {"reason": reason.strip()})

    return _alarm_action(request, session, viewer, alarm_id, back, act, "flash_cleared")
