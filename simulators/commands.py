"""Downlink commands: meters obey the platform's ``valve`` commands, door controllers its whitelist commands.

The platform (tickets → outbox → worker/outbox.py) publishes, QoS 1, on
``steward/{estate}/down/{device}/valve``::

    {"v":1,"command_id":"42","issued_at":"…","expires_at":"…","action":"close","reason":"vacant_flow","ticket":"GD…"}

and expects the device's answer on its uplink ``ack`` channel (``protocol.payloads.AckV1``)::

    {"v":1,"command_id":"42","status":"applied"}    # or "rejected" / "expired"

Two halves, one per thread (DESIGN.md §2: paho callbacks only hand off to a bounded queue):

* ``CommandInbox`` lives on paho's network thread: it (re)subscribes on every connect and puts each
  message on a bounded queue; it never touches the fleet.
* ``ValveController`` (and ``DoorCommands``) live on the run loop: it drains the queue (between ticks, or at
  once when the inbox wakes a realtime run), operates the meter's valve at that simulated time and returns
  the ack frame to publish.

What a device answers:

* applied   a valid ``close``/``open`` for a meter of the fleet with a valve (also when the valve was
            already in that position). A repeated ``command_id`` (QoS 1 and the outbox deliver at
            least once) is answered again with the first answer and not applied twice.
* expired   ``expires_at`` has passed on the wall clock when the command is taken off the queue
            (the platform's clock, not the simulated one: a replay of the past still honours expiry);
            or the command is older (``issued_at``, its version) than the one this valve applied last: a
            stale copy replayed after a reconnect must not undo a newer decision (matrix M18).
* rejected  the payload is not a valid v1 valve command but names a usable ``command_id``, or the
            device has no valve (an electricity meter, a sensor).
* no answer a device this fleet does not simulate (another simulator or a real device may own it), or
            a payload without a usable ``command_id`` (there is nothing to name in an ack).

A valve ack carries no reason (reasons only go to the log). Whitelist commands
(``…/down/{controller}/whitelist`` and ``…/whitelist_report``, see ``protocol.whitelist``) are handled by
``DoorCommands`` on the same queue: the controller applies them to its ``Whitelist`` and acks with the version,
the digest and, when refused, the reason (``protocol.whitelist.REFUSALS``; ``staged`` on an applied snapshot part).
A controller that is offline (``DoorController.disconnect``) never hears a command: no ack, counted ``unheard``
(a clean session; the platform learns the version from the reconnect report and sends what is missing).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from core import clock as core_clock
from protocol.payloads import AckV1, CommandV1, ValveCommandV1, WhitelistStateV1, encode
from protocol.topics import Channel, downlink, uplink
from protocol.whitelist import STAGED, WHITELIST, WHITELIST_REPORT, WhitelistCommandV1
from simulators.doors import DoorController
from simulators.fleet import Fleet
from simulators.frames import Frame
from simulators.meters import MeterModel

log = logging.getLogger(__name__)

VALVE = "valve"  # the downlink command name
COMMANDS = (VALVE, WHITELIST, WHITELIST_REPORT)  # what the simulated fleet subscribes to
QUEUE_SIZE = 1_000
REMEMBERED = 4_096  # command ids answered, for re-deliveries
AckStatus = Literal["applied", "rejected", "expired"]


@dataclass
class CommandCounts:
    """Valve commands of a run. ``dropped`` and ``subscribed`` are written by paho's network thread."""

    received: int = 0  # valve commands taken off the queue by the run loop
    applied: int = 0  # acked "applied" (first delivery)
    rejected: int = 0  # acked "rejected": bad payload, device without a valve
    expired: int = 0  # acked "expired"
    duplicates: int = 0  # a command id answered before: answered again, not applied again
    ignored: int = 0  # no ack possible: not a device of this fleet, or no usable command id
    dropped: int = 0  # the hand-off queue was full (the run loop fell far behind)
    acks: int = 0  # ack frames handed to the publisher
    subscribed: int = 0  # SUBACKs granting the downlink subscription (one per (re)connect)
    unheard: int = 0  # addressed to a door controller that was offline: no ack


