"""The developer's warranty (domain-defaults §4, seeds/002 4.2.3): which ticket goes to the developer, and the
charge-back when the developer misses the due date.

A defect inside the warranty goes to the developer's customer service on a work-contact form (工作联系单) with a
due date; "if they miss it, engineering repairs and bills them". Periods run from the handover date of the
ticket's building (or the estate's, when the building has none) — `WarrantyHandover` rows — and are the
defaults below unless the estate edited them (`WarrantyTerm`):

- roof and waterproofing 5 years, decoration 2 years, electrical / plumbing / equipment installation 2 years;
- heating and cooling 2 heating seasons. A season counts only when it starts on or after the handover (the
  season running at handover is the developer's commissioning, not a warranty season), and the warranty
  ends with the last counted season (default 15 Nov – 15 Mar, the northern heating season; an estate's
  ``policy.heating_season`` "MM-DD/MM-DD" overrides it).

A period covers a ticket received on a local day before its end. Only repair reports route by themselves
(resident reports, staff-logged and patrol tickets), and never urgent ones: flooding and power loss are
repaired at once by engineering (continuous work), and platform tickets (alarms, rounds) are equipment
running faults, not construction defects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from storage.models import Estate, Ticket, TicketChargeback, TicketEvent, Unit, WarrantyHandover, WarrantyTerm
from tickets.const import BEFORE_RESOLVED, SYSTEM_ACTOR, Category, Fault, Priority, Source, WarrantyItem

W = WarrantyItem


@dataclass(frozen=True)
class Term:
    years: int | None = None
    heating_seasons: int | None = None


DEFAULT_TERMS: dict[WarrantyItem, Term] = {
    W.roof_waterproofing: Term(years=5),
    W.heating: Term(heating_seasons=2),
    W.decoration: Term(years=2),
    W.mep: Term(years=2),
}
# The northern heating season (month, day) start and end, unless the estate's policy says otherwise.
HEATING_SEASON = ((11, 15), (3, 15))
ROUTED_SOURCES = frozenset({Source.resident, Source.manual, Source.patrol})
DEVELOPER_DEFAULT_RESPONSE_DAYS = 7


def item_for(category: str, fault: str | None) -> WarrantyItem | None:
    """The warranty item a ticket's category falls under (None: no developer's warranty, e.g. lifts, meters).

    Civil works are the developer's decoration, except a leak, which is waterproofing (屋面、外墙、卫生间防渗漏).
    Lifts have their own maintenance contractor; meters, access control and the rest are the property's."""
    cat = Category(category)
    if cat == Category.heating:
        return W.heating
    if cat == Category.civil:
        return W.roof_waterproofing if fault == Fault.leak else W.decoration
    if cat in (Category.electrical, Category.water, Category.hot_water, Category.fire):
        return W.mep
    return None


def _add_years(d: date, n: int) -> date:
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # 29 February into a common year
        return d.replace(year=d.year + n, day=28)


