"""Property tests for the rule kinds: random readings with flapping, duplicates and late data.

Each point rule is checked against a reference model that does not replay the evaluator's
incremental state: it recomputes the alarm from the accepted readings alone ("raise-qualifying"
readings since the last "clear-qualifying" one), so the two only agree if the incremental bookkeeping
(condition starts, counters, windows, late-data guard) is right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.const import Combine, Direction, Severity, Trend
from alarms.rules import (
    Clear,
    CompositeRule,
    Escalate,
    PointRule,
    Raise,
    RateOfChangeRule,
    Reading,
    RepeatRule,
    RuleState,
    StaleRule,
    ThresholdRule,
    Transition,
    UpdatePeak,
    evaluate,
    evaluate_composite,
    tick,
)

T0 = datetime(2026, 11, 26, tzinfo=UTC)
PROPS = settings(max_examples=300, deadline=None)


# ---------------------------------------------------------------------------------------------
# Reading sequences: a clean, strictly increasing sequence and the same with noise inserted.


@st.composite
def sequences(draw: st.DrawFn, values: st.SearchStrategy[float]) -> tuple[list[Reading], list[Reading]]:
    """Draw (clean, noisy): noisy adds duplicates, late readings and NaNs that must change nothing."""
    n = draw(st.integers(0, 40))
    clean: list[Reading] = []
    noisy: list[Reading] = []
    ts = T0
    for _ in range(n):
        ts += timedelta(seconds=draw(st.integers(1, 600)))
        reading = Reading(ts, draw(values))
        clean.append(reading)
        noisy.append(reading)
        for kind in draw(st.lists(st.sampled_from(["duplicate", "redelivery", "late", "nan"]), max_size=2)):
            if kind == "duplicate":  # same device ts, possibly another value (a buggy resend)
                noisy.append(Reading(draw(st.sampled_from(clean)).ts, draw(values)))
            elif kind == "redelivery":  # QoS 1 redelivers the exact same reading
                noisy.append(draw(st.sampled_from(clean)))
            elif kind == "late":  # measured earlier than the newest reading already applied
                noisy.append(Reading(ts - timedelta(seconds=draw(st.integers(0, 3600))), draw(values)))
            else:  # unusable value at any ts, even a future one
                noisy.append(Reading(ts + timedelta(seconds=draw(st.integers(-600, 600))), math.nan))
    return clean, noisy


def near(points: Sequence[float], low: float, high: float) -> st.SearchStrategy[float]:
    """Values that sit on, just inside and just outside the interesting levels, plus anything in range."""
    return st.one_of(st.sampled_from(sorted(set(points))), st.floats(low, high, allow_nan=False))


# ---------------------------------------------------------------------------------------------
# Reference model


@dataclass(frozen=True)
class Ref:
    active: bool = False
    severity: Severity | None = None
    peak: float | None = None
    raised_at: datetime | None = None


def accepted_prefixes(noisy: Sequence[Reading]) -> list[list[Reading] | None]:
    """For each input, the accepted readings so far, or None when that input must be ignored."""
    out: list[list[Reading] | None] = []
    kept: list[Reading] = []
    for r in noisy:
        if math.isfinite(r.value) and (not kept or r.ts > kept[-1].ts):
            kept = [*kept, r]
            out.append(kept)
        else:
            out.append(None)
    return out


def reference(
    n: int,
    qualifies: Callable[[int], Severity | None],
    clears: Callable[[int], bool],
    magnitude: Callable[[int], float],
    ts: Callable[[int], datetime],
    higher_is_worse: bool,
) -> Ref:
    """The alarm after n accepted readings: open iff a reading qualified since the last clearing one."""
    last_clear = max((j for j in range(n) if clears(j)), default=-1)
    raises = [j for j in range(last_clear + 1, n) if qualifies(j) is not None]
    if not raises:
        return Ref()
    first = raises[0]
    severity = max((s for j in raises if (s := qualifies(j)) is not None), key=lambda s: s.rank)
    mags = [magnitude(j) for j in range(first, n)]
    return Ref(True, severity, max(mags) if higher_is_worse else min(mags), ts(first))


def expected_transition(before: Ref, after: Ref, value: float, at: datetime) -> Transition | None:
    if not before.active and after.active:
        assert after.severity is not None
        return Raise(after.severity, value, at)
    if before.active and not after.active:
        return Clear(value, at)
    if after.active and before.severity != after.severity:
        assert after.severity is not None
        return Escalate(after.severity, value, at)
    if after.active and before.peak != after.peak:
        return UpdatePeak(value, at)
    return None


def beyond(direction: Direction, value: float, level: float) -> bool:
    return value > level if direction is Direction.above else value < level


def past_band(direction: Direction, value: float, level: float, band: float) -> bool:
    return value <= level - band if direction is Direction.above else value >= level + band


def _beyond_level(direction: Direction, level: float) -> Callable[[float], bool]:
    return lambda v: beyond(direction, v, level)


def run_start(acc: Sequence[Reading], j: int, pred: Callable[[float], bool]) -> int:
    """Index where the run of readings satisfying pred that ends at j begins."""
    s = j
    while s > 0 and pred(acc[s - 1].value):
        s -= 1
    return s


def reference_for(rule: PointRule, acc: Sequence[Reading]) -> tuple[Ref, float]:
    """Return the reference alarm after the accepted readings and the last reading's magnitude."""
    n = len(acc)
    values = [r.value for r in acc]

    def ts(j: int) -> datetime:
        return acc[j].ts

    match rule:
        case ThresholdRule():
            thr = rule

            def qualifies(j: int) -> Severity | None:
                best: Severity | None = None
                for sev, level in thr.levels:
                    if beyond(thr.direction, values[j], level):
                        start = run_start(acc, j, _beyond_level(thr.direction, level))
                        if acc[j].ts - acc[start].ts >= thr.min_duration:
                            best = sev
                return best

            ref = reference(
                n,
                qualifies,
                lambda j: past_band(thr.direction, values[j], thr.entry_level, thr.clear_band),
                lambda j: values[j],
                ts,
                thr.direction is Direction.above,
            )
            return ref, values[-1] if values else 0.0
        case RepeatRule():
            rep = rule

            def qualifies_repeat(j: int) -> Severity | None:
                if not beyond(rep.direction, values[j], rep.level):
                    return None
                start = run_start(acc, j, lambda v: beyond(rep.direction, v, rep.level))
                return rep.severity if j - start + 1 >= rep.count else None

            ref = reference(
                n,
                qualifies_repeat,
                lambda j: past_band(rep.direction, values[j], rep.level, rep.clear_band),
                lambda j: values[j],
                ts,
                rep.direction is Direction.above,
            )
            return ref, values[-1] if values else 0.0
        case RateOfChangeRule():
            roc = rule

            def delta(j: int) -> float:
                window = [r.value for r in acc[: j + 1] if r.ts >= acc[j].ts - roc.window]
                rise, fall = values[j] - min(window), max(window) - values[j]
                return {Trend.rise: rise, Trend.fall: fall, Trend.either: max(rise, fall)}[roc.trend]

            ref = reference(
                n,
                lambda j: roc.severity if delta(j) > roc.max_delta else None,
                lambda j: delta(j) <= roc.max_delta - roc.clear_band,
                delta,
                ts,
                True,
            )
            return ref, delta(n - 1) if n else 0.0
        case StaleRule():
            raise AssertionError("stale rules are checked with ticks")