@dataclass(frozen=True, slots=True)
class Inbound:
    """One downlink message for a device of this estate, as paho delivered it."""

    device: str
    payload: bytes
    command: str = VALVE  # the topic's last level


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the device made of a command; ``status`` None means it sends no ack."""

    device: str
    command_id: str | None
    status: AckStatus | None
    detail: str
    action: str | None = None
    effective: datetime | None = None  # simulated time the valve operation took effect


class CommandInbox:
    """Subscribes to the estate's valve commands and hands them to the run loop through a bounded queue."""

    def __init__(
        self, estate: str, counts: CommandCounts, *, maxsize: int = QUEUE_SIZE, wake: threading.Event | None = None
    ) -> None:
        self.estate = estate
        self.counts = counts
        self.wake = wake  # set after each message is queued, so the run loop need not wait for its next tick
        self.topics = [downlink(estate, "+", name) for name in COMMANDS]
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize)
        self._sub_mids: set[int] = set()
        # paho may deliver the SUBACK on its network thread before `subscribe()` has returned the mid to us:
        # the mid is registered under this lock, held across the call, so the callback waits for it
        # (re-entrant: `_subscribe` also runs inside on_connect, on the network thread itself).
        self._sub_lock = threading.RLock()

    def attach(self, client: Any) -> None:
        """Install the callbacks on a paho client (chaining its ``on_connect``) and subscribe if connected.

        The client may already be connecting in the background; subscribing both from ``on_connect``
        and here when it is already connected covers either order (a second SUBSCRIBE is harmless).
        """
        previous = client.on_connect

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if previous is not None:
                previous(c, userdata, flags, reason, properties)
            if not getattr(reason, "is_failure", False):
                self._subscribe(c)  # a clean session forgets subscriptions: renew on every connect

        client.on_connect = on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if client.is_connected():
            self._subscribe(client)

    def _subscribe(self, client: Any) -> None:
        with self._sub_lock:
            result, mid = client.subscribe([(topic, 1) for topic in self.topics])
            if result == 0 and mid is not None:
                self._sub_mids.add(mid)
        if result != 0 or mid is None:
            log.warning("could not subscribe to %s (rc %s)", self.topics, result)

    # paho callbacks: network thread; hand off and return.
    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any = None) -> None:
        with self._sub_lock:
            if mid not in self._sub_mids:
                return
            self._sub_mids.discard(mid)
        if any(getattr(r, "is_failure", False) for r in reasons or ()):
            log.warning("broker refused a subscription to %s: %s (commands missed)", self.topics, reasons)
            return
        self.counts.subscribed += 1

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = str(message.topic).split("/")
        if len(parts) != 5 or parts[4] not in COMMANDS or message.topic != downlink(self.estate, parts[3], parts[4]):
            return
        try:
            self._queue.put_nowait(Inbound(parts[3], bytes(message.payload), parts[4]))
            if self.wake is not None:
                self.wake.set()
        except queue.Full:
            self.counts.dropped += 1
            log.warning("%s command for %s dropped: the simulator's command queue is full", parts[4], parts[3])

    def drain(self) -> list[Inbound]:
        out: list[Inbound] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


