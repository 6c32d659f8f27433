"""The ingest page: ingest processes and the read replica's lag (head office), dead letters and quarantined
messages, and its live stream. The page reads through ``ReadSessionDep`` (web/replica.py); the replica's lag is
asked of the primary and the replica both."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from accounts import policy
from core import clock
from dashboards import i18n, ingest_view
from dashboards.live import LiveHub
from dashboards.lookups import viewer_tz
from dashboards.render import page_data, render, render_fragment
from dashboards.streaming import stream
from dashboards.viewer import Viewer, ViewerDep, require
from facility.queries import visible_estates
from storage.replication import ReplicaStatus
from web.deps import SessionDep
from web.replica import ReadSessionDep, replication_status

router = APIRouter(include_in_schema=False)


def ingest_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, viewer.sees_ingest)


IngestViewer = Annotated[Viewer, Depends(ingest_viewer)]


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, session: ReadSessionDep, primary: SessionDep, viewer: IngestViewer) -> HTMLResponse:
    tz = viewer_tz(session, viewer)
    codes = [e.code for e in visible_estates(session, viewer.visible)]
    head_office = policy.may_see_ingest_status(viewer)
    view = ingest_view.ingest_view(
        session,
        viewer.all_estates,
        codes,
        viewer.lang,
        tz,
        show_processes=head_office,
        replica=replication_status(request, primary) if head_office else None,
    )
    hub: LiveHub = request.app.state.live
    return render(
        request,
        "ingest/ingest.html",
        viewer.lang,
        viewer,
        v=view,
        rates=hub.rates(),
        scoped=not viewer.all_estates,
        tz=tz.key,
        page_data=page_data(viewer.lang, "/live/ingest", "html"),
    )


def _replica_status(request: Request) -> ReplicaStatus:
    """On a primary session of its own: the live snapshot's session may be the replica's."""
    with request.app.state.sessionmaker() as primary:
        return replication_status(request, primary)


@router.get("/live/ingest")
async def live_ingest(request: Request) -> Response:
    hub: LiveHub = request.app.state.live

    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        tz = viewer_tz(session, viewer)
        codes = [e.code for e in visible_estates(session, viewer.visible)]
        head_office = policy.may_see_ingest_status(viewer)
        view = ingest_view.ingest_view(
            session,
            viewer.all_estates,
            codes,
            viewer.lang,
            tz,
            show_processes=head_office,
            replica=_replica_status(request) if head_office else None,
        )
        return {
            "now": i18n.format_time(clock.now(), tz, date=False),
            "html": render_fragment(
                "ingest/_ingest_body.html",
                viewer.lang,
                v=view,
                rates=hub.rates(),
                scoped=not viewer.all_estates,
                tz=tz.key,
            ),
        }

    return await stream(request, build, lambda v: v.sees_ingest, min_interval=2.0)
