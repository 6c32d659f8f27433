"""Every list is paginated: limit/offset in, items/total/limit/offset out (the domain query counts and cuts); a
calendar is bounded by a time window instead (``time_window``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from api.deps import PageParams
from core import clock
from storage.paging import Paged


def page_out(paged: Paged[Any], page: PageParams, items: Sequence[Any] | None = None) -> dict[str, Any]:
    """The ``Page`` body of one page of a domain query; ``items`` replaces the rows once mapped to a schema."""
    return {
        "items": list(paged.items) if items is None else list(items),
        "total": paged.total,
        "limit": page.limit,
        "offset": page.offset,
    }


def time_window(start: datetime | None, end: datetime | None, span: timedelta) -> tuple[datetime, datetime]:
    """(from, to) of a calendar asked for ``start`` / ``end``: to defaults to now, from to ``span`` before to (the
    beginning of time when that underflows)."""
    hi = end or clock.now()
    try:
        lo = start or hi - span
    except OverflowError:
        lo = datetime.min.replace(tzinfo=UTC)
    return lo, hi
