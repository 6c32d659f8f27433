"""Alarm rule kinds as pure functions: (rule, state, input) → (new state, transition).

Nothing here touches the database, the network or the wall clock. The evaluator loads a
`RuleState` per (rule, subject) from jsonb, calls `evaluate` (ingest batch) or `tick` (worker
watchdog) and stores the new state in the same transaction; the transition drives the alarm row.

Semantics shared by every point rule (threshold, repeat, rate of change, stale):

- Time is the reading's device timestamp; durations are measured in device time, so a backlog
  flushed after an outage is judged by when it was measured, not when it arrived.
- A reading whose ts is <= `state.last_ts` (late, out of order, or a duplicate, including a
  "duplicate" with a different value) is ignored entirely: the state is returned unchanged and no
  transition is produced. The trade-off: a late reading that would have changed history (say,
  shortened a min-duration run) is not replayed. In exchange a late or redelivered reading can
  never raise a second alarm, and the state needs no history to stay consistent.
- Non-finite values (NaN, ±inf) are unusable input: ignored like late readings, not raised on.
- At most one episode is open at a time: `Raise` only when inactive, then only `Escalate`,
  `UpdatePeak` or `Clear` until the episode clears.
- Severity never steps down inside an episode: the alarm keeps the highest severity reached until
  it clears. The ticket opened for the episode carries that priority, and stepping down would only
  churn tickets and notifications while the condition is still present.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar

from alarms.const import RATE_MAX_SAMPLES, STALE_FACTOR, Combine, Direction, RuleKind, Severity, Trend

# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted sample of one point: device timestamp (tz-aware) and value."""

    ts: datetime
    value: float

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            # Naive times would compare against aware ones only by accident; refuse them early.
            raise ValueError("Reading.ts must be timezone-aware")


# ---------------------------------------------------------------------------------------------
# Rule definitions


def _check_id(rule_id: str) -> None:
    if not rule_id:
        raise ValueError("rule id must not be empty")


