"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand) when none is set."""
    if settings.database_url:
        return settings.database_url
    from storage.embedded import start_embedded_postgres

    return start_embedded_postgres(settings.data_dir)


def make_engine(settings: Settings, *, url: str | None = None, pool_size: int = 5) -> Engine:
    return create_engine(
        url or database_url(settings),
        pool_size=pool_size,
        pool_pre_ping=True,
        # Bound parameters can carry residents' names and phones: keep them out of logs and errors.
        hide_parameters=True,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work at a boundary (CLI command, worker job): commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session
