"""Customer-service rounds in test worlds: an estate of households in a test's session, and fresh pending tasks in a
world's estate (each call commits a round of its own, for routes that record one)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from alarms.service_rounds import ensure_service_schedules
from core import clock
from storage.models import Building, Estate, RoundSchedule, RoundTask, Unit


@dataclass(frozen=True)
class Households:
    session: Session
    estate_id: int
    code: str
    buildings: list[int]
    vacant: list[int]
    renovating: list[int]
    occupied: list[int]


def households_estate(
    session: Session,
    *,
    vacant: int = 3,
    renovating: int = 6,
    occupied: int = 120,
    buildings: int = 2,
    policy: dict[str, Any] | None = None,
    timezone: str = "Asia/Shanghai",
) -> Households:
    """A fresh estate of `buildings` buildings whose units are vacant, renovating and occupied in those numbers, unit
    ids ascending in that order within each occupancy (flushed in the caller's session)."""
    code = f"cs-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name=f"客服测试{code[-4:]}", city="杭州", timezone=timezone, policy=policy or {})
    session.add(estate)
    session.flush()
    blds = []
    for b in range(buildings):
        building = Building(estate_id=estate.id, code=str(b + 1), name=f"{b + 1}幢", floors=18)
        session.add(building)
        session.flush()
        blds.append(building.id)
    out: dict[str, list[int]] = {"vacant": [], "renovating": [], "occupied": []}
    n = 0
    for occupancy, count in (("vacant", vacant), ("renovating", renovating), ("occupied", occupied)):
        for _ in range(count):
            b, k = n % len(blds), n // len(blds)  # round robin over the buildings, two households a floor
            floor = 1 + k // 2
            unit = Unit(
                building_id=blds[b],
                code=f"{b + 1}-1-{floor}{k % 2 + 1:02d}",
                floor=floor,
                area_m2=Decimal("89.50"),
                occupancy=occupancy,
            )
            session.add(unit)
            session.flush()
            out[occupancy].append(unit.id)
            n += 1
    return Households(session, estate.id, code, blds, out["vacant"], out["renovating"], out["occupied"])


_seq = itertools.count(1)


def new_service_task(engine: Engine, estate: str, kind: str = "estate_patrol") -> int:
    """A fresh pending task of a round of the estate's `kind` schedule, its window open around now (committed)."""
    with Session(engine) as s, s.begin():
        estate_id = int(s.scalars(select(Estate.id).where(Estate.code == estate)).one())
        ensure_service_schedules(s, estate_id)
        schedule = s.scalars(
            select(RoundSchedule).where(
                RoundSchedule.estate_id == estate_id, RoundSchedule.kind == kind, RoundSchedule.room_id.is_(None)
            )
        ).one()
        building_id = s.scalar(select(Building.id).where(Building.estate_id == estate_id).order_by(Building.id))
        if building_id is None:
            building = Building(estate_id=estate_id, code="CS", name="客服巡查楼")
            s.add(building)
            s.flush()
            building_id = building.id
        # A window of its own (the unique key is schedule + window start): whole seconds plus fresh microseconds.
        now = clock.now()
        start = now.replace(microsecond=0) - timedelta(hours=1) + timedelta(microseconds=next(_seq))
        round_id = s.execute(
            text(
                "INSERT INTO inspection_rounds (schedule_id, estate_id, room_id, kind, window_start, window_end, "
                "status, updated_at) VALUES (:s, :e, NULL, :k, :start, :end, 'open', :now) RETURNING id"
            ),
            {"s": schedule.id, "e": estate_id, "k": kind, "start": start, "end": now + timedelta(days=3), "now": now},
        ).scalar_one()
        task = RoundTask(
            round_id=round_id,
            estate_id=estate_id,
            unit_id=None,
            building_id=building_id,
            created_at=now,
            updated_at=now,
        )
        s.add(task)
        s.flush()
        return int(task.id)
