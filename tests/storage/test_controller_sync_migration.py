"""Migration 0017 down and up again: the controller sync table goes and comes back."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from storage.migrate import downgrade, upgrade


def test_0017_down_and_up_again(fresh_database: str) -> None:
    engine = create_engine(fresh_database, poolclass=NullPool)
    try:
        downgrade(fresh_database, "0016")
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT to_regclass('access_controller_sync')")) is None
            assert conn.scalar(text("SELECT to_regclass('device_whitelist_states')")) is not None
        upgrade(fresh_database)
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT to_regclass('access_controller_sync')")) is not None
    finally:
        engine.dispose()
