"""Alembic environment: migrations are the only source of the schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from storage import models  # noqa: F401  (registers every table on Base.metadata)
from storage.base import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Engine-specific objects made by 0002 (BRIN indexes, TimescaleDB internals) are not in the models.
    return not (type_ == "index" and name and name.endswith("_ts_brin"))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
