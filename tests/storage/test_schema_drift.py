"""The models mirror the migrations on plain PostgreSQL too (the TimescaleDB check is in test_timescale_migrations)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from storage.base import Base


def test_no_schema_drift_from_the_models_on_plain_postgresql(engine: Engine) -> None:
    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Mirrors storage/migrations/env.py.
        return not (type_ == "index" and name and name.endswith("_ts_brin"))

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        diffs = compare_metadata(context, Base.metadata)
    assert diffs == []
