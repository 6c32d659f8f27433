"""The alarm banner's own routes (issue 15 §2): its stream for pages that have none, and the per-user settings.

Pages with a live stream carry the banner on it (dashboards/streaming.py); a page without one (a billing form,
a ticket page) opens ``/live/alarm-banner``, a marked stream that sends only the banner and only when it
changed. ``POST /alarms/banner-prefs`` stores the viewer's lowest severity and mute (alarms.banner_prefs):
from the alarm list's settings form, or in place from the banner's 静音 button. Both ask alarms.policy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import policy
from alarms.banner_prefs import set_banner_prefs
from core.errors import StewardError
from dashboards.forms import flash_error, flash_ok, in_place, same_origin
from dashboards.streaming import marked_stream
from dashboards.viewer import Viewer, ViewerDep, require, safe_next
from web.deps import SessionDep

router = APIRouter(include_in_schema=False)

# A banner-only stream looks for changes on every ingest notification and at least this often (acknowledgements
# and the worker's alarms do not notify).
POLL_S = 2.0


def _reader(v: Viewer) -> bool:
    return policy.may_read_alarms(v.role)


@router.get("/live/alarm-banner")
async def live_alarm_banner(request: Request) -> Response:
    """The banner alone, for pages without a live stream of their own."""

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        return {"banner_only": True}  # the stream adds the banner itself whenever its mark moves

    def mark(session: Session, viewer: Viewer) -> tuple[Any, ...]:
        return ()

    return await marked_stream(request, build, _reader, mark, poll_s=POLL_S)


@router.post("/alarms/banner-prefs")
def banner_prefs_form(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    min_severity: Annotated[str | None, Form(max_length=16)] = None,
    # The settings form sends "0" then, when ticked, "1"; the banner's 静音 button sends one value.
    muted: Annotated[list[str] | None, Form()] = None,
    back: Annotated[str, Form(max_length=2000)] = "/alarms",
) -> Response:
    """Store the viewer's alarm banner settings (lowest severity that shows and sounds; mute)."""
    same_origin(request, viewer)
    require(viewer, policy.may_read_alarms(viewer.role))
    target = safe_next(back)
    try:
        try:
            set_banner_prefs(
                session, viewer.user_id, min_severity=min_severity or None, muted=("1" in muted) if muted else None
            )
        except ValueError as exc:
            raise StewardError("!bad_banner_prefs", 422) from exc
        accounts.audit(
            session,
            viewer.username,
            "alarm.banner_prefs",
            f"staff:{viewer.user_id}",
            {"min_severity": min_severity, "muted": muted[-1] if muted else None},
        )
    except StewardError as exc:
        session.rollback()
        if in_place(request):
            return Response(status_code=exc.status_code)
        return flash_error(target, exc)
    if in_place(request):
        return Response(status_code=204)
    return flash_ok(target, "flash_banner_prefs")
