"""Staff accounts: passwords, browser sessions, bearer tokens, estate scope and the audit log.

Services take a Session and flush; the boundary (HTTP request, CLI command) commits.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from accounts.const import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    LOGIN_ADDRESS_MAX_FAILURES,
    LOGIN_BACKOFF_BASE,
    LOGIN_FAILURE_WINDOW,
    LOGIN_GLOBAL_MAX_FAILURES,
    LOGIN_GLOBAL_WINDOW,
    LOGIN_MAX_FAILURES,
    SESSION_TTL,
    TOKEN_DEFAULT_TTL,
    TOKEN_MAX_TTL,
    Role,
)
from core import clock
from core.errors import Conflict, InvalidInput, StewardError
from storage.models import ApiToken, AuditLog, Estate, LoginFailure, StaffEstate, StaffUser, WebSession

_hasher = PasswordHasher()
# Verified against when the username does not exist, so a wrong username costs the same time as a
# wrong password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("steward-timing-equaliser")
MIN_PASSWORD_LENGTH = 10
LOGIN_LOCK_SPACE = 0x57E1  # first key of the two-key advisory locks that serialise logins per username
ADDRESS_LOCK_SPACE = 0x57E2  # ... and per client address (always taken after the username's: no deadlock)


class LoginFailed(StewardError):
    status_code = 401


class TooManyAttempts(StewardError):
    status_code = 429

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def backoff(failures: int) -> timedelta:
    """How long after its last failure a (username, address) pair waits, given its failures in the window."""
    if failures < LOGIN_MAX_FAILURES:
        return timedelta(0)
    wait: timedelta = LOGIN_BACKOFF_BASE * 2 ** (failures - LOGIN_MAX_FAILURES)
    return min(wait, LOGIN_FAILURE_WINDOW)


def check_login_limits(session: Session, username: str, client: str) -> None:
    """Refuse an attempt before any hashing: globally, per client address, then per (username, address).

    Attempts on one username, and from one address, take turns until their transaction ends, so a burst of
    parallel guesses cannot all read the counts before any of them records a failure."""
    session.execute(select(func.pg_advisory_xact_lock(LOGIN_LOCK_SPACE, func.hashtext(username))))
    session.execute(select(func.pg_advisory_xact_lock(ADDRESS_LOCK_SPACE, func.hashtext(client))))
    now = clock.now()
    recent = select(func.count()).select_from(LoginFailure).where(LoginFailure.at <= now)
    if (session.scalar(recent.where(LoginFailure.at > now - LOGIN_GLOBAL_WINDOW)) or 0) >= LOGIN_GLOBAL_MAX_FAILURES:
        raise TooManyAttempts(
            "too many failed logins right now; try again in a minute / 当前登录失败过多，请一分钟后再试", 60
        )
    window = recent.where(LoginFailure.at > now - LOGIN_FAILURE_WINDOW, LoginFailure.client == client[:64])
    if (session.scalar(window) or 0) >= LOGIN_ADDRESS_MAX_FAILURES:
        raise TooManyAttempts(
            "too many failed logins from your address; try again later / 您的地址登录失败过多，请 15 分钟后再试",
            int(LOGIN_FAILURE_WINDOW.total_seconds()),
        )
    count, last = session.execute(
        select(func.count(), func.max(LoginFailure.at)).where(
            LoginFailure.username == username[:64],
            LoginFailure.client == client[:64],
            LoginFailure.at > now - LOGIN_FAILURE_WINDOW,
            LoginFailure.at <= now,
        )
    ).one()
    wait = backoff(count or 0)
    if last is not None and wait and now < last + wait:
        seconds = max(1, int((last + wait - now).total_seconds() + 0.999))
        raise TooManyAttempts(
            f"too many failed logins; try again in {seconds} s / 登录失败次数过多，请 {seconds} 秒后再试", seconds
        )


def record_login_failure(session: Session, username: str, client: str) -> None:
    session.add(LoginFailure(username=username[:64], client=client[:64], at=clock.now()))
    session.flush()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str = "",
    estates: Iterable[str] = (),
    all_estates: bool = False,
) -> StaffUser:
    """Create a staff account scoped to the given estate codes."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(StaffUser.id).where(StaffUser.username == username)) is not None:
        raise Conflict(f"user {username!r} exists")
    user = StaffUser(
        username=username,
        display_name=display_name or username,
        password_hash=_hasher.hash(password),
        role=Role(role).value,
        active=True,
        all_estates=all_estates,
    )
    session.add(user)
    session.flush()
    codes = list(estates)
    if codes:
        rows = session.execute(select(Estate.code, Estate.id).where(Estate.code.in_(codes)))
        found: dict[str, int] = {row[0]: row[1] for row in rows}
        missing = sorted(set(codes) - set(found))
        if missing:
            raise InvalidInput(f"unknown estates: {', '.join(missing)}")
        session.add_all(StaffEstate(user_id=user.id, estate_id=found[c]) for c in codes)
        session.flush()
    return user


