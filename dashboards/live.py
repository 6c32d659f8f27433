"""Live updates: one LISTEN connection per API process, fanned out to Server-Sent Event streams.

Ingest commits a batch and then ``NOTIFY steward_ingest`` (ingest/writer.py), so every API process
listening on the database sees every batch, whichever process or machine wrote it, and never a
rolled-back one. The payload says how much was stored but not where, so a notification only marks each
subscriber dirty; the stream then re-reads what its page shows (at most once a second per client) in
a worker thread with its own Session. A periodic tick re-sends even without data, so "已 12 分钟未上报"
keeps counting when a device goes quiet.

Lifecycle: the hub starts with the application (a lifespan merged into the app's by ``include_router``)
and connects in the background, retrying with back-off, so a database that is down at start-up delays
live updates but never the API. On shutdown the task is cancelled, its connection closed and every
stream told to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from storage.notify import BILLING_CHANNEL, INGEST_CHANNEL

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# Between notifications the listener pings the server this often, so a connection that died silently
# (server restart, NAT timeout) is noticed and replaced instead of waiting forever.
HEALTH_CHECK_S = 20.0
# The ingest page's throughput is measured over this window of notifications.
RATE_WINDOW_S = 60.0


class Subscriber:
    """One stream's mailbox. A flag, not a queue: the stream re-reads the current state anyway, so any
    number of notifications between two reads collapse into one and a slow client costs no memory."""

    def __init__(self) -> None:
        self._dirty = asyncio.Event()
        self.closed = False

    def mark(self) -> None:
        self._dirty.set()

    def close(self) -> None:
        self.closed = True
        self._dirty.set()

    async def wait(self, within: float) -> bool:
        """True when marked (or closed) within ``within`` seconds; clears the mark."""
        try:
            await asyncio.wait_for(self._dirty.wait(), within)
        except TimeoutError:
            return False
        self._dirty.clear()
        return True


@dataclass(frozen=True, slots=True)
class Rates:
    listening: bool
    window_s: float
    stored_per_s: float
    dead_letters: int
    quarantined: int
    notifications: int


def connect_kwargs(engine: Engine) -> dict[str, Any]:
    """psycopg connection arguments for the engine's database (handles the embedded server's socket host)."""
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)  # the sync dialect's adapters map; the async connection brings its own
    return dict(kwargs)


# Live views one account may hold open at once in one API process (tabs, phones): each is a task, a
# subscriber and a database read per notification, so an unbounded number is a cheap way to load the API.
MAX_STREAMS_PER_USER = 8


class StreamLimits:
    """Open live streams per user (issue 9 #14). Counted while a stream runs, so none leaks on a disconnect."""

    def __init__(self, per_user: int = MAX_STREAMS_PER_USER) -> None:
        self.per_user = per_user
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def full(self, user: str) -> bool:
        with self._lock:
            return self._open[user] >= self.per_user

    def open_count(self, user: str) -> int:
        with self._lock:
            return self._open[user]

    async def bounded(self, user: str, stream: AsyncGenerator[ServerSentEvent, None]) -> AsyncIterator[ServerSentEvent]:
        with self._lock:
            self._open[user] += 1
        try:
            async for event in stream:
                yield event
        finally:
            with self._lock:
                self._open[user] -= 1
                if self._open[user] <= 0:
                    del self._open[user]
            await stream.aclose()


class LiveHub:
    def __init__(
        self, conninfo: dict[str, Any], *, channel: str = INGEST_CHANNEL, also: tuple[str, ...] = (BILLING_CHANNEL,)
    ) -> None:
        self.streams = StreamLimits()
        self._conninfo = conninfo
        self._channel = channel
        # Channels that only wake the streams (billing's charges and payments); the rates count ingest's alone.
        self._also = also
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._events: deque[tuple[float, dict[str, Any]]] = deque()
        # rates() is read from worker threads (the ingest page's snapshot) while the listener appends.
        self._events_lock = threading.Lock()
        self._started_at = time.monotonic()
        self.listening = False
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._started_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="steward-live-listen")

    async def stop(self) -> None:
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening = False

    # -- subscribers -------------------------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        if self.closed:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def broadcast(self) -> None:
        for sub in self._subscribers:
            sub.mark()

    # -- throughput --------------------------------------------------------------------------------

    def _record(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = {}
        now = time.monotonic()
        with self._events_lock:
            self._events.append((now, data if isinstance(data, dict) else {}))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - RATE_WINDOW_S:
            self._events.popleft()

    def rates(self) -> Rates:
        now = time.monotonic()
        with self._events_lock:
            self._trim(now)
            events = [e for _, e in self._events]
        # Until the hub has listened for a full window, divide by the time it has listened.
        window = max(1.0, min(RATE_WINDOW_S, now - self._started_at))

        def total(key: str) -> int:
            return sum(v for e in events if isinstance(v := e.get(key, 0), int))

        return Rates(
            listening=self.listening,
            window_s=window,
            stored_per_s=total("stored") / window,
            dead_letters=total("dead_letters"),
            quarantined=total("quarantined"),
            notifications=len(events),
        )

    # -- the listener ------------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._conninfo)
                async with conn:
                    await conn.execute(f"LISTEN {self._channel}")
                    for extra in self._also:
                        await conn.execute(f"LISTEN {extra}")
                    self.listening = True
                    attempt = 0
                    log.info("live: listening on %s", self._channel)
                    # Anything committed while we were not listening is unseen: let every stream re-read.
                    self.broadcast()
                    while True:
                        async for note in conn.notifies(timeout=HEALTH_CHECK_S):
                            if note.channel == self._channel:
                                self._record(note.payload)
                            self.broadcast()
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                if self.listening or attempt == 0:
                    log.warning("live: LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
                self.listening = False
                attempt += 1
                await asyncio.sleep(delay)


async def event_stream(
    hub: LiveHub,
    snapshot: Callable[[], dict[str, Any] | None],
    *,
    min_interval: float = 1.0,
    tick: float = 5.0,
    first: dict[str, Any] | None = None,
) -> AsyncGenerator[ServerSentEvent, None]:
    """SSE events for one client: ``update`` with ``snapshot()`` after each notification (throttled to one
    per ``min_interval``, or per the time the last snapshot took when that was longer) and every ``tick``
    seconds; ``expired`` and the end when ``snapshot`` returns None (the login ended). ``snapshot`` runs in a
    worker thread: it does blocking database reads."""
    sub = hub.subscribe()
    last = 0.0
    spent = 0.0  # how long the last snapshot took
    data: dict[str, Any] | None
    try:
        while not sub.closed:
            # Throttle: coalesce everything that arrives within the interval into one read. A snapshot slower than
            # the interval (a wall display of a hundred rooms under a flood of readings) waits as long as it took,
            # so one client never keeps a worker thread and the database busy more than half the time.
            wait = max(min_interval, spent) - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            started = time.monotonic()
            if first is not None:  # read while checking the request: send it rather than read twice
                data, first = first, None
            else:
                data = await run_in_threadpool(snapshot)
            last = time.monotonic()
            spent = last - started
            if data is None:
                yield ServerSentEvent(event="expired", data="{}")
                return
            yield ServerSentEvent(event="update", data=json.dumps(data, ensure_ascii=False, separators=(",", ":")))
            await sub.wait(tick)
    finally:
        hub.unsubscribe(sub)
