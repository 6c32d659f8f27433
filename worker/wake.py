"""Wake jobs on NOTIFY: a LISTEN connection that pokes the worker when there is work, instead of its next poll.

A domain that queues a device command (access/sync.py) notifies ``OUTBOX_CHANNEL`` in its transaction; the
notification arrives on commit, and the outbox job runs at once (its 2 s period stays as the fallback when the
connection is down). Ingest notifies ``DEVICE_REPORTS_CHANNEL`` when a controller reports its whitelist or refuses
a command, which runs the ``access_sync`` job at once. One thread, one connection, reconnecting with backoff;
payloads are ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from storage.notify import DEVICE_REPORTS_CHANNEL, OUTBOX_CHANNEL

log = logging.getLogger(__name__)

# channel → the jobs a notification on it wakes.
# A controller's report or refusal (ingest) wakes the controller sync, whose new command wakes the dispatcher.
WAKES: dict[str, tuple[str, ...]] = {OUTBOX_CHANNEL: ("outbox",), DEVICE_REPORTS_CHANNEL: ("access_sync",)}
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def conninfo(engine: Engine) -> str:
    """A libpq URL for the engine's database (SQLAlchemy's driver suffix dropped)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class WakeListener:
    """LISTEN on `wakes`' channels; each notification calls ``poke(*jobs)`` for its channel (any thread)."""

    def __init__(self, dsn: str, poke: Callable[..., None], wakes: Mapping[str, Sequence[str]] | None = None) -> None:
        self.dsn = dsn
        self.poke = poke
        self.wakes = dict(wakes if wakes is not None else WAKES)
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-wake", daemon=True)

    def start(self) -> WakeListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    for channel in self.wakes:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening.set()
                    attempt = 0
                    # Whatever was queued while we were not listening: run those jobs once now.
                    self.poke(*{j for jobs in self.wakes.values() for j in jobs})
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.poke(*self.wakes.get(note.channel, ()))
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                log.warning("worker: LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
                attempt += 1
                self._stop.wait(delay)
        self.listening.clear()


__all__ = ["WAKES", "WakeListener", "conninfo"]
