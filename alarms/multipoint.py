"""Multi-point alarm rules (domain-defaults §2) as pure functions: (rule, state, snapshot) → (state, transition).

A multi-point rule judges several points of one device together: three-phase current imbalance, the
heat station's secondary ΔT, jockey-pump starts per hour, a duty pump failed with no standby running,
both sump pumps running, the main fire pump running without a fire signal. Rows are `alarm_rules`
of kind ``composite`` (§2: "composite (any-of / all-of)") whose ``params.check`` names the check and
whose ``params.roles`` map role names to metric patterns (regular expressions, full match); a device
whose points fill every role is *bound* to the rule (`bind`). A role the device cannot fill leaves the
rule *not configured* (未配置) on that device: it is reported, never evaluated, so "no fire signal"
is never claimed on a device that has no fire-signal point to ask.

Semantics follow the point rules (alarms/rules.py):

- time is the device timestamp; a snapshot whose ts is <= `state.last_ts` (late, duplicate,
  redelivered) is ignored entirely, so a late reading can never raise a second alarm;
- a reading updates the latest value of its point; the check sees the latest value of every bound
  point (telemetry frames carry all of a device's points at one ts, so normally all are fresh);
- non-finite values are ignored like late ones;
- at most one episode open at a time; one severity per rule, so no escalation.

Nothing here touches the database or the wall clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from alarms.const import Severity
from alarms.rules import Clear, Raise, UpdatePeak

ON = 0.5  # a state point (0/1, false/true) is on above this


class Check(StrEnum):
    imbalance = "imbalance"  # roles a, b, c: (max − min) / max × 100 > level %
    low_difference = "low_difference"  # roles hi, lo: hi − lo < level (for min_duration)
    starts = "starts"  # role pump: off→on transitions within window > level
    standby_failed = "standby_failed"  # roles fault, running: a fault on and no pump running
    all_running = "all_running"  # role running (>= 2 points): every one on (for min_duration)
    without_signal = "without_signal"  # roles running, signal: running while no signal is on


# What an alarm of each check is about, for the alarm list (its ``point_id`` is only the state's anchor).
CHECK_LABELS: dict[str, tuple[str, str]] = {
    Check.imbalance: ("三相电流不平衡度（%）", "Phase current imbalance (%)"),
    Check.low_difference: ("二次供回水温差（K）", "Secondary supply/return ΔT (K)"),
    Check.starts: ("稳压泵每小时启动次数", "Jockey pump starts per hour"),
    Check.standby_failed: ("主泵故障 / 备用泵运行", "Duty pump fault / standby running"),
    Check.all_running: ("排污泵同时运行", "Sump pumps running together"),
    Check.without_signal: ("消防主泵运行 / 火警信号", "Main fire pump running / fire signal"),
}
# Roles whose points may come from any device of the same room (a fire-alarm panel is its own device).
ROOM_ROLES = frozenset({"signal"})
# The least number of points a role needs before the rule can judge anything.
MIN_POINTS: dict[Check, dict[str, int]] = {
    Check.imbalance: {"a": 1, "b": 1, "c": 1},
    Check.low_difference: {"hi": 1, "lo": 1},
    Check.starts: {"pump": 1},
    Check.standby_failed: {"fault": 1, "running": 2},
    Check.all_running: {"running": 2},
    Check.without_signal: {"running": 1, "signal": 1},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiPointRule:
    id: str
    check: Check
    roles: Mapping[str, str]  # role → metric pattern (full match)
    severity: Severity
    level: float = 0.0
    clear_band: float = 0.0
    min_duration: timedelta = timedelta(0)
    window: timedelta = timedelta(hours=1)  # starts: the counting window
    min_current: float = 0.0  # imbalance: below this the phases carry too little to judge

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("rule id must not be empty")
        missing = set(MIN_POINTS[self.check]) - set(self.roles)
        if missing:
            raise ValueError(f"{self.check} needs roles {sorted(missing)}")
        for role, pattern in self.roles.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"role {role}: bad metric pattern {pattern!r}: {exc}") from exc
        for name, value in (("level", self.level), ("clear_band", self.clear_band), ("min_current", self.min_current)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.min_duration < timedelta(0) or self.window <= timedelta(0):
            raise ValueError("min_duration must be >= 0 and window > 0")

    @property
    def lower_is_worse(self) -> bool:
        return self.check is Check.low_difference


def build_multipoint(code: str, params: Mapping[str, Any]) -> MultiPointRule:
    """The rule of a ``composite`` row's params; raises ValueError/KeyError/TypeError on bad params."""
    roles = params["roles"]
    if not isinstance(roles, Mapping) or not all(isinstance(v, str) for v in roles.values()):
        raise TypeError("roles must map role names to metric patterns")
    return MultiPointRule(
        id=code,
        check=Check(params["check"]),
        roles=dict(roles),
        severity=Severity(params["severity"]),
        level=float(params.get("level", 0.0)),
        clear_band=float(params.get("clear_band", 0.0)),
        min_duration=timedelta(seconds=float(params.get("min_duration_s", 0.0))),
        window=timedelta(seconds=float(params.get("window_s", 3600.0))),
        min_current=float(params.get("min_current", 0.0)),
    )


