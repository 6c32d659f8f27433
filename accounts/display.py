"""Display tokens: the read-only credential of a control-room screen (大屏) for one estate's wall display.

A manager or admin issues one (the secret is shown once; only its SHA-256 is kept, as for API tokens). The screen
presents it once at /wall/connect and keeps it in an HttpOnly cookie of its own, so it never meets a login prompt
again. The token is no staff account: the staff sessions and bearer tokens never accept it, so it opens the wall
display of its estate and that display's live stream, and nothing else. Revoking it ends the screen's view at its
next request or live update.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import DisplayToken, Estate

PREFIX = "std_"  # apart from API tokens (stw_): a leaked secret says what it is
DEFAULT_TTL = timedelta(days=365)  # a screen on the wall: renewed once a year
MAX_TTL = timedelta(days=3 * 365)
USE_STAMP_EVERY = timedelta(minutes=5)  # the live stream re-checks the token every few seconds: stamp coarsely


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Display:
    """Who is looking at a wall display: the token's id and name, and the one estate it reads."""

    token_id: int
    name: str
    estate_id: int
    estate_code: str


def issue(
    session: Session, estate: Estate, *, name: str, created_by: str, ttl: timedelta | None = None
) -> tuple[str, DisplayToken]:
    """A new display token for the estate: its secret (shown once) and its row."""
    ttl = ttl or DEFAULT_TTL
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise InvalidInput(
            f"a display token lives 1 to {MAX_TTL.days} days / 大屏令牌有效期须为 1 至 {MAX_TTL.days} 天"
        )
    label = name.strip()
    if not label or "\x00" in label or len(label) > 64:
        raise InvalidInput("name the screen (1–64 characters) / 请填写大屏名称（1–64 字）")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = DisplayToken(
        estate_id=estate.id,
        name=label,
        token_hash=_digest(secret),
        created_by=created_by,
        created_at=clock.now(),
        expires_at=clock.now() + ttl,
    )
    session.add(row)
    session.flush()
    return secret, row


def tokens_of(session: Session, estate_id: int) -> list[DisplayToken]:
    """The estate's display tokens, newest first (revoked and expired ones included: they are its history)."""
    return list(
        session.scalars(
            select(DisplayToken).where(DisplayToken.estate_id == estate_id).order_by(DisplayToken.id.desc())
        )
    )


def token_in(session: Session, token_id: int, visible: Set[int]) -> DisplayToken:
    """A display token of the caller's estates, or 404 (missing and not visible are the same answer)."""
    row = session.get(DisplayToken, token_id)
    if row is None or row.estate_id not in visible:
        raise NotFound("display token not found / 未找到该大屏令牌")
    return row


def revoke(session: Session, token: DisplayToken, by: str) -> None:
    """Revoke at once (idempotent: a revoked token keeps its first revocation)."""
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        token.revoked_by = by
        session.flush()


def is_live(token: DisplayToken, now: datetime) -> bool:
    return token.revoked_at is None and token.expires_at > now


def display_for(session: Session, secret: str) -> Display | None:
    """The display a secret opens, or None (unknown, revoked or expired)."""
    if not secret.startswith(PREFIX):
        return None
    now = clock.now()
    row = session.execute(
        select(DisplayToken, Estate.code)
        .join(Estate, Estate.id == DisplayToken.estate_id)
        .where(DisplayToken.token_hash == _digest(secret))
    ).first()
    if row is None:
        return None
    token, code = row
    if not is_live(token, now):
        return None
    if token.last_used_at is None or now - token.last_used_at > USE_STAMP_EVERY:
        token.last_used_at = now
    return Display(token_id=token.id, name=token.name, estate_id=token.estate_id, estate_code=code)
