"""Every list is paginated: limit/offset in, items/total/limit/offset out (the domain query counts and cuts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.deps import PageParams
from storage.paging import Paged


def page_out(paged: Paged[Any], page: PageParams, items: Sequence[Any] | None = None) -> dict[str, Any]:
    """The ``Page`` body of one page of a domain query; ``items`` replaces the rows once mapped to a schema."""
    return {
        "items": list(paged.items) if items is None else list(items),
        "total": paged.total,
        "limit": page.limit,
        "offset": page.offset,
    }
