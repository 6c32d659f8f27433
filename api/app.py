"""The JSON API's routes, mounted on the shared application (web/app.py).

The application with the pages too is the composition root's (``steward.app.create_app``); this package
never imports ``dashboards``.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from api.routes import (
    access,
    alarms,
    auth,
    billing,
    billing_dunning,
    billing_notices,
    billing_statements,
    billing_webhook,
    deliveries,
    device_commands,
    displays,
    energy,
    equipment,
    estates,
    handover,
    operations,
    rounds,
    service_rounds,
    summary,
    tickets,
    warranty,
)
from core.settings import Settings
from web.app import base_app


def mount_api(app: FastAPI) -> None:
    for module in (
        auth,
        estates,
        equipment,
        operations,
        alarms,
        rounds,
        service_rounds,
        tickets,
        billing,
        billing_webhook,
        billing_notices,
        billing_dunning,
        device_commands,
        deliveries,
        access,
        billing_statements,
        warranty,
        summary,
        energy,
        handover,
        displays,
    ):
        app.include_router(module.router)


def create_api_app(
    settings: Settings | None = None, *, engine: Engine | None = None, read_engine: Engine | None = None
) -> FastAPI:
    """The JSON API alone (no pages)."""
    app = base_app(settings, engine=engine, read_engine=read_engine)
    mount_api(app)
    return app