class ValveController:
    """Applies valve commands to the fleet's meters and builds the acks (run-loop thread only)."""

    def __init__(
        self,
        fleet: Fleet,
        counts: CommandCounts,
        *,
        wall: Callable[[], datetime] = core_clock.now,
        remembered: int = REMEMBERED,
    ) -> None:
        self.fleet = fleet
        self.counts = counts
        self._wall = wall
        self._remembered = remembered
        self._answers: OrderedDict[tuple[str, str], AckStatus] = OrderedDict()
        self._applied_issued: dict[str, datetime] = {}  # per device: issued_at of the command applied last

    def handle(self, msg: Inbound, at: datetime) -> tuple[Outcome, Frame | None]:
        """Obey one command at simulated time ``at``; return what happened and the ack to publish (if any).

        Never raises for anything a message can contain.
        """
        self.counts.received += 1
        try:
            outcome = self._decide(msg, at)
        except Exception as exc:  # a bug must not end the run: log it and send no ack
            log.exception("valve command for %s could not be handled", msg.device)
            outcome = Outcome(msg.device, None, None, f"internal error: {exc}")
        if outcome.status is None:
            self.counts.ignored += 1
            log.warning("valve command for %s ignored: %s", msg.device, outcome.detail)
            return outcome, None
        if outcome.status == "applied":
            log.info("valve of %s: %s (command %s)", msg.device, outcome.detail, outcome.command_id)
        else:
            log.warning(
                "valve command %s for %s %s: %s", outcome.command_id, msg.device, outcome.status, outcome.detail
            )
        return outcome, self.ack_frame(outcome, at)

    def ack_frame(self, outcome: Outcome, at: datetime) -> Frame:
        if outcome.status is None or outcome.command_id is None:
            raise ValueError("an ack needs a status and a command_id")
        self.counts.acks += 1
        return Frame(
            topic=uplink(self.fleet.estate, outcome.device, Channel.ack),
            payload=encode(AckV1(command_id=outcome.command_id, status=outcome.status)),
            device=outcome.device,
            channel=Channel.ack.value,
            at=at,
            tags=("valve", outcome.status) if outcome.action is None else ("valve", outcome.action, outcome.status),
        )

    def _decide(self, msg: Inbound, at: datetime) -> Outcome:
        entry = self.fleet.entries.get(msg.device)
        if entry is None:
            return Outcome(msg.device, None, None, "not a device of this fleet")
        raw = _loads(msg.payload)
        command_id = _command_id(raw)
        if command_id is None:
            return Outcome(msg.device, None, None, "payload has no usable command_id")
        key = (msg.device, command_id)
        if (previous := self._answers.get(key)) is not None:
            self.counts.duplicates += 1
            return Outcome(msg.device, command_id, previous, "repeated command: answered again, not re-applied")
        outcome = self._apply(msg.device, command_id, raw, at)
        assert outcome.status is not None
        self._answers[key] = outcome.status
        while len(self._answers) > self._remembered:
            self._answers.popitem(last=False)
        if outcome.status == "applied":
            self.counts.applied += 1
        elif outcome.status == "expired":
            self.counts.expired += 1
        else:
            self.counts.rejected += 1
        return outcome

    def _apply(self, device: str, command_id: str, raw: object, at: datetime) -> Outcome:
        try:
            cmd = ValveCommandV1.model_validate(raw)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:3]
            )
            return Outcome(device, command_id, "rejected", f"not a valid v1 valve command ({reasons})")
        if cmd.expires_at is not None and cmd.expires_at <= self._wall():
            return Outcome(device, command_id, "expired", f"expired at {cmd.expires_at.isoformat()}", cmd.action)
        model = self.fleet.entries[device].model
        if not isinstance(model, MeterModel) or not model.has_valve:
            return Outcome(device, command_id, "rejected", "device has no valve", cmd.action)
        newest = self._applied_issued.get(device)
        if newest is not None and cmd.issued_at < newest:
            return Outcome(
                device,
                command_id,
                "expired",
                f"superseded: issued {cmd.issued_at.isoformat()}, before the one applied last ({newest.isoformat()})",
                cmd.action,
            )
        self._applied_issued[device] = cmd.issued_at
        effective = model.set_valve(at, cmd.action == "open")
        state = "opened" if cmd.action == "open" else "closed"
        return Outcome(device, command_id, "applied", f"{state} from {effective.isoformat()}", cmd.action, effective)


