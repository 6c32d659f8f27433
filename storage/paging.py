"""One page of a listing, counted and cut in SQL, for the domain queries behind paged API lists.

The domain builds the statement (its filters and order); this counts the rows it matches and fetches one
window of them. The API turns a ``Paged`` into its ``Page`` schema; nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True)
class Paged(Generic[T]):
    items: Sequence[T]
    total: int  # rows the filters match, not only this page's


def fetch_page(session: Session, stmt: Select[Any], *, limit: int, offset: int) -> Paged[Any]:
    """``limit`` rows of ``stmt`` from ``offset``, with the count of all it matches (ordering left out)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = session.scalars(stmt.limit(limit).offset(offset)).all()
    return Paged(items=items, total=int(total))
