"""Entrance door controllers: card swipes through the day, plus a heartbeat on ``status``.

Card UIDs are derived from the estate, unit and card number only (not from the run's seed), so the
same cards exist in every run and a demo or e2e test can issue them on the platform beforehand
(``DoorController.cards``). Swipes follow the rhythm of an entrance: out in the morning, back in the
evening. A small share is denied (unknown card, expired tenant card), as on any real door.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from protocol.estate_file import DeviceSpec
from protocol.topics import Channel
from simulators import profiles
from simulators.frames import Emission, Reading
from simulators.rand import derive, poisson, rng

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SLOT_S = 60  # swipes are drawn per minute
SWIPES_PER_CARD_DAY = 2.6
DENIED_UNKNOWN = 0.02  # a visitor's or neighbour's card, or a revoked one: not in the whitelist
DENIED_EXPIRED = 0.005
# Relative swipe rate by local hour: leaving 07–09, coming back 17–20.
# fmt: off
SWIPES_HOURLY: profiles.Hourly = (
    .05, .03, .02, .02, .03, .2, .9, 2.2, 1.8, .8, .6, .7, .8, .7, .6, .6, .8, 1.6, 2.2, 1.8, 1.2, .8, .4, .15,
)
# fmt: on


@dataclass(frozen=True, slots=True)
class Card:
    uid: str  # uppercase hex, as read (domain-defaults §6)
    unit: str
    holder: str  # "resident" | "renovation"


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


class DoorController:
    """One controller guarding one entrance door."""

    def __init__(self, spec: DeviceSpec, cards: list[Card], *, seed: int, start: datetime, tz: tzinfo) -> None:
        self.code = spec.code
        self.seed = seed
        self.tz = tz
        doors = spec.attrs.get("doors") or [f"{spec.code}-main"]
        self.door = str(doors[0])
        self.cards = cards
        self.heartbeat_s = spec.expected_interval_s
        self.phase_s = derive(seed, spec.code, "phase") % self.heartbeat_s
        start_s = (start - EPOCH).total_seconds()
        self._beat = math.ceil((start_s - self.phase_s) / self.heartbeat_s)
        self._slot = math.ceil(start_s / SLOT_S)

    def _beat_time(self) -> datetime:
        return EPOCH + timedelta(seconds=self._beat * self.heartbeat_s + self.phase_s)

    def _slot_time(self) -> datetime:
        return EPOCH + timedelta(seconds=self._slot * SLOT_S)

    @property
    def next_due(self) -> datetime:
        return min(self._beat_time(), self._slot_time())

    def produce(self) -> list[Emission]:
        out: list[Emission] = []
        beat, slot = self._beat_time(), self._slot_time()
        if beat <= slot:
            out.append(Reading(beat, Channel.status, {"online": True}))
            self._beat += 1
        if slot <= beat:
            out.extend(self._swipes(slot))
            self._slot += 1
        return out

    def _swipes(self, slot: datetime) -> list[Emission]:
        if not self.cards:
            return []
        r = rng(self.seed, self.code, "swipes", self._slot)
        hour = profiles.local_hour(slot.astimezone(self.tz))
        weight = profiles.at_hour(SWIPES_HOURLY, hour) / sum(SWIPES_HOURLY)
        lam = len(self.cards) * SWIPES_PER_CARD_DAY * weight * SLOT_S / 3600
        swipes: list[tuple[int, dict[str, object]]] = []
        for _ in range(poisson(r, lam)):
            second = r.randrange(SLOT_S)
            draw = r.random()
            body: dict[str, object]
            if draw < DENIED_UNKNOWN:
                uid = f"{r.getrandbits(32):08X}"
                body = {"door": self.door, "card": uid, "granted": False, "reason": "not_in_acl"}
            elif draw < DENIED_UNKNOWN + DENIED_EXPIRED:
                uid = f"{r.getrandbits(32):08X}"
                body = {"door": self.door, "card": uid, "granted": False, "reason": "expired"}
            else:
                card = self.cards[r.randrange(len(self.cards))]
                body = {"door": self.door, "card": card.uid, "granted": True}
            swipes.append((second, body))
        swipes.sort(key=lambda s: s[0])
        return [Reading(slot + timedelta(seconds=sec), Channel.swipe, body) for sec, body in swipes]
