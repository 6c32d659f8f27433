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

import itertools
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
    # role supply, outdoor: supply > curve(outdoor) + level (the weather-compensation setpoint + margin)
    above_curve = "above_curve"
    above_cap = "above_cap"  # role supply: supply > level (the station's emitter cap)


# What an alarm of each check is about, for the alarm list (its ``point_id`` is only the state's anchor).
CHECK_LABELS: dict[str, tuple[str, str]] = {
    Check.imbalance: ("三相电流不平衡度（%）", "Phase current imbalance (%)"),
    Check.low_difference: ("二次供回水温差（K）", "Secondary supply/return ΔT (K)"),
    Check.starts: ("稳压泵每小时启动次数", "Jockey pump starts per hour"),
    Check.standby_failed: ("主泵故障 / 备用泵运行", "Duty pump fault / standby running"),
    Check.all_running: ("排污泵同时运行", "Sump pumps running together"),
    Check.without_signal: ("消防主泵运行 / 火警信号", "Main fire pump running / fire signal"),
    Check.above_curve: ("二次供水温度 / 气候补偿设定值（°C）", "Secondary supply / weather-compensated setpoint (°C)"),
    Check.above_cap: ("二次供水温度（°C）", "Secondary supply temperature (°C)"),
}
# Roles whose points may come from any device of the same room (a fire-alarm panel is its own device).
ROOM_ROLES = frozenset({"signal"})
# Roles whose points may come from any device of the same estate: one outdoor thermometer serves every
# heat station of an estate (a weather station on a roof, or the one wired to a station's controller).
ESTATE_ROLES = frozenset({"outdoor"})
# The least number of points a role needs before the rule can judge anything.
MIN_POINTS: dict[Check, dict[str, int]] = {
    Check.imbalance: {"a": 1, "b": 1, "c": 1},
    Check.low_difference: {"hi": 1, "lo": 1},
    Check.starts: {"pump": 1},
    Check.standby_failed: {"fault": 1, "running": 2},
    Check.all_running: {"running": 2},
    Check.without_signal: {"running": 1, "signal": 1},
    Check.above_curve: {"supply": 1, "outdoor": 1},
    Check.above_cap: {"supply": 1},
}

# Emitter caps of the secondary supply (domain-defaults §2, GB 50736 / JGJ 142): radiators 85 °C,
# floor heating 60 °C. A station whose emitter the estate model does not name gets floor heating's,
# the lower one: a wrong guess then raises early and gets the station configured, never late.
EMITTER_CAPS: dict[str, float] = {"radiators": 85.0, "floor_heating": 60.0}
DEFAULT_EMITTER = "floor_heating"
# Default weather-compensation curves, outdoor °C → secondary supply setpoint °C (linear between points,
# flat beyond the ends). Radiators: 75/50 °C design supply at a −10 °C design day (GB 50736 §5.3 design
# temperatures, the usual 75/50 system), falling to 45 °C at the +10 °C end of the season. Floor
# heating: JGJ 142 recommends 35–45 °C supply and never above 60 °C; 45 °C at the design day down to
# 32 °C in mild weather. An estate sets its own per station (device attrs ``supply_curve``).
DEFAULT_CURVES: dict[str, tuple[tuple[float, float], ...]] = {
    "radiators": ((-10.0, 75.0), (0.0, 62.0), (10.0, 45.0)),
    "floor_heating": ((-10.0, 45.0), (0.0, 40.0), (10.0, 32.0)),
}


def emitter_of(attrs: Mapping[str, Any]) -> str:
    """The station's emitter type from its device attrs (``emitter``, or the older ``system``)."""
    raw = attrs.get("emitter") or attrs.get("system")
    return str(raw) if raw in EMITTER_CAPS else DEFAULT_EMITTER


