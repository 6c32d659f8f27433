"""Reads of staff accounts and their bearer tokens for the JSON API (who may see which is ``accounts.policy``)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from storage.models import ApiToken, StaffUser
from storage.paging import Paged, fetch_page


def users_page(session: Session, visible: ColumnElement[bool], *, limit: int, offset: int) -> Paged[StaffUser]:
    """Staff accounts the ``visible`` filter (``policy.users_visible_to``) admits, by id."""
    return fetch_page(session, select(StaffUser).where(visible).order_by(StaffUser.id), limit=limit, offset=offset)


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    """An account's bearer tokens, oldest first."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))
