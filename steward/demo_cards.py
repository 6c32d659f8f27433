"""The sample estate's resident cards, issued on the platform (the demo at start, bench/cards.py).

The simulated door controllers start with empty whitelists (``initial_cards=False``) and their residents
swipe the cards of ``Fleet.cards()`` (UIDs derived from estate, unit and card number only): issuing exactly
those on the platform makes the controllers converge to lists that grant the residents again.

Idempotent: a card whose UID the estate already has (a restarted demo, a card reported lost earlier) is not
issued twice. Every card is issued with ``sync_controllers=False`` and the controllers are synced once at the
end, in the same transaction: one change per controller rather than one delta per card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from access import doors, service, sync
from access.const import CardType
from simulators.doors import Card
from storage.models import AccessCard, AccessControllerSync, Building, Device, Unit

ISSUER = "demo-card-desk"
# A renovation pass ends with its permit (access/service.py); the sample estate's permits are not modelled.
RENOVATION_PERMIT = timedelta(days=60)


@dataclass(frozen=True)
class IssuedCard:
    card_id: int
    uid: str
    controller: str  # the simulated controller whose residents swipe it
    unit: str


def issue_fleet_cards(
    session: Session, estate_id: int, cards: Mapping[str, Sequence[Card]], now: datetime
) -> tuple[list[IssuedCard], int]:
    """Issue every resident card of ``cards`` (controller code → its residents' cards) not yet on the
    platform; returns (the estate's live cards of those UIDs, how many were issued now)."""
    doors.sync_doors(session, estate_id)
    units = dict(
        session.execute(
            select(Unit.code, Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id)
        ).all()
    )
    known = {
        uid: (card_id, status)
        for uid, card_id, status in session.execute(
            select(AccessCard.uid, AccessCard.id, AccessCard.status).where(AccessCard.estate_id == estate_id)
        ).all()
    }
    issued: list[IssuedCard] = []
    new_ids: list[int] = []
    for controller, residents in sorted(cards.items()):
        seen_units: set[str] = set()
        for card in residents:
            if card.unit not in units:
                continue
            if card.uid in known:
                card_id, status = known[card.uid]
                if status == "active":
                    issued.append(IssuedCard(card_id, card.uid, controller, card.unit))
                continue
            renovation = card.holder == "renovation"
            kind = CardType.renovation if renovation else CardType.family if card.unit in seen_units else CardType.owner
            seen_units.add(card.unit)
            new = service.issue(
                session,
                estate_id=estate_id,
                card_type=kind,
                uid=card.uid,
                holder_name=f"{card.unit} 住户" if not renovation else f"{card.unit} 装修",
                unit_id=units[card.unit],
                valid_until=now + RENOVATION_PERMIT if renovation else None,
                actor=ISSUER,
                note="demo: the simulated residents' cards",
                sync_controllers=False,
            )
            known[card.uid] = (new.id, new.status)
            new_ids.append(new.id)
            issued.append(IssuedCard(new.id, card.uid, controller, card.unit))
    if new_ids:
        sync.sync_cards(session, new_ids, now)
    return issued, len(new_ids)


def report_lost(session: Session, card_id: int) -> None:
    """挂失 one card (no replacement): off every whitelist, its controllers' deltas queued in this transaction."""
    service.report_lost(session, card_id, actor=ISSUER)


def lose_one(session: Session, issued: Sequence[IssuedCard]) -> IssuedCard | None:
    """The demo's 挂失: the first of ``issued`` still live is reported lost (a rerun takes the next one)."""
    for card in issued:
        row = session.get(AccessCard, card.card_id)
        if row is not None and row.status == "active":
            report_lost(session, card.card_id)
            return card
    return None


def controller_synced(session: Session, estate_id: int, controller: str) -> bool:
    """The platform sees ``controller`` holding its desired list (applied = desired, nothing pending)."""
    row = session.execute(
        select(
            AccessControllerSync.applied_version,
            AccessControllerSync.desired_version,
            AccessControllerSync.pending_since,
        )
        .join(Device, Device.id == AccessControllerSync.controller_id)
        .where(Device.estate_id == estate_id, Device.code == controller)
    ).first()
    return row is not None and row.applied_version == row.desired_version and row.pending_since is None
