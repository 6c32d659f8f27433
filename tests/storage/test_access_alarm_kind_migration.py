"""Migration 0018 down and up again: the 'access' rule kind, its rules and their alarms go, and come back."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from alarms.access_pack import ACCESS_RULES, ensure_access_rules
from storage.migrate import downgrade, upgrade


def test_0018_down_and_up_again(fresh_database: str) -> None:
    engine = create_engine(fresh_database, poolclass=NullPool)
    try:
        with Session(engine) as s, s.begin():
            ensure_access_rules(s)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO estates (code, name, city) VALUES ('m18', 'm18', '上海');"
                    "INSERT INTO alarms (rule_id, subject, estate_id, severity, state, raised_at) "
                    "SELECT r.id, 'door:1:x', e.id, 'critical', 'active', now() FROM alarm_rules r, estates e "
                    "WHERE r.code = 'access.door_forced' AND e.code = 'm18'"
                )
            )
        downgrade(fresh_database, "0017")
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT count(*) FROM alarm_rules WHERE code LIKE 'access.%'")) == 0
            assert conn.scalar(text("SELECT count(*) FROM alarms WHERE subject = 'door:1:x'")) == 0
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO alarm_rules (code, kind, metric) VALUES ('x', 'access', '-')"))
        upgrade(fresh_database)
        with Session(engine) as s, s.begin():
            assert ensure_access_rules(s) == len(ACCESS_RULES)
    finally:
        engine.dispose()
