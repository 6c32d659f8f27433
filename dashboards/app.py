"""``mount_dashboards(app)``: the pages of every area, the live streams, /static and the LISTEN hub's lifespan.

Called by the composition root (``steward.app.create_app``) on the application the JSON API is mounted on
too; the two adapters never import each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from dashboards import (
    access,
    alarm_banner,
    alarms,
    billing,
    billing_dunning,
    billing_notices,
    billing_statements,
    callbacks,
    energy,
    handover,
    ingest,
    login,
    operations,
    rooms,
    rounds,
    service_rounds,
    summary,
    tickets,
    wall,
)
from dashboards.live import LiveHub, connect_kwargs
from dashboards.page_errors import login_redirect, page_error, page_validation_error
from dashboards.render import STATIC_DIR
from dashboards.viewer import LoginRequired, PageError


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the application's lifespan (merged by include_router), so app.state.engine exists already."""
    hub = LiveHub(connect_kwargs(app.state.engine))
    app.state.live = hub
    hub.start()
    try:
        yield
    finally:
        await hub.stop()


_hub = APIRouter(include_in_schema=False, lifespan=_lifespan)


def mount_dashboards(app: FastAPI) -> None:
    """Add the pages, the live streams, /static and the LISTEN hub's lifespan to the application."""
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(_hub)
    for area in (
        login,
        rooms,
        ingest,
        alarms,
        tickets,
        rounds,
        service_rounds,
        billing,
        billing_notices,
        billing_dunning,
        operations,
        access,
        billing_statements,
        callbacks,
        summary,
        alarm_banner,
        energy,
        handover,
        wall,
    ):
        app.include_router(area.router)
    app.add_exception_handler(LoginRequired, login_redirect)  # type: ignore[arg-type]
    app.add_exception_handler(PageError, page_error)  # type: ignore[arg-type]
    # Replaces the JSON 422 handler of web.errors, which it still hands every /api request to.
    app.add_exception_handler(RequestValidationError, page_validation_error)  # type: ignore[arg-type]
