"""The unsynced-controller alarm (issue 12 §3): a door controller whose applied whitelist version stays behind
the desired one for 15 minutes raises ``access.controller_unsynced`` (one open alarm per controller, subject
``device:<id>``) through the alarm engine, and the alarm clears itself once the controller has caught up.

The access domain says who is behind and since when (`access.sync.unsynced_since`); alarms/ sits above it and
raises, so a revoked card that a controller still admits is somebody's job (its ticket through `on_raised`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from access.sync import UNSYNCED_AFTER, unsynced_since
from alarms.const import RuleKind, Severity
from alarms.store import NewAlarm, OnRaised, clear_open, device_subject, insert_alarms
from storage.models import AlarmRuleRow, Device

UNSYNCED_RULE = "access.controller_unsynced"


def ensure_unsynced_rule(session: Session) -> int:
    """The rule row, created if missing (an operator's edits to an existing one are kept); returns its id."""
    session.execute(
        insert(AlarmRuleRow)
        .values(
            code=UNSYNCED_RULE,
            # A device command the device has not carried out: the same kind as the outbox's unacknowledged alarm.
            kind=RuleKind.command.value,
            metric="-",
            title_zh="门禁控制器名单未同步",
            title_en="Door controller whitelist not in sync",
            params={"severity": Severity.alarm.value, "after_s": int(UNSYNCED_AFTER.total_seconds())},
            # A revoked card may still open the door: someone checks the controller's power and network.
            ticket_policy={"min_severity": Severity.alarm.value, "priority": {"alarm": "high"}},
            enabled=True,
        )
        .on_conflict_do_nothing(index_elements=[AlarmRuleRow.code])
    )
    return int(session.execute(text("SELECT id FROM alarm_rules WHERE code = :c"), {"c": UNSYNCED_RULE}).scalar_one())


@dataclass(frozen=True, slots=True)
class UnsyncedResult:
    raised: list[int]
    cleared: int


def check_unsynced(
    session: Session, now: datetime, *, after: timedelta = UNSYNCED_AFTER, on_raised: OnRaised | None = None
) -> UnsyncedResult:
    """Raise for controllers behind for `after` or longer; clear the open ones that are no longer behind."""
    rule_id = ensure_unsynced_rule(session)
    rule = session.get(AlarmRuleRow, rule_id)
    behind = unsynced_since(session, now - after)
    subjects = {device_subject(u.controller_id) for u in behind}
    open_subjects = set(
        session.scalars(text("SELECT subject FROM alarms WHERE rule_id = :r AND state <> 'cleared'"), {"r": rule_id})
    )
    cleared = clear_open(session.connection(), rule_id, sorted(open_subjects - subjects), now)
    raised: list[int] = []
    if behind and rule is not None and rule.enabled:
        devices = {
            d.id: d for d in session.scalars(select(Device).where(Device.id.in_([u.controller_id for u in behind])))
        }
        alarms = [
            NewAlarm(
                rule_id=rule_id,
                subject=device_subject(u.controller_id),
                estate_id=devices[u.controller_id].estate_id,
                severity=Severity.alarm.value,
                raised_at=now,
                device_id=u.controller_id,
                room_id=devices[u.controller_id].room_id,
                unit_id=devices[u.controller_id].unit_id,
                detail={
                    "desired_version": u.desired_version,
                    "applied_version": u.applied_version,
                    "pending_since": u.pending_since.isoformat(),
                },
            )
            for u in behind
            if device_subject(u.controller_id) not in open_subjects and u.controller_id in devices
        ]
        raised = insert_alarms(session.connection(), alarms, on_raised=on_raised)
    return UnsyncedResult(raised, cleared)


__all__ = ["UNSYNCED_RULE", "UnsyncedResult", "check_unsynced", "ensure_unsynced_rule"]
