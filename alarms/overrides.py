"""Effective rule settings for one subject: the rule's own params with estate, room and device overrides.

Precedence is narrowest first: a device override beats its room's, which beats its estate's.
`params` merge key by key (an override names only what it changes); `enabled` is the narrowest
non-null value, so a rule switched off for an estate can be switched back on for one device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

SCOPES = ("estate", "room", "device")  # widest first: applied in this order, later wins


@dataclass(frozen=True, slots=True)
class Override:
    rule_id: int
    scope: str
    scope_id: int
    params: Mapping[str, Any]
    enabled: bool | None
    ticket_policy: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Subject:
    """Where a rule is applied: the ids an override can name (None where the subject has none)."""

    estate_id: int
    room_id: int | None = None
    device_id: int | None = None

    def scope_id(self, scope: str) -> int | None:
        return {"estate": self.estate_id, "room": self.room_id, "device": self.device_id}[scope]


class OverrideIndex:
    """All overrides, indexed by (rule, scope, scope id); small enough to hold in memory."""

    def __init__(self, overrides: Iterable[Override]) -> None:
        self._by_key = {(o.rule_id, o.scope, o.scope_id): o for o in overrides}
        self._rules = {o.rule_id for o in self._by_key.values()}

    @classmethod
    def load(cls, conn: Connection) -> OverrideIndex:
        rows = conn.execute(
            text("SELECT rule_id, scope, scope_id, params, enabled, ticket_policy FROM alarm_rule_overrides")
        )
        return cls(Override(r, s, i, p or {}, e, t) for r, s, i, p, e, t in rows)

    def chain(self, rule_id: int, subject: Subject) -> list[Override]:
        """The overrides that apply, widest first."""
        if rule_id not in self._rules:
            return []
        out = []
        for scope in SCOPES:
            sid = subject.scope_id(scope)
            if sid is not None and (o := self._by_key.get((rule_id, scope, sid))) is not None:
                out.append(o)
        return out

    def effective(
        self, rule_id: int, params: Mapping[str, Any], enabled: bool, subject: Subject
    ) -> tuple[dict[str, Any], bool]:
        merged = dict(params)
        for o in self.chain(rule_id, subject):
            merged.update(o.params)
            if o.enabled is not None:
                enabled = o.enabled
        return merged, enabled

    def ticket_policy(self, rule_id: int, policy: Mapping[str, Any], subject: Subject) -> dict[str, Any]:
        merged = dict(policy)
        for o in self.chain(rule_id, subject):
            if o.ticket_policy:
                merged.update(o.ticket_policy)
        return merged


__all__ = ["SCOPES", "Override", "OverrideIndex", "Subject"]
