"""Rows for the operations pages and routes in a test world's estates: device commands of each origin, failed
notification deliveries, and open lawyer's-letter tasks (each call makes a fresh one, committed)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from billing import dunning
from core import clock
from notifications import service as notifications
from storage.models import Building, Device, DunningCase, DunningTask, Estate, NotificationDelivery, Outbox, Unit


def estate_id_of(session: Session, code: str) -> int:
    return int(session.scalars(select(Estate.id).where(Estate.code == code)).one())


def add_command(
    session: Session,
    device_id: int,
    *,
    reason: str | None = None,
    ticket: str | None = None,
    action: str = "close",
    status: str = "pending",
    created_at: datetime | None = None,
    last_error: str | None = None,
) -> int:
    """One valve command to the device, as its writer would queue it (flushed, not committed)."""
    device = session.get(Device, device_id)
    assert device is not None
    estate = session.get(Estate, device.estate_id)
    assert estate is not None
    row = Outbox(
        device_id=device.id,
        topic=f"steward/{estate.code}/down/{device.code}/valve",
        payload={"v": 1, "action": action, "reason": reason, "ticket": ticket},
        created_at=created_at or clock.now(),
        attempts=1 if status != "pending" else 0,
        status=status,
        last_error=last_error,
    )
    session.add(row)
    session.flush()
    return int(row.id)


def add_delivery(
    session: Session,
    estate_id: int | None,
    *,
    channel: str = "email",
    recipient: str | None = None,
    status: str = "failed",
    source: str = "ticket_escalation",
) -> int:
    """One delivery in `status` (failed: one attempt, an SMTP error, due in ten minutes)."""
    now = clock.now()
    delivery_id = notifications.enqueue(
        session,
        key=f"ops-test:{uuid.uuid4().hex}",
        channel=channel,
        recipient=recipient or f"wang.{uuid.uuid4().hex[:6]}@example.com",
        subject="工单超时升级 / ticket escalated",
        body="…",
        source=source,
        at=now,
        estate_id=estate_id,
    )
    if status != "pending":
        session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(
                status=status,
                attempts=1,
                last_error="SMTPServerDisconnected: Connection unexpectedly closed" if status != "sent" else None,
                sent_at=now if status == "sent" else None,
                next_attempt_at=now.replace(microsecond=0) + (notifications.BACKOFF_BASE * 10),
            )
        )
    return delivery_id


def new_failed_delivery(engine: Engine, estate_code: str) -> int:
    with Session(engine) as s, s.begin():
        return add_delivery(s, estate_id_of(s, estate_code))


def add_task(session: Session, estate_id: int) -> int:
    """An open lawyer's-letter task on a fresh unit's fresh case (the ladder's step 4)."""
    estate = session.get(Estate, estate_id)
    assert estate is not None
    building = session.scalar(select(Building).where(Building.estate_id == estate_id, Building.code == "TASKS"))
    if building is None:
        building = Building(estate_id=estate_id, code="TASKS", name="任务楼", floors=1)
        session.add(building)
        session.flush()
    unit = Unit(building_id=building.id, code=f"T-{uuid.uuid4().hex[:8]}", floor=1, area_m2=Decimal("80.00"))
    session.add(unit)
    session.flush()
    today = dunning.local_today(estate)
    now = clock.now()
    case = DunningCase(estate_id=estate_id, unit_id=unit.id, variant="ladder", opened_on=today, opened_at=now)
    session.add(case)
    session.flush()
    task = DunningTask(
        estate_id=estate_id,
        case_id=case.id,
        unit_id=unit.id,
        step=4,
        kind="lawyer_letter",
        title=f"律师函：{unit.code} 欠费 ¥88.00",
        created_on=today,
        created_at=now,
        due_on=today,
        assignee_role="manager",
        amount_fen=8800,
    )
    session.add(task)
    session.flush()
    return int(task.id)


def new_task(engine: Engine, estate_code: str) -> int:
    with Session(engine) as s, s.begin():
        return add_task(s, estate_id_of(s, estate_code))