def observed(state: RuleState) -> Ref:
    return Ref(state.active, state.severity, state.peak, state.raised_at)


# ---------------------------------------------------------------------------------------------
# The three properties, shared by every point rule


def check_point_rule(rule: PointRule, clean: list[Reading], noisy: list[Reading]) -> None:
    state = RuleState()
    open_alarms = 0
    before = Ref()
    noisy_transitions: list[Transition] = []
    for reading, acc in zip(noisy, accepted_prefixes(noisy), strict=True):
        new_state, transition = evaluate(rule, state, reading)
        # (a) at most one open alarm: Raise only when none is open, everything else only when one is.
        match transition:
            case Raise():
                assert open_alarms == 0
                open_alarms += 1
            case Clear():
                assert open_alarms == 1
                open_alarms -= 1
            case Escalate() | UpdatePeak():
                assert open_alarms == 1
            case None:
                pass
        assert open_alarms in (0, 1)
        assert new_state.active == (open_alarms == 1)
        # (b) the state and the transition equal the reference model's.
        if acc is None:
            assert new_state == state
            assert transition is None
        else:
            after, magnitude = reference_for(rule, acc)
            assert observed(new_state) == after
            assert transition == expected_transition(before, after, magnitude, reading.ts)
            before = after
        # The state survives a trip through jsonb unchanged.
        assert RuleState.from_json(json.loads(json.dumps(new_state.to_json()))) == new_state
        if transition is not None:
            noisy_transitions.append(transition)
        state = new_state
    # (c) duplicates, late readings and NaNs change nothing: same transitions as the clean sequence.
    clean_transitions: list[Transition] = []
    state = RuleState()
    for reading in clean:
        state, transition = evaluate(rule, state, reading)
        if transition is not None:
            clean_transitions.append(transition)
    assert noisy_transitions == clean_transitions


