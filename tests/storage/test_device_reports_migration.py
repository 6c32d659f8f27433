"""Migration 0016 down and up again: the reported-whitelist table goes and comes back; a 'refused' command
survives the way down as 'failed' with its reason (the old check constraint has no 'refused')."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from storage.migrate import downgrade, upgrade

REFUSED = (
    "INSERT INTO outbox (topic, payload, attempts, status, last_error) VALUES ('t', '{}', 1, 'refused', 'version_gap')"
)


def test_0016_down_and_up_again(fresh_database: str) -> None:
    engine = create_engine(fresh_database, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT to_regclass('device_whitelist_states')")) is not None
            cid = conn.execute(text(REFUSED + " RETURNING id")).scalar_one()
        downgrade(fresh_database, "0016-1")  # whatever 0016 is chained onto
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT to_regclass('device_whitelist_states')")) is None
            row = conn.execute(text("SELECT status, last_error FROM outbox WHERE id = :i"), {"i": cid}).one()
            assert tuple(row) == ("failed", "version_gap")
        with pytest.raises(IntegrityError, match="ck_outbox_status"), engine.begin() as conn:
            conn.execute(text(REFUSED))
        upgrade(fresh_database)
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT to_regclass('device_whitelist_states')")) is not None
            conn.execute(text(REFUSED))
    finally:
        engine.dispose()