def authenticate(
    session: Session, username: str, password: str, *, client: str = "", production: bool = False
) -> StaffUser:
    """Check a password after the login limits (check_login_limits); failures are recorded.

    In production the demo's account and password never log in (whoever created them).
    The caller must commit after a LoginFailed too, or the failure does not count."""
    check_login_limits(session, username, client)
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    demo = production and (username == DEMO_USERNAME or password == DEMO_PASSWORD)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        ok = user is not None and user.active and not demo
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        record_login_failure(session, username, client)
        raise LoginFailed("wrong username or password / 用户名或密码错误")
    # Only this pair's failures: the address's count stands (a valid account of one's own does not reset it).
    session.execute(
        delete(LoginFailure).where(LoginFailure.username == username[:64], LoginFailure.client == client[:64])
    )
    return user


def purge_expired(session: Session, now: datetime) -> dict[str, int]:
    """Delete browser sessions past their expiry and login failures older than every limit's window
    (a worker job: neither table may grow without bound)."""
    sessions = session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    oldest_counted = now - max(LOGIN_FAILURE_WINDOW, LOGIN_GLOBAL_WINDOW)
    failures = session.execute(delete(LoginFailure).where(LoginFailure.at <= oldest_counted))
    return {"sessions": sessions.rowcount or 0, "login_failures": failures.rowcount or 0}  # type: ignore[attr-defined]


def start_web_session(session: Session, user: StaffUser) -> str:
    """Return the cookie secret of a new browser session."""
    secret = secrets.token_urlsafe(32)
    session.add(WebSession(user_id=user.id, token_hash=_digest(secret), expires_at=clock.now() + SESSION_TTL))
    session.flush()
    return secret


def end_web_session(session: Session, secret: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _digest(secret)))


def user_for_session(session: Session, secret: str) -> StaffUser | None:
    row = session.scalar(
        select(StaffUser)
        .join(WebSession, WebSession.user_id == StaffUser.id)
        .where(WebSession.token_hash == _digest(secret), WebSession.expires_at > clock.now(), StaffUser.active)
    )
    return row


def create_token(session: Session, user: StaffUser, name: str, *, ttl: timedelta | None = None) -> str:
    """Return a new bearer token (shown once; only its hash is kept)."""
    return issue_token(session, user, name, ttl=ttl)[0]


def issue_token(session: Session, user: StaffUser, name: str, *, ttl: timedelta | None = None) -> tuple[str, ApiToken]:
    """A new bearer token's secret and row. Every token expires: after TOKEN_DEFAULT_TTL unless ``ttl`` says
    otherwise, at most TOKEN_MAX_TTL."""
    ttl = ttl or TOKEN_DEFAULT_TTL
    if ttl <= timedelta(0) or ttl > TOKEN_MAX_TTL:
        raise InvalidInput(f"token lifetime must be between 1 and {TOKEN_MAX_TTL.days} days / 令牌有效期超出范围")
    secret = "stw_" + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=_digest(secret), expires_at=clock.now() + ttl)
    session.add(row)
    session.flush()
    return secret, row


def revoke_token(session: Session, token: ApiToken) -> None:
    """Revoke a bearer token at once (idempotent: a revoked token keeps its first revocation time)."""
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        session.flush()


def deactivate_user(session: Session, user: StaffUser) -> None:
    """Switch an account off: it cannot log in, and its browser sessions and bearer tokens end now."""
    user.active = False
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    session.flush()


class WrongPassword(StewardError):
    status_code = 403


def change_password(
    session: Session, user: StaffUser, current: str, new: str, *, keep_session: str | None = None, client: str = ""
) -> None:
    """Change one's own password after proving the current one; ends every other browser session.

    A wrong current password counts as a failed login for the rate limit (a stolen session cannot be used to
    guess the password), so the caller must commit after a WrongPassword too."""
    if len(new) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters / 密码至少 {MIN_PASSWORD_LENGTH} 位"
        )
    check_login_limits(session, user.username, client)
    try:
        _hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError):
        record_login_failure(session, user.username, client)
        raise WrongPassword("current password is wrong / 当前密码错误") from None
    user.password_hash = _hasher.hash(new)
    others = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session:
        others = others.where(WebSession.token_hash != _digest(keep_session))
    session.execute(others)
    session.flush()


def user_for_token(session: Session, secret: str) -> StaffUser | None:
    now = clock.now()
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(secret), ApiToken.revoked_at.is_(None))
    )
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        return None
    user = session.get(StaffUser, token.user_id)
    if user is None or not user.active:
        return None
    # Coarse last-used stamp: integrations call often, one write a minute is plenty.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
    return user


def visible_estate_ids(session: Session, user: StaffUser) -> set[int]:
    if user.all_estates:
        return set(session.scalars(select(Estate.id)))
    return set(session.scalars(select(StaffEstate.estate_id).where(StaffEstate.user_id == user.id)))


def audit(
    session: Session, actor: StaffUser | str, action: str, obj: str, detail: dict[str, Any] | None = None
) -> None:
    """Append to the audit log (who read or changed what); never holds the personal data itself."""
    name = actor if isinstance(actor, str) else actor.username
    session.add(AuditLog(actor=name, action=action, object=obj, detail=detail or {}, at=clock.now()))