# ---------------------------------------------------------------------------------------------
# Threshold


@st.composite
def threshold_cases(draw: st.DrawFn) -> tuple[ThresholdRule, list[Reading], list[Reading]]:
    direction = draw(st.sampled_from(Direction))
    severities = sorted(draw(st.sets(st.sampled_from(Severity), min_size=1)), key=lambda s: s.rank)
    sign = 1 if direction is Direction.above else -1
    levels = {sev: 100.0 + sign * 10 * i for i, sev in enumerate(severities)}
    band = draw(st.sampled_from([0.0, 0.5, 2.0, 5.0]))
    rule = ThresholdRule(
        id="t",
        direction=direction,
        warning=levels.get(Severity.warning),
        alarm=levels.get(Severity.alarm),
        critical=levels.get(Severity.critical),
        clear_band=band,
        min_duration=timedelta(seconds=draw(st.sampled_from([0, 60, 300, 900]))),
    )
    points = [lv + d for lv in levels.values() for d in (0, 0.25, -0.25, band, -band, band + 0.25, -band - 0.25)]
    clean, noisy = draw(sequences(near(points, 60, 140)))
    return rule, clean, noisy


@PROPS
@given(threshold_cases())
def test_threshold_properties(case: tuple[ThresholdRule, list[Reading], list[Reading]]) -> None:
    check_point_rule(*case)


# ---------------------------------------------------------------------------------------------
# Repeat


@st.composite
def repeat_cases(draw: st.DrawFn) -> tuple[RepeatRule, list[Reading], list[Reading]]:
    band = draw(st.sampled_from([0.0, 1.0, 3.0]))
    rule = RepeatRule(
        id="r",
        direction=draw(st.sampled_from(Direction)),
        level=100.0,
        count=draw(st.integers(1, 4)),
        severity=draw(st.sampled_from(Severity)),
        clear_band=band,
    )
    points = [100 + d for d in (0, 0.5, -0.5, band, -band, band + 0.5, -band - 0.5)]
    clean, noisy = draw(sequences(near(points, 90, 110)))
    return rule, clean, noisy


@PROPS
@given(repeat_cases())
def test_repeat_properties(case: tuple[RepeatRule, list[Reading], list[Reading]]) -> None:
    check_point_rule(*case)


# ---------------------------------------------------------------------------------------------
# Rate of change


@st.composite
def rate_cases(draw: st.DrawFn) -> tuple[RateOfChangeRule, list[Reading], list[Reading]]:
    max_delta = draw(st.sampled_from([1.0, 5.0]))
    rule = RateOfChangeRule(
        id="c",
        trend=draw(st.sampled_from(Trend)),
        max_delta=max_delta,
        window=timedelta(seconds=draw(st.sampled_from([60, 300, 900, 3600]))),
        severity=draw(st.sampled_from(Severity)),
        clear_band=draw(st.sampled_from([0.0, 0.5 * max_delta])),
    )
    clean, noisy = draw(sequences(near([100, 100 + max_delta, 100 - max_delta, 100.5, 99.5], 90, 110)))
    return rule, clean, noisy


