"""Entrance door controllers: a versioned whitelist, card swipes decided from it, and a heartbeat.

Each controller holds a ``Whitelist`` (``protocol.whitelist``): the platform changes it with ``whitelist``
commands (see ``simulators.commands``) and every swipe is decided from it alone: granted only when the
card is on the list, inside its validity and weekly schedule, at one of its doors.

Who swipes is a separate, fixed population: the residents of the units the entrance serves (UIDs derived
from the estate, unit and card number only, not from the run's seed, so a demo or e2e test can issue the
same cards on the platform: ``DoorController.cards``), a few former tenants, and visitors' unknown cards.
Swipes follow the rhythm of an entrance: out in the morning, back in the evening.

A fresh controller's list is either empty (version 0: the platform issues every card) or, for the demo
and the tests written before the platform issued cards, ``made_up_whitelist``: every resident card plus
the former tenants' expired cards, at version 0.

Network state: ``disconnect`` / ``reconnect`` model a controller losing its link. While offline it
keeps deciding swipes from its list and buffers them (a real controller's event log), sends no
heartbeat and hears no command; on reconnect it publishes a ``status`` carrying its whitelist state
(version, digest, entries) and uploads the buffered events, dated when they happened. A run starting
is a (re)connect too.
The ``Whitelist`` object is what survives a kill and restart: pass the same one to the next run.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

from protocol.estate_file import DeviceSpec
from protocol.payloads import WhitelistStateV1
from protocol.topics import Channel
from protocol.whitelist import STAGED, Denial, WhitelistCommandV1, WhitelistEntryV1, whitelist_digest
from simulators import profiles
from simulators.frames import Emission, Reading
from simulators.rand import derive, poisson, rng

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLOT_S = 60  # swipes are drawn per minute
SWIPES_PER_CARD_DAY = 2.6
DENIED_UNKNOWN = 0.02  # a visitor's or neighbour's card: on no list
FORMER_SWIPES = 0.005  # a former tenant still trying an old card
FORMER_CARDS = 2  # former tenants per controller
FORMER_EXPIRED = timedelta(days=30)  # in the made-up list, their cards ended this long before the start
# Relative swipe rate by local hour: leaving 07–09, coming back 17–20.
# fmt: off
SWIPES_HOURLY: profiles.Hourly = (
    .05, .03, .02, .02, .03, .2, .9, 2.2, 1.8, .8, .6, .7, .8, .7, .6, .6, .8, 1.6, 2.2, 1.8, 1.2, .8, .4, .15,
)
# fmt: on
DoorEvent = Literal["held_open", "forced_open", "closed"]


@dataclass(frozen=True, slots=True)
class Card:
    uid: str  # uppercase hex, as read (domain-defaults §6)
    unit: str
    holder: str  # "resident" | "renovation" | "former"


def card_uid(estate: str, unit: str, index: int) -> str:
    """A 4-byte MIFARE-style UID, stable for (estate, unit, card number)."""
    return f"{derive(0, 'card', estate, unit, index) % 2**32:08X}"


def cards_for_units(estate: str, units: list[tuple[str, str, int]]) -> list[Card]:
    """Cards for (unit code, occupancy, registered occupants): one per occupant, max 3 (free quota)."""
    cards: list[Card] = []
    for unit, occupancy, occupants in units:
        if occupancy == "occupied":
            cards.extend(Card(card_uid(estate, unit, i), unit, "resident") for i in range(1, min(occupants, 3) + 1))
        elif occupancy == "renovating":
            cards.append(Card(card_uid(estate, unit, 1), unit, "renovation"))
    return cards


def former_cards(estate: str, controller: str) -> list[Card]:
    """Cards of former tenants who still try them at this entrance (stable like ``card_uid``)."""
    return [Card(card_uid(estate, f"{controller}/former", i), "", "former") for i in range(1, FORMER_CARDS + 1)]


@dataclass
class Whitelist:
    """What a controller holds: a version and its entries by uid. Run-loop thread only.

    The object outlives a run (a real controller keeps its list in flash): hand the same one to the
    next ``Fleet`` / ``run_simulation`` to model a kill and restart."""

    version: int = 0
    entries: dict[str, WhitelistEntryV1] = field(default_factory=dict)
    # Parts of a snapshot received so far (kept with the list: flash, not RAM).
    _staged: dict[int, tuple[WhitelistEntryV1, ...]] = field(default_factory=dict, repr=False)
    _staged_version: int | None = field(default=None, repr=False)
    _staged_parts: int = field(default=1, repr=False)

    def state(self) -> WhitelistStateV1:
        return WhitelistStateV1(
            version=self.version, digest=whitelist_digest(self.entries.values()), entries=len(self.entries)
        )

    def apply(self, cmd: WhitelistCommandV1) -> str:
        """Apply a validated command: ``"applied"``, ``"staged"`` (a snapshot part held until its set is
        complete) or the refusal reason (``protocol.whitelist.REFUSALS``); a refusal changes nothing."""
        if cmd.version <= self.version:
            return "stale_version"
        if cmd.op == "delta":
            if cmd.base_version != self.version:
                return "version_gap"
            for uid in cmd.remove:
                self.entries.pop(uid, None)
            for entry in cmd.upsert:
                self.entries[entry.uid] = entry
            self.version = cmd.version
            return "applied"
        assert cmd.entries is not None  # the model guarantees it
        if self._staged_version != cmd.version or self._staged_parts != cmd.parts:
            self._staged, self._staged_version, self._staged_parts = {}, cmd.version, cmd.parts
        self._staged[cmd.part] = cmd.entries
        if len(self._staged) < cmd.parts:
            return STAGED
        entries = {e.uid: e for part in sorted(self._staged) for e in self._staged[part]}
        self._staged, self._staged_version = {}, None
        if cmd.digest is not None and whitelist_digest(entries.values()) != cmd.digest:
            return "digest_mismatch"
        self.entries = entries
        self.version = cmd.version
        return "applied"

    def decide(self, uid: str, door: str, at: datetime, tz: tzinfo) -> Denial | None:
        """Why ``uid`` is refused at ``door`` at ``at`` (None: the door opens)."""
        entry = self.entries.get(uid.upper())
        if entry is None:
            return "unknown"
        return entry.denial(door, at, tz)

    def tamper(self, *, upsert: Iterable[WhitelistEntryV1] = (), remove: Iterable[str] = ()) -> None:
        """Change the list behind the platform's back (an installer's keypad, a rogue tool): the version
        stays, so only the digest shows it (what the nightly reconciliation must catch)."""
        for uid in remove:
            self.entries.pop(uid.upper(), None)
        for entry in upsert:
            self.entries[entry.uid] = entry


def made_up_whitelist(
    doors: Iterable[str], cards: Iterable[Card], former: Iterable[Card], start: datetime
) -> Whitelist:
    """The list a controller had before the platform issued cards: every resident card at every door of
    the controller, and the former tenants' cards that expired a month before ``start`` (version 0)."""
    at = tuple(doors)
    entries = [WhitelistEntryV1(uid=c.uid, doors=at) for c in cards]
    ended = start - FORMER_EXPIRED
    entries += [
        WhitelistEntryV1(uid=c.uid, doors=at, valid_from=ended - timedelta(days=365), valid_until=ended) for c in former
    ]
    return Whitelist(0, {e.uid: e for e in entries})


