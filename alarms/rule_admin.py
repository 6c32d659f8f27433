"""Show and change alarm rules and their per estate / room / device overrides (CLI and API share this).

Every change is validated by rebuilding the rule with the merged params, so a typo can never
reach the evaluator (which would skip a rule it cannot build). Changes reach running ingest
processes within `alarms.evaluator.REFRESH_EVERY_S`.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from alarms.multipoint import build_multipoint
from alarms.packs import build_rule
from core import clock
from core.errors import InvalidInput, NotFound
from storage.models import AlarmRuleOverride, AlarmRuleRow, Device, Estate, Room

SCOPES = ("estate", "room", "device")


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # estate | room | device
    id: int
    label: str  # e.g. "lvyuan/PR1"


def rule_by_code(session: Session, code: str) -> AlarmRuleRow:
    rule = session.scalar(select(AlarmRuleRow).where(AlarmRuleRow.code == code))
    if rule is None:
        raise NotFound(f"no alarm rule {code!r} / 没有该报警规则")
    return rule


def resolve_scope(session: Session, estate_code: str, room_code: str | None, device_code: str | None) -> Scope:
    """Name a scope by codes: an estate, a room of it, or a device of it (device beats room)."""
    estate = session.scalar(select(Estate).where(Estate.code == estate_code))
    if estate is None:
        raise NotFound(f"no estate {estate_code!r} / 没有该小区")
    if device_code:
        device = session.scalar(select(Device).where(Device.estate_id == estate.id, Device.code == device_code))
        if device is None:
            raise NotFound(f"no device {device_code!r} in {estate_code} / 没有该设备")
        return Scope("device", device.id, f"{estate_code}/{device_code}")
    if room_code:
        room = session.scalar(select(Room).where(Room.estate_id == estate.id, Room.code == room_code))
        if room is None:
            raise NotFound(f"no room {room_code!r} in {estate_code} / 没有该机房")
        return Scope("room", room.id, f"{estate_code}/{room_code}")
    return Scope("estate", estate.id, estate_code)


def _validate(rule: AlarmRuleRow, params: dict[str, Any]) -> None:
    if rule.kind == "composite" and "check" in params:
        try:
            build_multipoint(rule.code, params)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid parameters for {rule.code}: {exc} / 参数无效") from exc
        return
    if rule.kind in ("meter", "round", "composite", "command", "access"):
        return  # not point rules: their params are read by their own detectors
    try:
        build_rule(rule.code, rule.kind, params)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid parameters for {rule.code}: {exc} / 参数无效") from exc


def set_rule(
    session: Session, code: str, *, params: dict[str, Any] | None = None, enabled: bool | None = None
) -> AlarmRuleRow:
    """Change a rule everywhere: merge `params` into its own, and/or switch it on or off."""
    rule = rule_by_code(session, code)
    if params:
        merged = {**rule.params, **params}
        _validate(rule, merged)
        rule.params = merged
    if enabled is not None:
        rule.enabled = enabled
    session.flush()
    return rule


def set_override(
    session: Session,
    code: str,
    scope: Scope,
    *,
    params: dict[str, Any] | None = None,
    enabled: bool | None = None,
    ticket_policy: dict[str, Any] | None = None,
    actor: str,
) -> AlarmRuleOverride:
    """Create or extend the override of one rule at one scope (params merge into the override's)."""
    rule = rule_by_code(session, code)
    row = _override_row(session, rule.id, scope)
    if row is None:
        row = AlarmRuleOverride(rule_id=rule.id, scope=scope.kind, scope_id=scope.id, params={})
        session.add(row)
    merged = {**(row.params or {}), **(params or {})}
    _validate(rule, {**rule.params, **merged})
    row.params = merged
    if enabled is not None:
        row.enabled = enabled
    if ticket_policy is not None:
        row.ticket_policy = {**(row.ticket_policy or {}), **ticket_policy}
    row.updated_at, row.updated_by = clock.now(), actor
    session.flush()
    return row


def _override_row(session: Session, rule_id: int, scope: Scope) -> AlarmRuleOverride | None:
    return session.scalar(
        select(AlarmRuleOverride).where(
            AlarmRuleOverride.rule_id == rule_id,
            AlarmRuleOverride.scope == scope.kind,
            AlarmRuleOverride.scope_id == scope.id,
        )
    )


def delete_override(session: Session, code: str, scope: Scope) -> bool:
    row = _override_row(session, rule_by_code(session, code).id, scope)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def override_estate(session: Session, override: AlarmRuleOverride) -> int | None:
    """The estate an override belongs to (its own id, or its room's or device's estate)."""
    if override.scope == "estate":
        return override.scope_id
    model = Room if override.scope == "room" else Device
    return session.scalar(select(model.estate_id).where(model.id == override.scope_id))


def list_rules(session: Session, estates: Set[int] | None = None) -> list[tuple[AlarmRuleRow, list[AlarmRuleOverride]]]:
    """Every rule with its overrides; with ``estates``, only the overrides of those estates (and their rooms and
    devices)."""
    rules = session.scalars(select(AlarmRuleRow).order_by(AlarmRuleRow.code)).all()
    stmt = select(AlarmRuleOverride).order_by(AlarmRuleOverride.id)
    if estates is not None:
        ids = sorted(estates)
        stmt = stmt.where(
            or_(
                and_(AlarmRuleOverride.scope == "estate", AlarmRuleOverride.scope_id.in_(ids)),
                and_(
                    AlarmRuleOverride.scope == "room",
                    AlarmRuleOverride.scope_id.in_(select(Room.id).where(Room.estate_id.in_(ids))),
                ),
                and_(
                    AlarmRuleOverride.scope == "device",
                    AlarmRuleOverride.scope_id.in_(select(Device.id).where(Device.estate_id.in_(ids))),
                ),
            )
        )
    overrides = session.scalars(stmt).all()
    by_rule: dict[int, list[AlarmRuleOverride]] = {}
    for o in overrides:
        by_rule.setdefault(o.rule_id, []).append(o)
    return [(r, by_rule.get(r.id, [])) for r in rules]


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs from the command line; numbers become numbers, true/false booleans."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"expected key=value, got {pair!r} / 格式应为 键=值")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        out[key.strip()] = value
    return out


__all__ = [
    "SCOPES",
    "Scope",
    "delete_override",
    "list_rules",
    "parse_assignments",
    "resolve_scope",
    "rule_by_code",
    "set_override",
    "set_rule",
]
