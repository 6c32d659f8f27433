"""Reads from a streaming replica (``STEWARD_DATABASE_READ_URL``), and the one rule for when not to.

The rule, for every route:

- ``ReadSessionDep`` — a GET that only reads and shows (pages, lists, series, the ingest page, the JSON API's
  GETs). It is a session on the replica when one is configured, otherwise the very same session as
  ``SessionDep``. A replica is read-only: a route that writes anything must not take it.
- ``SessionDep`` (web/deps.py) — everything else, on the primary: staff actions (POST/PUT/PATCH/DELETE),
  login and session/token lookups (``CurrentUser``, ``ViewerDep``: a logout or a deactivation takes effect at
  once), idempotency checks, and any GET that writes.

Read-your-writes: after a request with an unsafe method the response carries a cookie with the primary's WAL
position at that moment (``ReadYourWritesMiddleware``). A later ``ReadSessionDep`` from the same browser or
client reads on the replica only once the replica has replayed past that position, and on the primary until
then — so the page a form POST redirects to shows what the POST wrote, however far the replica trails. A replica
that cannot be reached is skipped for the primary (logged), so reads degrade to the primary rather than fail.

The live streams (dashboards/streaming.py) check the login on the primary and take their snapshots through
``fresh_read_session``: they re-render on the primary's NOTIFY, so a snapshot must hold at least what the primary
held when it was taken. The replica is used once it has replayed up to the primary's position at that moment
(a wait of at most FRESH_WAIT_S), the primary otherwise.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage import replication
from web.deps import SessionDep

log = logging.getLogger(__name__)

# The client's last write's WAL position ("16/B374D848"). Not a secret: a forged value only moves the sender's
# own reads between the replica and the primary.
WRITTEN_COOKIE = "steward_written"
# Long enough for any replica the ingest page would not already show as far behind; after it, reads go back to
# the replica whatever its lag.
WRITTEN_COOKIE_MAX_AGE_S = 600
_LSN = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def replication_status(request: Request, primary: Session) -> replication.ReplicaStatus:
    """The replica's lag as the replica and the primary (``primary``: a session on it) see it."""
    return replication.replica_status(primary, getattr(request.app.state, "read_engine", None))


# How long a live snapshot waits for the replica to replay up to the primary's position before it reads the
# primary instead. Replay trails by a few milliseconds when healthy (p99 about 30 ms on a loaded 2-core machine).
FRESH_WAIT_S = 0.2


def _replayed_within(replica: Session, lsn: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    try:
        while not replication.replayed(replica, lsn):
            replica.rollback()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
    except DBAPIError as exc:
        log.warning("read replica unavailable, reading from the primary: %s", str(exc.orig).splitlines()[0])
        return False


@contextmanager
def fresh_read_session(state: Any, primary: Session, wait_s: float = FRESH_WAIT_S) -> Iterator[Session]:
    """A session that shows at least what ``primary`` holds now: the replica (of ``state``, the application's
    state) once it has replayed that far, within ``wait_s``; otherwise ``primary`` itself."""
    factory: sessionmaker[Session] | None = getattr(state, "read_sessionmaker", None)
    if factory is None:
        yield primary
        return
    lsn = replication.current_wal_lsn(primary)
    replica = factory()
    try:
        yield replica if _replayed_within(replica, lsn, wait_s) else primary
    finally:
        replica.close()


def read_sessionmaker(request: Request) -> sessionmaker[Session] | None:
    """The replica's sessionmaker, None when reads go to the primary."""
    return getattr(request.app.state, "read_sessionmaker", None)


def _replica_usable(replica: Session, written: str | None) -> bool:
    try:
        if written and _LSN.match(written):
            return replication.replayed(replica, written)
        replica.connection()  # connect now, so a replica that is down falls back here rather than in the route
        return True
    except DBAPIError as exc:
        log.warning("read replica unavailable, reading from the primary: %s", str(exc.orig).splitlines()[0])
        return False


def get_read_session(request: Request, primary: SessionDep) -> Iterator[Session]:
    """A session for a read-only route: the replica's when it has replayed the client's last write."""
    factory = read_sessionmaker(request)
    if factory is None:
        yield primary
        return
    replica = factory()
    try:
        if not _replica_usable(replica, request.cookies.get(WRITTEN_COOKIE)):
            replica.close()
            yield primary
            return
        request.state.read_from = "replica"
        yield replica
    finally:
        replica.close()  # rolls back: nothing to keep, and a replica cannot keep anything


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


class ReadYourWritesMiddleware:
    """Sets WRITTEN_COOKIE on the response to every unsafe request, when the application reads from a replica.

    The route's transaction has committed before the response starts (web/deps.py commits with scope="function"),
    so the primary's WAL write position taken then is at or past the route's commit (storage/replication.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        state: Any = scope["app"].state

        async def send_marked(message: Message) -> None:
            lsn = None
            if message["type"] == "http.response.start" and getattr(state, "read_sessionmaker", None) is not None:
                lsn = await run_in_threadpool(_primary_lsn, state.engine)
            if lsn is not None:
                cookie: SimpleCookie = SimpleCookie()
                cookie[WRITTEN_COOKIE] = lsn
                morsel = cookie[WRITTEN_COOKIE]
                morsel["path"] = "/"
                morsel["max-age"] = WRITTEN_COOKIE_MAX_AGE_S
                morsel["httponly"] = True
                morsel["samesite"] = "lax"
                settings = getattr(state, "settings", None)
                if scope.get("scheme") == "https" or (settings is not None and settings.env == "production"):
                    morsel["secure"] = True
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", morsel.OutputString().encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)


def _primary_lsn(engine: Engine) -> str | None:
    """None when the primary cannot say (it is down): the response goes out without the cookie."""
    try:
        with engine.connect() as conn:
            return replication.current_wal_lsn(conn)
    except DBAPIError as exc:
        log.warning("no WAL position for read-your-writes: %s", str(exc.orig).splitlines()[0])
        return None