# --- binding: which points of a device (and its room) fill the roles ------------------------------


@dataclass(frozen=True, slots=True)
class Binding:
    """A rule on one device: role → point ids (sorted). `missing` names the roles it cannot fill."""

    roles: Mapping[str, tuple[int, ...]]
    missing: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return not self.missing

    @property
    def anchor(self) -> int:
        """The point the evaluator's state row and the alarm hang on: the first bound point."""
        return min(p for ids in self.roles.values() for p in ids)

    @property
    def points(self) -> frozenset[int]:
        return frozenset(p for ids in self.roles.values() for p in ids)


def bind(
    rule: MultiPointRule, device_points: Mapping[str, int], room_points: Mapping[str, Sequence[int]] | None = None
) -> Binding:
    """Bind a rule to a device's points (metric → point id); `ROOM_ROLES` may also use the room's points."""
    roles: dict[str, tuple[int, ...]] = {}
    missing = []
    for role, pattern in sorted(rule.roles.items()):
        rx = re.compile(pattern)
        ids = {p for m, p in device_points.items() if rx.fullmatch(m)}
        if role in ROOM_ROLES and room_points:
            ids.update(p for m, ps in room_points.items() if rx.fullmatch(m) for p in ps)
        roles[role] = tuple(sorted(ids))
        if len(ids) < MIN_POINTS[rule.check].get(role, 1):
            missing.append(role)
    return Binding(roles, tuple(missing))


