"""What a door controller should hold: its whitelist, derived from cards × scopes × doors (issue 12 §3).

Controller sync (versioned snapshots and deltas through the outbox, acks, the unsynced alarm, the nightly
digest comparison) builds on this: the entries are sorted and plain, so a digest over them is stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from access.const import CardStatus
from storage.models import AccessCard, AccessCardDoor, AccessDoor


@dataclass(frozen=True, slots=True)
class Entry:
    uid: str
    card_format: str
    valid_from: datetime
    valid_until: datetime | None
    time_profile: dict[str, Any] | None  # {"days": [...], "windows": [[start, end], ...]}, estate time; None: always
    doors: tuple[str, ...]  # the controller's doors this card opens

    @property
    def schedule(self) -> list[dict[str, Any]] | None:
        """The time profile as the wire contract's weekly windows (protocol/whitelist.py ``WeeklyWindowV1``:
        ``{"days": [...], "start": "08:00", "end": "18:00"}``, one per window); None: at any time."""
        if not self.time_profile:
            return None
        days = list(self.time_profile["days"])
        return [{"days": days, "start": start, "end": end} for start, end in self.time_profile["windows"]]


def whitelist_for(session: Session, controller_id: int, at: datetime) -> list[Entry]:
    """The entries controller `controller_id` should hold at `at`, sorted by UID: every active card that opens one
    of its doors and whose validity has not ended (a card valid from later is included; the controller checks
    valid_from). Lost, revoked, expired and returned cards are never on it; fees and arrears play no part."""
    rows = session.execute(
        select(AccessCard, AccessDoor.code)
        .join(AccessCardDoor, AccessCardDoor.card_id == AccessCard.id)
        .join(AccessDoor, AccessDoor.id == AccessCardDoor.door_id)
        .where(
            AccessDoor.controller_id == controller_id,
            AccessCard.status == CardStatus.active,
            or_(AccessCard.valid_until.is_(None), AccessCard.valid_until > at),
        )
        .order_by(AccessCard.uid, AccessCard.format, AccessDoor.code)
    )
    cards: dict[int, tuple[AccessCard, list[str]]] = {}
    for card, door in rows:
        cards.setdefault(card.id, (card, []))[1].append(door)
    entries = [
        Entry(card.uid, card.format, card.valid_from, card.valid_until, card.time_profile, tuple(doors))
        for card, doors in cards.values()
    ]
    return sorted(entries, key=lambda e: (e.uid, e.card_format))
