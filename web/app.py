"""The bare application both adapters are mounted on. Nothing connects at import time: the lifespan builds the engine.

``api.app.mount_api`` adds the JSON routes, ``dashboards.app.mount_dashboards`` the pages; the composition
root (``steward/app.py``) decides which to mount, so neither adapter imports the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.settings import Environment, Settings, get_settings
from storage.db import make_engine, make_sessionmaker
from web.errors import install_error_handlers
from web.replica import ReadYourWritesMiddleware
from web.security import SecurityMiddleware


def base_app(
    settings: Settings | None = None, *, engine: Engine | None = None, read_engine: Engine | None = None
) -> FastAPI:
    """``read_engine`` (or STEWARD_DATABASE_READ_URL): a streaming replica for read-only routes (web/replica.py)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        eng = engine or make_engine(settings, pool_size=10)
        app.state.engine = eng
        app.state.sessionmaker = make_sessionmaker(eng)
        own_read = read_engine is None and settings.database_read_url is not None
        reads = read_engine or (
            make_engine(settings, url=settings.database_read_url, pool_size=10) if own_read else None
        )
        app.state.read_engine = reads
        app.state.read_sessionmaker = make_sessionmaker(reads) if reads is not None else None
        app.state.settings = settings
        yield
        if own_read and reads is not None:
            reads.dispose()
        if own:
            eng.dispose()

    # Swagger UI loads its scripts from a CDN and the schema maps the whole API: neither is served in
    # production (integrators get the schema from a development instance or `app.openapi()`).
    production = settings.env is Environment.production
    app = FastAPI(
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
        openapi_url=None if production else "/openapi.json",
        title="Steward API",
        description="物业 IoT platform: estates, equipment, time series, ingest health. 简体中文 / English.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(ReadYourWritesMiddleware)
    app.add_middleware(SecurityMiddleware, hsts=production)
    if settings.proxies:
        # Outermost: the client address (login limits, audit) and scheme (Secure cookies) from X-Forwarded-*
        # only when the connection comes from a configured proxy; uvicorn's own proxy handling is off.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies)
    return app
