"""What staff do at the billing desk beyond the core services, one rule set for the API and the pages.

A price version entered by a person starts in the future: `service.add_tariff` already refuses one that
would reprice charged consumption, and staff may not even date one back to a moment that has passed
(consumption since then is being metered at the old price as we speak).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from billing import service
from billing.pricing import Tier
from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import Estate, Tariff


def tariff_start(session: Session, estate_id: int, effective_from: date | datetime) -> datetime:
    """The instant a tariff takes effect: a date means 00:00 in the estate's timezone."""
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 未找到该小区")
    if isinstance(effective_from, datetime):
        if effective_from.tzinfo is None:
            raise InvalidInput("effective_from needs a timezone / 生效时间须带时区")
        return effective_from
    return datetime.combine(effective_from, time(0, 0), ZoneInfo(estate.timezone))


def add_future_tariff(
    session: Session,
    *,
    estate_id: int,
    effective_from: date | datetime,
    tiers: Sequence[Tier],
    actor: str,
    note: str = "",
) -> Tariff:
    """A new price version from a future date (never retroactive: a past start is refused with 422)."""
    start = tariff_start(session, estate_id, effective_from)
    now = clock.now()
    if start < now:
        raise InvalidInput(
            f"a tariff may not start in the past ({start.isoformat()} is before {now.isoformat()}); "
            "choose tomorrow or later / 新价格不得追溯，生效日期须晚于当前时间"
        )
    return service.add_tariff(session, estate_id=estate_id, effective_from=start, tiers=tiers, actor=actor, note=note)
