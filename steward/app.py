"""The application ``steward run api`` serves: the JSON API and the dashboards on one shared base.

The composition root mounts both adapters, so ``api`` and ``dashboards`` never import each other.
Nothing connects at import time: the lifespan builds the engine.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from api.app import mount_api
from core.settings import Settings
from dashboards.app import mount_dashboards
from web.app import base_app


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, read_engine: Engine | None = None
) -> FastAPI:
    app = base_app(settings, engine=engine, read_engine=read_engine)
    mount_api(app)
    mount_dashboards(app)
    return app