def station_params(params: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A curve or cap rule's params completed from the station's attrs in the estate model.

    ``above_cap``: the level is the emitter's cap unless the rule's (override) params fix one.
    ``above_curve``: the curve is an operator's override (``curve`` in the effective params), else the
    station's ``supply_curve`` ([[outdoor, setpoint], …]), else the default curve of its emitter.
    Other checks pass through unchanged.
    """
    out = dict(params)
    check = params.get("check")
    emitter = emitter_of(attrs)
    if check == Check.above_cap and "level" not in params:
        out["level"] = EMITTER_CAPS[emitter]
    elif check == Check.above_curve:
        curve = params.get("curve") or attrs.get("supply_curve") or DEFAULT_CURVES[emitter]
        out["curve"] = [list(p) for p in curve]
    if check in (Check.above_cap, Check.above_curve):
        out["emitter"] = emitter
    return out


def setpoint(curve: Sequence[tuple[float, float]], outdoor: float) -> float:
    """The curve's setpoint at an outdoor temperature: linear between points, flat beyond the ends."""
    pts = sorted(curve)
    if outdoor <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if outdoor <= x1:
            return y0 + (y1 - y0) * (outdoor - x0) / (x1 - x0)
    return pts[-1][1]


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
    curve: tuple[tuple[float, float], ...] = ()  # above_curve: (outdoor °C, setpoint °C), sorted

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
        if self.check is Check.above_curve:
            xs = [x for x, _ in self.curve]
            if len(self.curve) < 2 or len(set(xs)) != len(xs):
                raise ValueError("curve needs at least two points with distinct outdoor temperatures")
            if not all(math.isfinite(v) for p in self.curve for v in p):
                raise ValueError("curve points must be finite")

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
        curve=_curve(params.get("curve")),
    )


def _curve(raw: object) -> tuple[tuple[float, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise TypeError("curve must be a list of [outdoor, setpoint] pairs")
    pts = []
    for p in raw:
        if not isinstance(p, Sequence) or isinstance(p, str) or len(p) != 2:
            raise TypeError("curve must be a list of [outdoor, setpoint] pairs")
        pts.append((float(p[0]), float(p[1])))
    return tuple(sorted(pts))


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
    rule: MultiPointRule,
    device_points: Mapping[str, int],
    room_points: Mapping[str, Sequence[int]] | None = None,
    estate_points: Mapping[str, Sequence[int]] | None = None,
) -> Binding:
    """Bind a rule to a device's points (metric → point id); `ROOM_ROLES` may also use the room's points,
    `ESTATE_ROLES` the estate's."""
    roles: dict[str, tuple[int, ...]] = {}
    missing = []
    for role, pattern in sorted(rule.roles.items()):
        rx = re.compile(pattern)
        ids = {p for m, p in device_points.items() if rx.fullmatch(m)}
        if role in ROOM_ROLES and room_points:
            ids.update(p for m, ps in room_points.items() if rx.fullmatch(m) for p in ps)
        if role in ESTATE_ROLES and estate_points:
            ids.update(p for m, ps in estate_points.items() if rx.fullmatch(m) for p in ps)
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
            # The min-duration clock stops only once the reading is past the clear band, not on every noisy
            # reading that grazes the level: a dying ΔT hovering at 4.5 ± 0.5 K is "below 5 K for 2 h" to an
            # engineer, and restarting the clock at each 5.0 K reading would never let it raise (the heating
            # curve's night-time supply put it there when the e2e run started at 03:00).
            return replace(base, since=None if clears else base.since), None
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
        case Check.above_curve:
            # Several outdoor thermometers (a roof station and a controller's sensor): their mean.
            outdoor = sum(snap["outdoor"]) / len(snap["outdoor"])
            limit = setpoint(rule.curve, outdoor) + rule.level
            supply = snap["supply"][0]
            return supply > limit, supply <= limit - rule.clear_band, supply
        case Check.above_cap:
            supply = snap["supply"][0]
            return supply > rule.level, supply <= rule.level - rule.clear_band, supply


__all__ = [
    "CHECK_LABELS",
    "DEFAULT_CURVES",
    "DEFAULT_EMITTER",
    "EMITTER_CAPS",
    "ESTATE_ROLES",
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
    "emitter_of",
    "setpoint",
    "station_params",
]