# --- state ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiState:
    last_ts: datetime | None = None
    latest: Mapping[int, float] = field(default_factory=dict)  # point id → latest accepted value
    active: bool = False
    raised_at: datetime | None = None
    since: datetime | None = None  # the condition has held since (min-duration clock)
    peak: float | None = None
    starts: tuple[datetime, ...] = ()  # starts: the off→on times inside the window
    running: bool | None = None  # starts: the counted pump's last known state

    def to_json(self) -> dict[str, Any]:
        return {
            "last_ts": _iso(self.last_ts),
            "latest": {str(k): v for k, v in self.latest.items()},
            "active": self.active,
            "raised_at": _iso(self.raised_at),
            "since": _iso(self.since),
            "peak": self.peak,
            "starts": [t.isoformat() for t in self.starts],
            "running": self.running,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MultiState:
        peak, running = data.get("peak"), data.get("running")
        return cls(
            last_ts=_parse(data.get("last_ts")),
            latest={int(k): float(v) for k, v in (data.get("latest") or {}).items()},
            active=bool(data.get("active", False)),
            raised_at=_parse(data.get("raised_at")),
            since=_parse(data.get("since")),
            peak=None if peak is None else float(peak),
            starts=tuple(datetime.fromisoformat(t) for t in data.get("starts", ())),
            running=None if running is None else bool(running),
        )


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(raw: object) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(str(raw))


Transition = Raise | Clear | UpdatePeak


# --- evaluation ----------------------------------------------------------------------------------


def apply(
    rule: MultiPointRule, binding: Binding, state: MultiState, ts: datetime, values: Mapping[int, float]
) -> tuple[MultiState, Transition | None]:
    """Apply the readings of one device timestamp (point id → value); late and duplicate ts change nothing."""
    if state.last_ts is not None and ts <= state.last_ts:
        return state, None
    fresh = {p: v for p, v in values.items() if p in binding.points and math.isfinite(v)}
    if not fresh:
        return state, None
    latest = {**state.latest, **fresh}
    base = replace(state, last_ts=ts, latest=latest)
    snap = {role: [latest[p] for p in ids if p in latest] for role, ids in binding.roles.items()}
    if rule.check is Check.starts:
        base = _count_starts(rule, base, ts, snap)
    judged = _judge(rule, base, snap)
    if judged is None:
        return base, None
    holds, clears, value = judged
    if not state.active:
        if not holds:
            return replace(base, since=None), None
        since = base.since if base.since is not None else ts
        if ts - since < rule.min_duration:
            return replace(base, since=since), None
        raised = replace(base, since=since, active=True, raised_at=ts, peak=value)
        return raised, Raise(rule.severity, value, ts)
    if clears:
        return replace(base, active=False, raised_at=None, since=None, peak=None), Clear(value, ts)
    worse = base.peak is None or (value < base.peak if rule.lower_is_worse else value > base.peak)
    if worse:
        return replace(base, peak=value), UpdatePeak(value, ts)
    return base, None


def _on(values: Sequence[float]) -> list[bool]:
    return [v > ON for v in values]


def _count_starts(rule: MultiPointRule, state: MultiState, ts: datetime, snap: Mapping[str, list[float]]) -> MultiState:
    pumps = snap.get("pump") or []
    if not pumps:
        return state
    running = any(_on(pumps))
    starts = tuple(t for t in state.starts if t > ts - rule.window)
    # A start is an observed off→on; the first reading after install only sets the baseline.
    if running and state.running is False:
        starts = (*starts, ts)
    return replace(state, starts=starts, running=running)


def _judge(rule: MultiPointRule, state: MultiState, snap: Mapping[str, list[float]]) -> tuple[bool, bool, float] | None:
    """(condition holds, an open episode clears, the episode's value), or None when it cannot judge yet."""
    need = MIN_POINTS[rule.check]
    if any(len(snap.get(role) or []) < n for role, n in need.items()):
        return None
    match rule.check:
        case Check.imbalance:
            phases = [snap["a"][0], snap["b"][0], snap["c"][0]]
            hi, lo = max(phases), min(phases)
            # (max − min) / max: the practice form for distribution transformers (DL/T 572 usage);
            # a lightly loaded feeder's percentages mean nothing, so below min_current it counts as balanced.
            pct = 0.0 if hi <= 0 or hi < rule.min_current else (hi - lo) / hi * 100.0
            return pct > rule.level, pct <= rule.level - rule.clear_band, pct
        case Check.low_difference:
            diff = snap["hi"][0] - snap["lo"][0]
            return diff < rule.level, diff >= rule.level + rule.clear_band, diff
        case Check.starts:
            n = float(len(state.starts))
            return n > rule.level, n <= rule.level - rule.clear_band, n
        case Check.standby_failed:
            holds = any(_on(snap["fault"])) and not any(_on(snap["running"]))
            return holds, not holds, 1.0 if holds else 0.0
        case Check.all_running:
            holds = all(_on(snap["running"]))
            return holds, not holds, float(sum(_on(snap["running"])))
        case Check.without_signal:
            holds = any(_on(snap["running"])) and not any(_on(snap["signal"]))
            return holds, not holds, 1.0 if holds else 0.0


__all__ = [
    "CHECK_LABELS",
    "MIN_POINTS",
    "ROOM_ROLES",
    "Binding",
    "Check",
    "MultiPointRule",
    "MultiState",
    "Transition",
    "apply",
    "bind",
    "build_multipoint",
]
