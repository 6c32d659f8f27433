"""Live streams of page snapshots over SSE (equipment, ingest, alarm and ticket pages): each snapshot re-checks
the login and scope, and a user holds at most MAX_STREAMS_PER_USER streams at once.

`stream` re-renders on every ingest notification (rate-limited); `marked_stream` renders only when the
area's change mark moved (the ticket board, the alarm list, billing's accounts). The login is checked on the
primary; snapshots read through web/replica.py ``fresh_read_session`` (the replica when it is caught up)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from accounts import service as accounts
from dashboards import banner_view
from dashboards.live import LiveHub, event_stream
from dashboards.viewer import PageError, Viewer, request_lang
from web.cookies import SESSION_COOKIE
from web.replica import fresh_read_session


class BannerWatch:
    """The alarm banner (dashboards/banner_view.py) rides on every page's stream: added to an update when the
    banner's mark moved since this stream last sent it (always to the first), so each page needs one stream."""

    def __init__(self) -> None:
        self.last: banner_view.BannerMark | None = None

    def changed(self, session: Session, viewer: Viewer) -> banner_view.BannerMark | None:
        now = banner_view.mark(session, viewer)
        if now is None or now == self.last:
            return None
        self.last = now
        return now

    def add(self, session: Session, viewer: Viewer, data: dict[str, Any]) -> dict[str, Any]:
        moved = self.changed(session, viewer)
        if moved is not None:
            data["banner"] = banner_view.payload(session, viewer, moved)
        return data


def _live_snapshot(
    request: Request, build: Callable[[Session, Viewer], dict[str, Any]], allowed: Callable[[Viewer], bool]
) -> Callable[[], dict[str, Any] | None]:
    """A snapshot function for one stream: re-checks the login and scope each time, since a stream can
    outlive the session that opened it (12 h) or the user's estate assignment."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    cookie = request.cookies.get(SESSION_COOKIE, "")
    lang = request_lang(request)
    banner = BannerWatch()

    def snapshot() -> dict[str, Any] | None:
        with factory() as session:
            user = accounts.user_for_session(session, cookie) if cookie else None
            if user is None:
                return None
            viewer = Viewer.of(session, user, lang)
            if not allowed(viewer):
                return None
            try:
                with fresh_read_session(request.app.state, session) as reads:
                    return banner.add(reads, viewer, build(reads, viewer))
            except PageError:
                return None
            finally:
                session.rollback()  # read-only: nothing to keep

    return snapshot


async def stream(
    request: Request,
    build: Callable[[Session, Viewer], dict[str, Any]],
    allowed: Callable[[Viewer], bool],
    *,
    min_interval: float,
) -> Response:
    snapshot = _live_snapshot(request, build, allowed)
    first = await run_in_threadpool(snapshot)
    if first is None:
        # Refuse before streaming: EventSource then stops retrying and the page reloads into the login.
        return PlainTextResponse("login required or not permitted / 请重新登录", status_code=401)
    hub: LiveHub = request.app.state.live
    return await bounded_stream(request, event_stream(hub, snapshot, min_interval=min_interval, first=first))


def _stream_owner(request: Request) -> str:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        user = accounts.user_for_session(session, request.cookies.get(SESSION_COOKIE, ""))
        return user.username if user is not None else ""


async def bounded_stream(
    request: Request, events: AsyncGenerator[ServerSentEvent, None], *, owner: str | None = None
) -> Response:
    """The SSE response for ``events``, unless its user holds MAX_STREAMS_PER_USER live views already (429).

    ``owner`` names who holds the stream when it is not the staff session's user (a wall display's token)."""
    hub: LiveHub = request.app.state.live
    if owner is None:
        owner = await run_in_threadpool(_stream_owner, request)
    if hub.streams.full(owner):
        await events.aclose()
        return PlainTextResponse(
            "too many live views open; close some tabs / 实时页面打开过多，请关闭部分标签页", status_code=429
        )
    return EventSourceResponse(hub.streams.bounded(owner, events), ping=15)


class MarkedWatch:
    """One marked stream's view: re-checks the login and scope at every look (a stream outlives its session
    and the user's estate assignment) and renders the fragment only when the area's change mark moved.

    ``mark(session, viewer)`` is cheap (a few max() / count() over the viewer's estates); ``build`` renders."""

    def __init__(
        self,
        request: Request,
        build: Callable[[Session, Viewer], dict[str, Any]],
        allowed: Callable[[Viewer], bool],
        mark: Callable[[Session, Viewer], tuple[Any, ...]],
    ) -> None:
        self.factory: sessionmaker[Session] = request.app.state.sessionmaker
        self.state = request.app.state
        self.cookie = request.cookies.get(SESSION_COOKIE, "")
        self.lang = request_lang(request)
        self.build, self.allowed, self.mark = build, allowed, mark
        self.last: tuple[Any, ...] | None = None
        self.banner = BannerWatch()

    def look(self) -> dict[str, Any] | None:
        """The new payload, {} when nothing changed, None when the login ended or no longer permits it."""
        with self.factory() as session:
            try:
                user = accounts.user_for_session(session, self.cookie) if self.cookie else None
                if user is None:
                    return None
                viewer = Viewer.of(session, user, self.lang)
                if not self.allowed(viewer):
                    return None
                with fresh_read_session(self.state, session) as reads:
                    mark = self.mark(reads, viewer)
                    data: dict[str, Any] = {}
                    if mark != self.last:
                        self.last = mark
                        data = self.build(reads, viewer)
                    return self.banner.add(reads, viewer, data)
            except PageError:
                return None
            finally:
                session.rollback()  # read-only


def _update(data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event="update", data=json.dumps(data, ensure_ascii=False, separators=(",", ":")))


async def _marked_events(
    hub: LiveHub, watch: MarkedWatch, first: dict[str, Any], poll_s: float, min_gap_s: float
) -> AsyncGenerator[ServerSentEvent, None]:
    sub = hub.subscribe()
    last = time.monotonic()
    try:
        yield _update(first)
        while not sub.closed:
            await sub.wait(poll_s)
            gap = min_gap_s - (time.monotonic() - last)
            if gap > 0:
                await asyncio.sleep(gap)
            last = time.monotonic()
            data = await run_in_threadpool(watch.look)
            if data is None:
                yield ServerSentEvent(event="expired", data="{}")
                return
            if data:
                yield _update(data)
    finally:
        hub.unsubscribe(sub)


async def marked_stream(
    request: Request,
    build: Callable[[Session, Viewer], dict[str, Any]],
    allowed: Callable[[Viewer], bool],
    mark: Callable[[Session, Viewer], tuple[Any, ...]],
    *,
    poll_s: float,
    min_gap_s: float = 0.5,
) -> Response:
    """``update`` now, then again whenever ``mark`` moves: looked at after each ingest notification and
    every ``poll_s`` (changes made by requests and worker jobs do not notify), at most every ``min_gap_s``."""
    watch = MarkedWatch(request, build, allowed, mark)
    first = await run_in_threadpool(watch.look)
    if not first:
        return PlainTextResponse("login required or not permitted / 请重新登录", status_code=401)
    hub: LiveHub = request.app.state.live
    return await bounded_stream(request, _marked_events(hub, watch, first, poll_s, min_gap_s))