def _check_non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdRule:
    """Value beyond a level (up to three severities) for at least `min_duration`; clears past a band."""

    kind: ClassVar[RuleKind] = RuleKind.threshold

    id: str
    direction: Direction
    warning: float | None = None
    alarm: float | None = None
    critical: float | None = None
    # Hysteresis: once raised, the alarm clears only when the value is back past the lowest
    # configured level by this much, so a value wobbling around the level does not flap.
    clear_band: float = 0.0
    min_duration: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_non_negative("clear_band", self.clear_band)
        if self.min_duration < timedelta(0):
            raise ValueError("min_duration must be >= 0")
        levels = self.levels
        if not levels:
            raise ValueError("a threshold rule needs at least one of warning, alarm, critical")
        for _, level in levels:
            if not math.isfinite(level):
                raise ValueError("threshold levels must be finite")
        # Higher severities must be strictly further out, so "beyond critical" implies "beyond
        # alarm" implies "beyond warning" and the lowest level alone decides clearing.
        for (_, lower), (_, higher) in pairwise(levels):
            if not _beyond(self.direction, higher, lower):
                raise ValueError(f"levels must move strictly {self.direction} with severity")

    @property
    def levels(self) -> tuple[tuple[Severity, float], ...]:
        """Return the configured (severity, level) pairs, lowest severity first."""
        pairs = ((Severity.warning, self.warning), (Severity.alarm, self.alarm), (Severity.critical, self.critical))
        return tuple((sev, level) for sev, level in pairs if level is not None)

    @property
    def entry_level(self) -> float:
        """Return the lowest-severity level, the one hysteresis is measured from."""
        return self.levels[0][1]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepeatRule:
    """Value beyond a level on `count` consecutive readings; clears past a band."""

    kind: ClassVar[RuleKind] = RuleKind.repeat

    id: str
    direction: Direction
    level: float
    count: int
    severity: Severity
    clear_band: float = 0.0

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_non_negative("clear_band", self.clear_band)
        if not math.isfinite(self.level):
            raise ValueError("level must be finite")
        if self.count < 1:
            raise ValueError("count must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateOfChangeRule:
    """Value moved by more than `max_delta` within `window` (device time); clears below a band."""

    kind: ClassVar[RuleKind] = RuleKind.rate_of_change

    id: str
    trend: Trend
    max_delta: float
    window: timedelta
    severity: Severity
    # Clears once the change over the window is back to <= max_delta - clear_band.
    clear_band: float = 0.0

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_non_negative("clear_band", self.clear_band)
        if not math.isfinite(self.max_delta) or self.max_delta <= 0:
            raise ValueError("max_delta must be a finite number > 0")
        if self.window <= timedelta(0):
            raise ValueError("window must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleRule:
    """No reading within `factor` × `expected_interval`; decided on watchdog ticks, never on readings."""

    kind: ClassVar[RuleKind] = RuleKind.stale

    id: str
    expected_interval: timedelta
    severity: Severity
    factor: float = STALE_FACTOR

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.expected_interval <= timedelta(0):
            raise ValueError("expected_interval must be > 0")
        if not math.isfinite(self.factor) or self.factor < 1:
            raise ValueError("factor must be a finite number >= 1")

    @property
    def limit(self) -> timedelta:
        """Return how long a point may stay silent before it is stale."""
        return self.expected_interval * self.factor


@dataclass(frozen=True, slots=True, kw_only=True)
class CompositeRule:
    """Any-of / all-of over other rules' active flags (by rule id)."""

    kind: ClassVar[RuleKind] = RuleKind.composite

    id: str
    combine: Combine
    children: tuple[str, ...]
    severity: Severity

    def __post_init__(self) -> None:
        _check_id(self.id)
        if not self.children:
            raise ValueError("a composite rule needs at least one child")
        if self.id in self.children:
            raise ValueError("a composite rule cannot contain itself")


PointRule = ThresholdRule | RepeatRule | RateOfChangeRule | StaleRule
Rule = PointRule | CompositeRule


# ---------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True, slots=True)
class RuleState:
    """Per (rule, subject) evaluator state; small and JSON-serialisable so it fits a jsonb column."""

    # Latest device ts applied; anything at or before it is late or a duplicate.
    last_ts: datetime | None = None
    active: bool = False
    severity: Severity | None = None
    raised_at: datetime | None = None
    # Most extreme value of the open episode (for rate of change: the largest change seen).
    peak: float | None = None
    # Threshold: per severity, the device ts since which every accepted reading was beyond it.
    condition_since: tuple[tuple[Severity, datetime], ...] = ()
    # Repeat: consecutive readings beyond the level, capped at the rule's count.
    count: int = 0
    # Rate of change: (ts, value) samples inside the window, oldest first.
    window: tuple[tuple[datetime, float], ...] = ()
    # Stale: the first watchdog tick, the reference when the point never reported at all.
    watch_since: datetime | None = None
    # Stale: the latest tick applied, so a clock stepping back cannot clear and re-raise.
    last_tick: datetime | None = None

    @property
    def idle(self) -> bool:
        """No open episode and nothing pending: a fresh state in all but `last_ts` / `last_tick`.

        The evaluator stores no row for an idle state, so a healthy point costs no writes.
        """
        return (
            not self.active
            and self.severity is None
            and not self.condition_since
            and self.count == 0
            and not self.window
            and self.watch_since is None
        )

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 strings)."""
        return {
            "last_ts": _iso(self.last_ts),
            "active": self.active,
            "severity": None if self.severity is None else str(self.severity),
            "raised_at": _iso(self.raised_at),
            "peak": self.peak,
            "condition_since": [[str(sev), ts.isoformat()] for sev, ts in self.condition_since],
            "count": self.count,
            "window": [[ts.isoformat(), value] for ts, value in self.window],
            "watch_since": _iso(self.watch_since),
            "last_tick": _iso(self.last_tick),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleState:
        """Rebuild a state from `to_json` output; missing keys take their defaults."""
        severity = data.get("severity")
        peak = data.get("peak")
        return cls(
            last_ts=_parse(data.get("last_ts")),
            active=bool(data.get("active", False)),
            severity=None if severity is None else Severity(severity),
            raised_at=_parse(data.get("raised_at")),
            peak=None if peak is None else float(peak),
            condition_since=tuple(
                (Severity(sev), datetime.fromisoformat(ts)) for sev, ts in data.get("condition_since", ())
            ),
            count=int(data.get("count", 0)),
            window=tuple((datetime.fromisoformat(ts), float(value)) for ts, value in data.get("window", ())),
            watch_since=_parse(data.get("watch_since")),
            last_tick=_parse(data.get("last_tick")),
        )


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _parse(raw: object) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(str(raw))


# ---------------------------------------------------------------------------------------------
# Transitions


@dataclass(frozen=True, slots=True)
class Raise:
    """Open an alarm episode (value is None for stale and composite rules)."""

    severity: Severity
    value: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Escalate:
    """Raise the open episode's severity; never a second alarm."""

    severity: Severity
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class UpdatePeak:
    """Record a new most-extreme value on the open episode."""

    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class Clear:
    """Close the open episode."""

    value: float | None
    at: datetime


Transition = Raise | Escalate | UpdatePeak | Clear
Step = tuple[RuleState, Transition | None]


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(rule: PointRule, state: RuleState, reading: Reading) -> Step:
    """Apply one reading to a point rule's state; late, duplicate and non-finite readings change nothing."""
    if state.last_ts is not None and reading.ts <= state.last_ts:
        return state, None
    if not math.isfinite(reading.value):
        return state, None
    match rule:
        case ThresholdRule():
            return _evaluate_threshold(rule, state, reading)
        case RepeatRule():
            return _evaluate_repeat(rule, state, reading)
        case RateOfChangeRule():
            return _evaluate_rate(rule, state, reading)
        case StaleRule():
            # Readings only move the reference point; raising and clearing both happen on ticks,
            # against one clock, so a flushed backlog cannot clear an alarm the next tick re-raises.
            return replace(state, last_ts=reading.ts), None


def entry_condition(rule: PointRule) -> tuple[float, bool] | None:
    """(level, above) such that only a reading beyond it can move an idle state off idle.

    None when every reading matters (rate of change keeps a window of all of them). A stale rule
    is never moved off idle by a reading, which the level +inf (above) expresses.
    """
    match rule:
        case ThresholdRule():
            return rule.entry_level, rule.direction is Direction.above
        case RepeatRule():
            return rule.level, rule.direction is Direction.above
        case StaleRule():
            return math.inf, True
        case RateOfChangeRule():
            return None


def tick(rule: Rule, state: RuleState, now: datetime) -> Step:
    """Apply a watchdog tick (wall-clock `now`); only stale rules react, others are returned unchanged."""
    if not isinstance(rule, StaleRule):
        return state, None
    if state.last_tick is not None and now <= state.last_tick:
        return state, None
    reference = state.last_ts if state.last_ts is not None else state.watch_since
    if reference is None:
        # Never heard from the point: start its clock now, so it goes stale one limit later.
        return replace(state, watch_since=now, last_tick=now), None
    stale = now - reference > rule.limit
    ticked = replace(state, last_tick=now)
    if stale and not state.active:
        return replace(ticked, active=True, severity=rule.severity, raised_at=now), Raise(rule.severity, None, now)
    if not stale and state.active:
        return _closed(ticked), Clear(None, now)
    return ticked, None


def evaluate_composite(rule: CompositeRule, state: RuleState, children: Mapping[str, bool], at: datetime) -> Step:
    """Apply a snapshot of the children's active flags (missing children count as inactive)."""
    # No late-data guard here: the input is a full snapshot, not a delta, so applying an older one
    # is harmless and the next snapshot corrects it; the children already dropped late readings.
    flags = [children.get(child, False) for child in rule.children]
    holds = any(flags) if rule.combine is Combine.any_of else all(flags)
    last_ts = at if state.last_ts is None else max(state.last_ts, at)
    if holds and not state.active:
        raised = replace(state, last_ts=last_ts, active=True, severity=rule.severity, raised_at=at)
        return raised, Raise(rule.severity, None, at)
    if not holds and state.active:
        return _closed(replace(state, last_ts=last_ts)), Clear(None, at)
    return replace(state, last_ts=last_ts), None


def _evaluate_threshold(rule: ThresholdRule, state: RuleState, reading: Reading) -> Step:
    value, at = reading.value, reading.ts
    previous = dict(state.condition_since)
    # A level's run continues only if the previous accepted reading was also beyond it; any
    # reading that is not beyond restarts the min-duration clock.
    since = {sev: previous.get(sev, at) for sev, level in rule.levels if _beyond(rule.direction, value, level)}
    held = [sev for sev, start in since.items() if at - start >= rule.min_duration]
    target = max(held, key=lambda sev: sev.rank, default=None)
    base = replace(state, last_ts=at, condition_since=tuple(since.items()))
    if not state.active:
        if target is None:
            return base, None
        return _opened(base, target, value, at), Raise(target, value, at)
    if _past_band(rule.direction, value, rule.entry_level, rule.clear_band):
        return _closed(base), Clear(value, at)
    return _while_active(rule.direction, base, value, at, target)


def _evaluate_repeat(rule: RepeatRule, state: RuleState, reading: Reading) -> Step:
    value, at = reading.value, reading.ts
    count = min(state.count + 1, rule.count) if _beyond(rule.direction, value, rule.level) else 0
    base = replace(state, last_ts=at, count=count)
    if not state.active:
        if count < rule.count:
            return base, None
        return _opened(base, rule.severity, value, at), Raise(rule.severity, value, at)
    if _past_band(rule.direction, value, rule.level, rule.clear_band):
        return _closed(base), Clear(value, at)
    return _while_active(rule.direction, base, value, at, None)


def _evaluate_rate(rule: RateOfChangeRule, state: RuleState, reading: Reading) -> Step:
    value, at = reading.value, reading.ts
    cutoff = at - rule.window
    samples = (*(s for s in state.window if s[0] >= cutoff), (at, value))[-RATE_MAX_SAMPLES:]
    delta = _change(rule.trend, value, [v for _, v in samples])
    base = replace(state, last_ts=at, window=samples)
    if not state.active:
        if delta <= rule.max_delta:
            return base, None
        return _opened(base, rule.severity, delta, at), Raise(rule.severity, delta, at)
    if delta <= rule.max_delta - rule.clear_band:
        return _closed(base), Clear(delta, at)
    # The episode's magnitude is the change itself, and a bigger change is always "more extreme".
    return _while_active(Direction.above, base, delta, at, None)


def _change(trend: Trend, value: float, values: list[float]) -> float:
    rise = value - min(values)
    fall = max(values) - value
    match trend:
        case Trend.rise:
            return rise
        case Trend.fall:
            return fall
        case Trend.either:
            return max(rise, fall)


def _opened(state: RuleState, severity: Severity, value: float, at: datetime) -> RuleState:
    return replace(state, active=True, severity=severity, raised_at=at, peak=value)


def _closed(state: RuleState) -> RuleState:
    return replace(state, active=False, severity=None, raised_at=None, peak=None)


def _while_active(direction: Direction, state: RuleState, value: float, at: datetime, target: Severity | None) -> Step:
    peak = value if state.peak is None or _beyond(direction, value, state.peak) else state.peak
    if target is not None and state.severity is not None and target.rank > state.severity.rank:
        return replace(state, severity=target, peak=peak), Escalate(target, value, at)
    if peak != state.peak:
        return replace(state, peak=peak), UpdatePeak(value, at)
    return state, None


def _beyond(direction: Direction, value: float, level: float) -> bool:
    if direction is Direction.above:
        return value > level
    return value < level


def _past_band(direction: Direction, value: float, level: float, band: float) -> bool:
    # With band 0 this is exactly "no longer beyond the level", so band 0 means no hysteresis.
    if direction is Direction.above:
        return value <= level - band
    return value >= level + band


__all__ = [
    "Clear",
    "CompositeRule",
    "Escalate",
    "PointRule",
    "Raise",
    "RateOfChangeRule",
    "Reading",
    "RepeatRule",
    "Rule",
    "RuleState",
    "StaleRule",
    "Step",
    "ThresholdRule",
    "Transition",
    "UpdatePeak",
    "entry_condition",
    "evaluate",
    "evaluate_composite",
    "tick",
]
