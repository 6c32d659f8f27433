"""Migration 0019: open platform tickets get their §4 row (the route they escalate on from now);
resident tickets none; down and up again."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from storage.migrate import downgrade, upgrade

_TICKET = (
    "INSERT INTO tickets (number, estate_id, source, category, priority, title, received_by, received_at) "
    "SELECT :n, id, :source, 'electrical', :priority, 't', 'system', now() FROM estates WHERE code = 'm19'"
)


def test_0019_backfills_platform_tickets_and_goes_down_and_up(fresh_database: str) -> None:
    engine = create_engine(fresh_database, poolclass=NullPool)
    try:
        downgrade(fresh_database, "0018")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO estates (code, name, city) VALUES ('m19', 'm19', '上海')"))
            for n, source, priority in [
                ("M19-1", "alarm", "urgent"),
                ("M19-2", "alarm", "high"),
                ("M19-3", "alarm", "minor"),
                ("M19-4", "inspection", "normal"),
                ("M19-5", "resident", "urgent"),
                ("M19-6", "complaint", "normal"),
            ]:
                conn.execute(text(_TICKET), {"n": n, "source": source, "priority": priority})
        upgrade(fresh_database)
        with engine.begin() as conn:
            kinds = dict(conn.execute(text("SELECT number, clock_kind FROM tickets WHERE number LIKE 'M19-%'")).all())
        assert kinds == {
            "M19-1": "critical",
            "M19-2": "alarm",
            "M19-3": "warning",
            "M19-4": "warning",
            "M19-5": None,
            "M19-6": None,
        }
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE tickets SET clock_kind = 'whenever' WHERE number = 'M19-1'"))
        downgrade(fresh_database, "0018")
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT count(*) FROM tickets WHERE number LIKE 'M19-%'")) == 6
        upgrade(fresh_database)
    finally:
        engine.dispose()