def _loads(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def _command_id(raw: object) -> str | None:
    if not isinstance(raw, dict):
        return None
    cid = raw.get("command_id")
    if isinstance(cid, int) and not isinstance(cid, bool):
        cid = str(cid)  # a numeric outbox id sent as a number still names the row
    if not isinstance(cid, str):
        return None
    try:
        return AckV1(command_id=cid, status="rejected").command_id
    except ValidationError:
        return None


@dataclass(frozen=True, slots=True)
class DoorOutcome:
    """What a door controller made of a whitelist command; ``ack`` None means it sends none."""

    device: str
    command: str
    detail: str
    ack: AckV1 | None = None


class DoorCommands:
    """Applies ``whitelist`` / ``whitelist_report`` commands to the fleet's door controllers and builds the
    acks (run-loop thread only). A repeated command id is answered again with its first ack, not re-applied;
    that memory is lost with the run (a restarted controller keeps only its list)."""

    def __init__(
        self,
        fleet: Fleet,
        counts: CommandCounts,
        *,
        wall: Callable[[], datetime] = core_clock.now,
        remembered: int = REMEMBERED,
    ) -> None:
        self.fleet = fleet
        self.counts = counts
        self._wall = wall
        self._remembered = remembered
        self._answers: OrderedDict[tuple[str, str], AckV1] = OrderedDict()

    def handle(self, msg: Inbound, at: datetime) -> tuple[DoorOutcome, Frame | None]:
        """Obey one command at simulated time ``at``; never raises for anything a message can contain."""
        self.counts.received += 1
        try:
            outcome = self._decide(msg)
        except Exception as exc:  # a bug must not end the run: log it and send no ack
            log.exception("%s command for %s could not be handled", msg.command, msg.device)
            outcome = DoorOutcome(msg.device, msg.command, f"internal error: {exc}")
        if outcome.ack is None:
            log.warning("%s command for %s not answered: %s", msg.command, msg.device, outcome.detail)
            return outcome, None
        level = logging.INFO if outcome.ack.status == "applied" else logging.WARNING
        log.log(level, "%s %s for %s %s: %s", msg.command, outcome.ack.command_id, msg.device, outcome.ack.status,
                outcome.detail)  # fmt: skip
        self.counts.acks += 1
        frame = Frame(
            topic=uplink(self.fleet.estate, msg.device, Channel.ack),
            payload=encode(outcome.ack),
            device=msg.device,
            channel=Channel.ack.value,
            at=at,
            tags=(msg.command, outcome.ack.status) + ((outcome.ack.reason,) if outcome.ack.reason else ()),
        )
        return outcome, frame

    def _decide(self, msg: Inbound) -> DoorOutcome:
        entry = self.fleet.entries.get(msg.device)
        if entry is None:
            self.counts.ignored += 1
            return DoorOutcome(msg.device, msg.command, "not a device of this fleet")
        raw = _loads(msg.payload)
        command_id = _command_id(raw)
        if command_id is None:
            self.counts.ignored += 1
            return DoorOutcome(msg.device, msg.command, "payload has no usable command_id")
        door = entry.model if isinstance(entry.model, DoorController) else None
        if door is not None and not door.online:
            self.counts.unheard += 1
            return DoorOutcome(msg.device, msg.command, "controller offline: the command never reached it")
        key = (msg.device, command_id)
        if (previous := self._answers.get(key)) is not None:
            self.counts.duplicates += 1
            return DoorOutcome(msg.device, msg.command, "repeated command: answered again, not re-applied", previous)
        detail, ack = self._apply(msg.command, door, command_id, raw)
        self._answers[key] = ack
        while len(self._answers) > self._remembered:
            self._answers.popitem(last=False)
        if ack.status == "applied":
            self.counts.applied += 1
        elif ack.status == "expired":
            self.counts.expired += 1
        else:
            self.counts.rejected += 1
        return DoorOutcome(msg.device, msg.command, detail, ack)

    def _apply(self, command: str, door: DoorController | None, command_id: str, raw: object) -> tuple[str, AckV1]:
        if door is None:
            return "not a door controller", AckV1(command_id=command_id, status="rejected", reason="unsupported")
        model: type[CommandV1] = WhitelistCommandV1 if command == WHITELIST else CommandV1
        try:
            cmd = model.model_validate(raw)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:3]
            )
            return f"not a valid v1 {command} command ({reasons})", self._ack(command_id, "rejected", door, "invalid")
        if cmd.expires_at is not None and cmd.expires_at <= self._wall():
            return f"expired at {cmd.expires_at.isoformat()}", self._ack(command_id, "expired", door)
        if not isinstance(cmd, WhitelistCommandV1):  # whitelist_report: just say what it holds
            return "reported", self._ack(command_id, "applied", door)
        held = door.whitelist.version
        result = door.whitelist.apply(cmd)
        what = f"{cmd.op} v{cmd.version}" + (f" part {cmd.part + 1}/{cmd.parts}" if cmd.parts > 1 else "")
        if result == STAGED:
            return f"{what} staged at v{held}", self._ack(command_id, "applied", door, STAGED)
        if result != "applied":
            base = f" on base {cmd.base_version}" if cmd.op == "delta" else ""
            return f"{what}{base} refused at v{held}", self._ack(command_id, "rejected", door, result)
        return f"{what}: v{held} → v{cmd.version}", self._ack(command_id, "applied", door)

    @staticmethod
    def _ack(command_id: str, status: AckStatus, door: DoorController, reason: str | None = None) -> AckV1:
        state: WhitelistStateV1 = door.whitelist.state()
        return AckV1(command_id=command_id, status=status, acl_version=state.version, reason=reason, whitelist=state)


class CommandRouter:
    """Sends each inbound command to the handler of its kind (run-loop thread only)."""

    def __init__(self, valves: ValveController, doors: DoorCommands) -> None:
        self.valves = valves
        self.doors = doors

    def handle(self, msg: Inbound, at: datetime) -> Frame | None:
        if msg.command == VALVE:
            return self.valves.handle(msg, at)[1]
        return self.doors.handle(msg, at)[1]
