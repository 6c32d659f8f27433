"""Steering a live run's door controllers from another thread (a test, a bench, the demo).

    controls = DoorControls()
    threading.Thread(target=run_simulation, kwargs={..., "controls": controls}).start()
    controls.disconnect("AC-1-1")            # it goes offline: no heartbeat, hears no command
    controls.present("AC-1-1", "04A1B2C3")   # someone presents a card: a swipe decided from its list
    controls.reconnect("AC-1-1")             # back: reports version + digest, uploads what it buffered

Requests are queued and applied by the run loop (before commands and frames), at once at the last simulated
time reached when it is waiting for the wall clock, else at its next tick; so the fleet is only ever touched
from one thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from protocol.whitelist import WhitelistEntryV1
from simulators.doors import DoorController, DoorEvent
from simulators.fleet import Fleet

Action = Callable[[DoorController, datetime], None]


class DoorControls:
    """A thread-safe queue of things to do to door controllers; ``apply`` runs them on the run loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Action]] = queue.SimpleQueue()
        self.wake = threading.Event()  # a realtime run applies a request at once instead of at its next tick

    def _put(self, code: str, action: Action) -> None:
        self._queue.put((code, action))
        self.wake.set()

    def disconnect(self, code: str) -> None:
        self._put(code, lambda door, t: door.disconnect(t))

    def reconnect(self, code: str) -> None:
        self._put(code, lambda door, t: door.reconnect(t))

    def present(self, code: str, uid: str, door: str | None = None) -> None:
        self._put(code, lambda c, t: c.present(uid, t, door))

    def door_event(self, code: str, event: DoorEvent, door: str | None = None, open_s: int | None = None) -> None:
        self._put(code, lambda c, t: c.door_event(event, t, door, open_s))

    def tamper(self, code: str, *, upsert: Iterable[WhitelistEntryV1] = (), remove: Iterable[str] = ()) -> None:
        """Change the controller's list behind the platform's back (the version stays)."""
        added, removed = tuple(upsert), tuple(remove)
        self._put(code, lambda c, t: c.whitelist.tamper(upsert=added, remove=removed))

    def apply(self, fleet: Fleet, t: datetime) -> int:
        """Run the queued requests at simulated time ``t``; unknown controllers are skipped. Returns how many ran."""
        done = 0
        while True:
            try:
                code, action = self._queue.get_nowait()
            except queue.Empty:
                return done
            try:
                controller = fleet.door(code)
            except KeyError:
                continue
            action(controller, t)
            done += 1
