"""A household's hot-water supply state and the valve commands that change it; the per-estate switch and
the vulnerable flag that decide whether it may be changed at all (domain-defaults §5).

Only this module writes `billing_supply_states`; every change is one `billing_supply_changes` row naming
the notice it rests on and the outbox rows of its valve commands, all in the caller's transaction
(DESIGN §2: domains never publish MQTT; the dispatcher sends the outbox after commit).

The wire protocol knows two valve actions, close and open. Restriction (限供) and suspension (停供) are
both sent as "close" with the reason naming which; a meter able to throttle may act on the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.const import METER_KIND, SupplyState
from billing.holidays import NIGHT_STARTS
from core import clock
from core.errors import InvalidInput, NotFound
from protocol.payloads import valve_command
from protocol.topics import downlink
from storage.models import (
    AuditLog,
    BillingAccount,
    BillingHouseholdFlag,
    BillingSupplyChange,
    BillingSupplyState,
    Device,
    Estate,
    Outbox,
    Resident,
)

RESTRICTION_SWITCH = "supply_restriction_enabled"
# A close command not sent within the hour is stale (the household may have paid meanwhile); never later
# than the start of the night. An open command stays valid a day: restoring late is better than never.
CLOSE_TTL = timedelta(hours=1)
OPEN_TTL = timedelta(hours=24)
VALVE_REASON = {
    SupplyState.restricted: "billing_restriction",
    SupplyState.suspended: "billing_suspension",
    SupplyState.normal: "billing_restoration",
}


def restriction_enabled(policy: dict[str, Any] | None) -> bool:
    """The estate's switch: only a JSON `true` turns it on (a typo or a string never restricts anyone)."""
    return bool(policy) and (policy or {}).get(RESTRICTION_SWITCH) is True


def set_restriction_enabled(session: Session, estate_id: int, enabled: bool, *, actor: str, reason: str) -> None:
    """Turn the estate's supply-restriction switch on or off (needs the contract clause and a reason); audited."""
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false")
    if not actor.strip() or not reason.strip():
        raise InvalidInput("actor and reason are required / 须填写经办人和原因")
    estate = session.scalars(select(Estate).where(Estate.id == estate_id).with_for_update()).one_or_none()
    if estate is None:
        raise NotFound(f"estate {estate_id} not found")
    estate.policy = {**(estate.policy or {}), RESTRICTION_SWITCH: enabled}
    session.add(
        AuditLog(
            actor=actor,
            action="billing.supply_restriction_switch",
            object=f"estate:{estate_id}",
            detail={"enabled": enabled, "reason": reason.strip()},
            at=clock.now(),
        )
    )
    session.flush()


def set_vulnerable(session: Session, account_id: int, vulnerable: bool, *, actor: str, reason: str) -> None:
    """Flag (or unflag) a household as vulnerable: who, when and why are kept and audited."""
    if not actor.strip() or not reason.strip():
        raise InvalidInput("actor and reason are required / 须填写经办人和原因")
    if session.get(BillingAccount, account_id) is None:
        raise NotFound(f"billing account {account_id} not found / 热水账户不存在")
    now = clock.now()
    values = {"vulnerable": vulnerable, "set_by": actor, "set_at": now, "reason": reason.strip()}
    session.execute(
        insert(BillingHouseholdFlag)
        .values(account_id=account_id, **values)
        .on_conflict_do_update(index_elements=["account_id"], set_=values)
    )
    session.add(
        AuditLog(
            actor=actor,
            action="billing.vulnerable",
            object=f"billing_account:{account_id}",
            detail={"vulnerable": vulnerable, "reason": reason.strip()},
            at=now,
        )
    )
    session.flush()


def is_vulnerable(session: Session, account: BillingAccount) -> bool:
    """Flagged on the household's account, or any resident of the unit flagged vulnerable."""
    flag = session.scalar(select(BillingHouseholdFlag.vulnerable).where(BillingHouseholdFlag.account_id == account.id))
    if flag:
        return True
    return bool(
        session.scalar(select(Resident.id).where(Resident.unit_id == account.unit_id, Resident.vulnerable).limit(1))
    )


def state_of(session: Session, account_id: int) -> SupplyState:
    state = session.scalar(select(BillingSupplyState.state).where(BillingSupplyState.account_id == account_id))
    return SupplyState(state) if state else SupplyState.normal


@dataclass(frozen=True, slots=True)
class Change:
    account_id: int
    from_state: SupplyState
    to_state: SupplyState
    outbox_ids: tuple[int, ...]
    change_id: int


def _valve_commands(
    session: Session, account: BillingAccount, estate: Estate, to: SupplyState, now: datetime
) -> list[int]:
    action: Literal["close", "open"] = "open" if to == SupplyState.normal else "close"
    if action == "close":
        tz = ZoneInfo(estate.timezone)
        night = datetime.combine(now.astimezone(tz).date(), NIGHT_STARTS, tz)
        expires = min(now + CLOSE_TTL, night)
    else:
        expires = now + OPEN_TTL
    devices = session.scalars(
        select(Device)
        .where(Device.unit_id == account.unit_id, Device.kind == METER_KIND, Device.has_valve)
        .order_by(Device.id)
    ).all()
    ids = []
    for device in devices:
        payload = valve_command(
            command_id=str(uuid.uuid4()),  # provisional: the dispatcher sends the outbox row id
            issued_at=now,
            expires_at=expires,
            action=action,
            reason=VALVE_REASON[to],
        )
        row = Outbox(
            device_id=device.id,
            topic=downlink(estate.code, device.code, "valve"),
            payload=payload,
            created_at=now,
            expires_at=expires,
            attempts=0,
        )
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids


def change(
    session: Session,
    account: BillingAccount,
    to: SupplyState,
    *,
    now: datetime,
    actor: str,
    reason: str,
    notice_id: int | None = None,
) -> Change:
    """Move the household to `to`, queue its valve commands and record the change (caller checked the law)."""
    estate = session.get(Estate, account.estate_id)
    assert estate is not None
    before = state_of(session, account.id)
    outbox_ids = _valve_commands(session, account, estate, to, now)
    session.execute(
        insert(BillingSupplyState)
        .values(account_id=account.id, state=to.value, since=now)
        .on_conflict_do_update(index_elements=["account_id"], set_={"state": to.value, "since": now})
    )
    row = BillingSupplyChange(
        account_id=account.id,
        from_state=before.value,
        to_state=to.value,
        at=now,
        actor=actor,
        reason=reason,
        notice_id=notice_id,
        outbox_ids=outbox_ids,
    )
    session.add(row)
    session.flush()
    return Change(account.id, before, to, tuple(outbox_ids), row.id)
