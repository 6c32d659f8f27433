"""Alarms for device commands the device never acknowledged (the outbox gave up on them, worker/outbox.py).

One rule row, ``device.command_unacknowledged`` (kind 'command'), and one open alarm per device
(subject ``device:<id>``): a valve that ignores three commands in a row is one fault, one ticket.
The alarm's detail names the command (outbox id, topic, action) and why it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import RuleKind, Severity
from alarms.store import NewAlarm, OnRaised, device_subject, insert_alarms
from storage.models import AlarmRuleRow, Device

COMMAND_RULE = "device.command_unacknowledged"


@dataclass(frozen=True, slots=True)
class UnackedCommand:
    outbox_id: int
    device_id: int
    topic: str
    attempts: int
    reason: str  # "failed" (resends used up) or "expired" (its expiry passed after it was sent)


def ensure_command_rule(session: Session) -> int:
    """The rule row, created if missing (an operator's edits to an existing one are kept); returns its id."""
    session.execute(
        insert(AlarmRuleRow)
        .values(
            code=COMMAND_RULE,
            kind=RuleKind.command.value,
            metric="-",
            title_zh="设备指令未确认",
            title_en="Device command not acknowledged",
            params={"severity": Severity.alarm.value},
            # A valve or door controller that does not obey is a repair job (check power, network, the actuator).
            ticket_policy={"min_severity": Severity.alarm.value, "priority": {"alarm": "high"}},
            enabled=True,
        )
        .on_conflict_do_nothing(index_elements=[AlarmRuleRow.code])
    )
    return int(session.execute(text("SELECT id FROM alarm_rules WHERE code = :c"), {"c": COMMAND_RULE}).scalar_one())


def raise_unacknowledged(
    session: Session, commands: Sequence[UnackedCommand], now: datetime, on_raised: OnRaised | None = None
) -> list[int]:
    """Raise (at most one open per device) alarms for commands given up on; returns the new alarm ids."""
    if not commands:
        return []
    rule_id = ensure_command_rule(session)
    enabled = session.scalar(select(AlarmRuleRow.enabled).where(AlarmRuleRow.id == rule_id))
    if not enabled:
        return []
    devices = {
        d.id: d for d in session.scalars(select(Device).where(Device.id.in_(sorted({c.device_id for c in commands}))))
    }
    alarms = []
    seen: set[int] = set()
    for c in commands:
        device = devices.get(c.device_id)
        if device is None or device.id in seen:
            continue
        seen.add(device.id)
        alarms.append(
            NewAlarm(
                rule_id=rule_id,
                subject=device_subject(device.id),
                estate_id=device.estate_id,
                severity=Severity.alarm.value,
                raised_at=now,
                device_id=device.id,
                room_id=device.room_id,
                unit_id=device.unit_id,
                detail={
                    "outbox_id": c.outbox_id,
                    "topic": c.topic,
                    "attempts": c.attempts,
                    "reason": c.reason,
                },
            )
        )
    return insert_alarms(session.connection(), alarms, on_raised=on_raised)


__all__ = ["COMMAND_RULE", "UnackedCommand", "ensure_command_rule", "raise_unacknowledged"]