def heating_season(policy: dict[str, Any] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    text = (policy or {}).get("heating_season")
    if not text:
        return HEATING_SEASON
    start, end = str(text).split("/")
    sm, sd = (int(x) for x in start.split("-"))
    em, ed = (int(x) for x in end.split("-"))
    return (sm, sd), (em, ed)


def expires_on(handover: date, term: Term, season: tuple[tuple[int, int], tuple[int, int]] = HEATING_SEASON) -> date:
    """The first local day the warranty no longer covers."""
    if term.years is not None:
        return _add_years(handover, term.years)
    n = term.heating_seasons or 0
    if n == 0:
        return handover
    (sm, sd), (em, ed) = season
    first_start = date(handover.year, sm, sd)
    if first_start < handover:
        first_start = date(handover.year + 1, sm, sd)
    last_start_year = first_start.year + n - 1
    # A season that crosses the new year ends in the following year.
    end_year = last_start_year + 1 if (em, ed) < (sm, sd) else last_start_year
    return date(end_year, em, ed) + timedelta(days=1)


def terms(session: Session, estate_id: int) -> dict[WarrantyItem, Term]:
    """The estate's periods: its edited rows over the defaults."""
    out = dict(DEFAULT_TERMS)
    for row in session.scalars(select(WarrantyTerm).where(WarrantyTerm.estate_id == estate_id)):
        out[W(row.item)] = Term(row.years, row.heating_seasons)
    return out


def handover_for(session: Session, estate_id: int, unit_id: int | None) -> WarrantyHandover | None:
    """The building's handover when the ticket is in a unit of a building that has one, else the estate's."""
    if unit_id is not None:
        building_id = session.scalar(select(Unit.building_id).where(Unit.id == unit_id))
        row = session.scalar(select(WarrantyHandover).where(WarrantyHandover.building_id == building_id))
        if row is not None:
            return row
    return session.scalar(
        select(WarrantyHandover).where(WarrantyHandover.estate_id == estate_id, WarrantyHandover.building_id.is_(None))
    )


@dataclass(frozen=True)
class Cover:
    item: WarrantyItem
    developer: str
    handover_on: date
    expires_on: date
    due_at: datetime


def covering(
    session: Session,
    estate: Estate,
    *,
    source: str,
    category: str,
    priority: str,
    fault: str | None,
    unit_id: int | None,
    at: datetime,
    local_day: date,
) -> Cover | None:
    """The developer's warranty a new ticket falls under, or None (not a routed kind, no handover, expired)."""
    if Source(source) not in ROUTED_SOURCES or Priority(priority) == Priority.urgent:
        return None
    item = item_for(category, fault)
    if item is None:
        return None
    handover = handover_for(session, estate.id, unit_id)
    if handover is None:
        return None
    end = expires_on(handover.handover_on, terms(session, estate.id)[item], heating_season(estate.policy))
    if not handover.handover_on <= local_day < end:
        return None
    return Cover(item, handover.developer, handover.handover_on, end, at + timedelta(days=handover.response_days))


def charge_missed(session: Session, now: datetime) -> list[int]:
    """Tickets whose developer missed the warranty due date: a charge-back entry and a 'warranty_missed' event
    each, once. Engineering takes the repair over (the ticket's resolve clock, the developer's due date, has
    breached and escalates as any other). Returns the ticket ids charged now."""
    rows = session.scalars(
        select(Ticket)
        .where(
            Ticket.warranty_party.is_not(None),
            Ticket.warranty_due_at <= now,
            Ticket.resolved_at.is_(None),
            Ticket.status.in_([s.value for s in BEFORE_RESOLVED]),
            ~select(TicketChargeback.id).where(TicketChargeback.ticket_id == Ticket.id).exists(),
        )
        .order_by(Ticket.id)
        .with_for_update(skip_locked=True)
    ).all()
    out = []
    for t in rows:
        assert t.warranty_party is not None
        assert t.warranty_due_at is not None
        item = item_for(t.category, t.fault)
        new_id = session.scalar(
            insert(TicketChargeback)
            .values(
                ticket_id=t.id,
                estate_id=t.estate_id,
                party=t.warranty_party,
                warranty_item=item.value if item else None,
                due_at=t.warranty_due_at,
                missed_at=now,
            )
            .on_conflict_do_nothing(index_elements=[TicketChargeback.ticket_id])
            .returning(TicketChargeback.id)
        )
        if new_id is None:  # another worker charged it first
            continue
        session.add(
            TicketEvent(
                ticket_id=t.id,
                at=now,
                actor=SYSTEM_ACTOR,
                action="warranty_missed",
                from_status=t.status,
                to_status=t.status,
                detail={"party": t.warranty_party, "due_at": t.warranty_due_at.isoformat(), "chargeback_id": new_id},
            )
        )
        t.updated_at = now
        out.append(t.id)
    session.flush()
    return out


def chargebacks(session: Session, estate_ids: list[int]) -> list[TicketChargeback]:
    """The fee side's read: developer charge-backs of these estates, oldest first."""
    return list(
        session.scalars(
            select(TicketChargeback).where(TicketChargeback.estate_id.in_(estate_ids)).order_by(TicketChargeback.id)
        )
    )


def set_handover(
    session: Session,
    estate_id: int,
    *,
    handover_on: date,
    developer: str,
    response_days: int = DEVELOPER_DEFAULT_RESPONSE_DAYS,
    building_id: int | None = None,
    now: datetime,
) -> WarrantyHandover:
    """Record (or change) the estate's or a building's handover date and developer."""
    if not developer.strip():
        raise InvalidInput("name the developer / 请填写开发商")
    cond = (
        WarrantyHandover.building_id == building_id
        if building_id is not None
        else (WarrantyHandover.estate_id == estate_id) & WarrantyHandover.building_id.is_(None)
    )
    row = session.scalar(select(WarrantyHandover).where(cond).with_for_update())
    if row is None:
        row = WarrantyHandover(estate_id=estate_id, building_id=building_id)
        session.add(row)
    row.handover_on, row.developer, row.response_days, row.updated_at = (
        handover_on,
        developer.strip(),
        response_days,
        now,
    )
    session.flush()
    return row


def set_term(
    session: Session,
    estate_id: int,
    item: str,
    *,
    years: int | None = None,
    heating_seasons: int | None = None,
    actor: str,
    now: datetime,
) -> WarrantyTerm:
    """Edit one item's period for the estate (years, or heating seasons — exactly one)."""
    it = W(item)
    if (years is None) == (heating_seasons is None):
        raise InvalidInput("give years or heating seasons, not both / 保修期按年或按采暖期，二选一")
    stmt = (
        insert(WarrantyTerm)
        .values(
            estate_id=estate_id,
            item=it.value,
            years=years,
            heating_seasons=heating_seasons,
            updated_by=actor,
            updated_at=now,
        )
        .on_conflict_do_update(
            index_elements=[WarrantyTerm.estate_id, WarrantyTerm.item],
            set_={"years": years, "heating_seasons": heating_seasons, "updated_by": actor, "updated_at": now},
        )
    )
    session.execute(stmt)
    session.flush()
    row = session.get(WarrantyTerm, (estate_id, it.value), populate_existing=True)
    assert row is not None
    return row
