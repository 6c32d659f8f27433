"""Plain factory functions for the billing tests: an estate with households and hot-water meters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from billing import service
from billing.pricing import Tier
from storage.models import Building, Device, Estate, Unit


@dataclass
class Household:
    unit_id: int
    device_id: int
    device_code: str
    account_id: int


def make_estate(
    session: Session, households: int = 1, *, register_max: str = "99999.999"
) -> tuple[int, list[Household]]:
    code = f"b{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"计费测试 {code}", city="")
    session.add(estate)
    session.flush()
    building = Building(estate_id=estate.id, code="1", name="1号楼", floors=10)
    session.add(building)
    session.flush()
    out = []
    for i in range(households):
        unit = Unit(building_id=building.id, code=f"1-1-{101 + i}", floor=1, area_m2=Decimal("88.00"))
        session.add(unit)
        session.flush()
        device = Device(
            estate_id=estate.id,
            code=f"{code.upper()}-HW{i:03d}",
            kind="hot_water_meter",
            unit_id=unit.id,
            register_max=Decimal(register_max),
            resolution=Decimal("0.001"),
            multiplier=Decimal(1),
        )
        session.add(device)
        session.flush()
        account = service.open_account(session, unit.id, at=datetime.fromisoformat("2026-11-01T00:00:00+08:00"))
        out.append(Household(unit.id, device.id, device.code, account.id))
    return estate.id, out


def flat_tariff(session: Session, estate_id: int, fen_per_m3: int, start: str = "2026-01-01T00:00:00+08:00") -> None:
    service.add_tariff(
        session,
        estate_id=estate_id,
        effective_from=datetime.fromisoformat(start),
        tiers=[Tier(None, fen_per_m3)],
        actor="zhou",
    )


def add_reading(session: Session, device_id: int, ts: datetime, register: Decimal | str) -> bool:
    """Insert the way ingest does (first write per device time wins); True if it was new."""
    row = session.execute(
        text(
            "INSERT INTO meter_readings (ts, device_id, register) VALUES (:ts, :d, :r) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"ts": ts, "d": device_id, "r": Decimal(register)},
    ).first()
    return row is not None


def unbalanced(session: Session) -> list[tuple[int, int]]:
    return [
        (int(r[0]), int(r[1]))
        for r in session.execute(
            text(
                "SELECT transaction_id, sum(amount_fen) FROM ledger_entries GROUP BY transaction_id "
                "HAVING sum(amount_fen) <> 0 OR count(*) < 2"
            )
        )
    ]