@PROPS
@given(rate_cases())
def test_rate_of_change_properties(case: tuple[RateOfChangeRule, list[Reading], list[Reading]]) -> None:
    check_point_rule(*case)


# ---------------------------------------------------------------------------------------------
# Stale (readings and watchdog ticks interleaved)

STALE = StaleRule(id="s", expected_interval=timedelta(minutes=10), severity=Severity.warning)

Event = tuple[str, datetime]  # ("read" | "tick", ts or now)


@st.composite
def stale_cases(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """Draw (clean, noisy) event lists; noisy adds late readings and ticks from a clock stepping back."""
    clean: list[Event] = []
    noisy: list[Event] = []
    wall = T0
    newest_read: datetime | None = None
    newest_tick: datetime | None = None
    for _ in range(draw(st.integers(0, 40))):
        wall += timedelta(seconds=draw(st.integers(1, 1200)))
        if draw(st.booleans()):
            # Device time lags the wall clock by a little or (backlog) a lot, but keeps increasing.
            ts = wall - timedelta(seconds=draw(st.sampled_from([0, 30, 900, 3600])))
            if newest_read is not None and ts <= newest_read:
                continue
            newest_read = ts
            event: Event = ("read", ts)
        else:
            newest_tick = wall
            event = ("tick", wall)
        clean.append(event)
        noisy.append(event)
        if draw(st.booleans()) and newest_read is not None:
            noisy.append(("read", newest_read - timedelta(seconds=draw(st.integers(0, 1800)))))
        if draw(st.booleans()) and newest_tick is not None:
            noisy.append(("tick", newest_tick - timedelta(seconds=draw(st.integers(0, 1800)))))
    return clean, noisy


def run_stale(events: Sequence[Event]) -> list[Transition]:
    state = RuleState()
    open_alarms = 0
    reads: list[datetime] = []
    ticks: list[datetime] = []
    out: list[Transition] = []
    for kind, when in events:
        if kind == "read":
            state, transition = evaluate(STALE, state, Reading(when, 1.0))
            assert transition is None  # readings never raise or clear a stale alarm
            if not reads or when > reads[-1]:
                reads.append(when)
            continue
        was_active = state.active
        state, transition = tick(STALE, state, when)
        if ticks and when <= ticks[-1]:
            assert transition is None
            assert state.active == was_active
            continue
        ticks.append(when)
        reference_point = reads[-1] if reads else ticks[0]
        stale = when - reference_point > STALE.limit
        # (b) the reference: active exactly when the newest accepted reading is older than the limit.
        assert state.active == stale
        match transition:
            case Raise():
                assert open_alarms == 0  # (a)
                open_alarms += 1
                assert transition == Raise(STALE.severity, None, when)
            case Clear():
                assert open_alarms == 1
                open_alarms -= 1
            case None:
                assert was_active == stale
            case _:
                raise AssertionError(transition)
        if transition is not None:
            out.append(transition)
    return out


@PROPS
@given(stale_cases())
def test_stale_properties(case: tuple[list[Event], list[Event]]) -> None:
    clean, noisy = case
    # (c) late readings and backward ticks produce exactly the clean transitions.
    assert run_stale(noisy) == run_stale(clean)


# ---------------------------------------------------------------------------------------------
# Composite


@PROPS
@given(
    st.sampled_from(Combine),
    st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=30),
)
def test_composite_alternates_raise_and_clear(combine: Combine, snapshots: list[dict[str, bool]]) -> None:
    rule = CompositeRule(id="k", combine=combine, children=("a", "b", "c"), severity=Severity.alarm)
    state = RuleState()
    for i, snapshot in enumerate(snapshots):
        flags = [snapshot.get(child, False) for child in rule.children]
        holds = any(flags) if combine is Combine.any_of else all(flags)
        was_active = state.active
        state, transition = evaluate_composite(rule, state, snapshot, T0 + timedelta(minutes=i))
        assert state.active == holds
        if holds and not was_active:
            assert isinstance(transition, Raise)
        elif was_active and not holds:
            assert isinstance(transition, Clear)
        else:
            assert transition is None