@dataclass(order=True)
class _Due:
    """Something the controller does at ``at`` beyond its own rhythm (run-loop thread)."""

    at: datetime
    order: int
    kind: Literal["swipe", "door", "disconnect", "reconnect"] = field(compare=False)
    door: str = field(default="", compare=False)
    uid: str = field(default="", compare=False)
    event: DoorEvent = field(default="closed", compare=False)
    open_s: int | None = field(default=None, compare=False)
    tags: tuple[str, ...] = field(default=(), compare=False)


class DoorController:
    """One controller: its doors (``attrs.doors``, the first is the entrance people use), its list, its link."""

    def __init__(
        self,
        spec: DeviceSpec,
        cards: list[Card],
        *,
        seed: int,
        start: datetime,
        tz: tzinfo,
        estate: str = "",
        whitelist: Whitelist | None = None,
    ) -> None:
        self.code = spec.code
        self.seed = seed
        self.tz = tz
        self.doors = tuple(str(d) for d in spec.attrs.get("doors") or [f"{spec.code}-main"])
        self.door = self.doors[0]
        self.cards = cards  # residents' cards: who swipes here (not what the list says)
        self.former = former_cards(estate, spec.code)
        # None: the made-up list of the days before the platform issued cards.
        if whitelist is None:
            whitelist = made_up_whitelist(self.doors, cards, self.former, start)
        self.whitelist = whitelist
        self.online = True
        self.heartbeat_s = spec.expected_interval_s
        self.phase_s = derive(seed, spec.code, "phase") % self.heartbeat_s
        start_s = (start - EPOCH).total_seconds()
        self._beat = math.ceil((start_s - self.phase_s) / self.heartbeat_s)
        self._slot = math.ceil(start_s / SLOT_S)
        self._due: list[_Due] = []
        self._order = 0
        self._buffer: list[Reading] = []  # events decided while offline, uploaded on reconnect
        self._last = start
        self.reconnect(start)  # a run starting is a connect: report the list first

    # --- what the run loop (or a test) asks of the controller ------------------------------------
    def present(self, uid: str, at: datetime, door: str | None = None) -> None:
        """Someone presents card ``uid`` at ``door`` (default: the entrance) at ``at``; decided then."""
        self._push(_Due(at, 0, "swipe", door=door or self.door, uid=uid.upper(), tags=("presented",)))

    def door_event(self, event: DoorEvent, at: datetime, door: str | None = None, open_s: int | None = None) -> None:
        """The door is held open, forced open or closed again at ``at``."""
        self._push(_Due(at, 0, "door", door=door or self.door, event=event, open_s=open_s))

    def disconnect(self, at: datetime) -> None:
        self._push(_Due(at, 0, "disconnect"))

    def reconnect(self, at: datetime) -> None:
        self._push(_Due(at, 0, "reconnect"))

    def _push(self, due: _Due) -> None:
        # Never in the past of what was already produced: the stream has sequenced up to there.
        due.at = max(due.at, self._last)
        self._order += 1
        due.order = self._order
        heapq.heappush(self._due, due)

    # --- DeviceModel ----------------------------------------------------------------------------
    def _beat_time(self) -> datetime:
        return EPOCH + timedelta(seconds=self._beat * self.heartbeat_s + self.phase_s)

    def _slot_time(self) -> datetime:
        return EPOCH + timedelta(seconds=self._slot * SLOT_S)

    @property
    def next_due(self) -> datetime:
        due = min(self._beat_time(), self._slot_time())
        return min(due, self._due[0].at) if self._due else due

    def produce(self) -> list[Emission]:
        """Everything due at ``next_due``, in order: heartbeat, this minute's swipes drawn, then the events."""
        now = self.next_due
        self._last = now
        out: list[Emission] = []
        if self._beat_time() == now:
            if self.online:  # an offline controller's heartbeat goes nowhere
                out.append(Reading(now, Channel.status, {"online": True}))
            self._beat += 1
        if self._slot_time() == now:
            self._draw_swipes(now)
            self._slot += 1
        while self._due and self._due[0].at <= now:
            out.extend(self._happen(heapq.heappop(self._due), now))
        return out

    def _happen(self, due: _Due, now: datetime) -> list[Emission]:
        if due.kind == "disconnect":
            self.online = False
            return []
        if due.kind == "reconnect":
            self.online = True
            state = self.whitelist.state().model_dump()
            report = Reading(now, Channel.status, {"online": True, "whitelist": state}, tags=("report",))
            # The event log recorded while offline goes up with the report, dated when it happened.
            backlog = [
                Reading(r.ts, r.channel, r.body, upload_delay_s=(now - r.ts).total_seconds(), tags=(*r.tags, "backlog"))
                for r in self._buffer
            ]
            self._buffer.clear()
            return [report, *backlog]
        if due.kind == "swipe":
            denial = self.whitelist.decide(due.uid, due.door, now, self.tz)
            body: dict[str, object] = {"door": due.door, "card": due.uid, "granted": denial is None}
            if denial is not None:
                body["reason"] = denial
            reading = Reading(now, Channel.swipe, body, tags=due.tags)
        else:
            door_body: dict[str, object] = {"door": due.door, "event": due.event}
            if due.open_s is not None:
                door_body["open_s"] = due.open_s
            reading = Reading(now, Channel.door, door_body, tags=due.tags)
        if not self.online:
            self._buffer.append(reading)
            return []
        return [reading]

    def _draw_swipes(self, slot: datetime) -> None:
        """This minute's swipes: who and when (the draw never depends on the list); decided when they happen."""
        if not self.cards:
            return
        r = rng(self.seed, self.code, "swipes", self._slot)
        hour = profiles.local_hour(slot.astimezone(self.tz))
        weight = profiles.at_hour(SWIPES_HOURLY, hour) / sum(SWIPES_HOURLY)
        lam = len(self.cards) * SWIPES_PER_CARD_DAY * weight * SLOT_S / 3600
        swipes: list[tuple[int, str]] = []
        for _ in range(poisson(r, lam)):
            second = r.randrange(SLOT_S)
            draw = r.random()
            if draw < DENIED_UNKNOWN:
                uid = f"{r.getrandbits(32):08X}"
            elif draw < DENIED_UNKNOWN + FORMER_SWIPES:
                uid = self.former[r.randrange(len(self.former))].uid
            else:
                uid = self.cards[r.randrange(len(self.cards))].uid
            swipes.append((second, uid))
        swipes.sort(key=lambda s: s[0])
        for second, uid in swipes:
            self._push(_Due(slot + timedelta(seconds=second), 0, "swipe", door=self.door, uid=uid))
