"""Swipe-log retention (PIPL): each estate's access events older than its limit go, nothing newer, no other
estate's; chunks of any size delete the same rows; a bad per-estate setting is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from access.retention import purge_swipes
from core.errors import InvalidInput
from storage.models import AccessEvent, Estate
from tests.support.access_world import make_card_estate
from tests.support.clock import INSTANTS

NOW = INSTANTS["sh-1200"]


def swipes(session: Session, controller: int, ages_days: list[float]) -> None:
    for k, age in enumerate(ages_days):
        session.add(
            AccessEvent(
                ts=NOW - timedelta(days=age),
                controller_id=controller,
                door="main",
                card_uid=f"{k:08X}",
                granted=k % 2 == 0,
                reason=None if k % 2 == 0 else "unknown",
            )
        )
    session.flush()


def ages(session: Session, controller: int) -> list[float]:
    rows = session.execute(
        text("SELECT ts FROM access_events WHERE controller_id = :c ORDER BY ts DESC"), {"c": controller}
    ).scalars()
    return [round((NOW - ts).total_seconds() / 86400, 3) for ts in rows]


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_events_past_each_estates_limit_are_deleted(session: Session, chunk: int) -> None:
    default = make_card_estate(session)  # 180 days
    short = make_card_estate(session, policy={"access_swipe_retention_days": 30})
    a, b = default.controllers["GATE"], short.controllers["GATE"]
    swipes(session, a, [0, 29.9, 30.1, 179.9, 180.1, 400])
    swipes(session, b, [0, 29.9, 30.1, 179.9, 180.1, 400])
    result = purge_swipes(session, NOW, chunk=chunk)
    assert ages(session, a) == [0, 29.9, 30.1, 179.9]
    assert ages(session, b) == [0, 29.9]
    assert result.deleted[default.code] == 2
    assert result.deleted[short.code] == 4
    assert purge_swipes(session, NOW, chunk=chunk).deleted.get(default.code) is None  # nothing left to do


def test_a_bad_retention_setting_is_refused(session: Session) -> None:
    place = make_card_estate(session, policy={"access_swipe_retention_days": "forever"})
    estate = session.get(Estate, place.estate_id)
    assert estate is not None
    with pytest.raises(InvalidInput):
        purge_swipes(session, NOW)
