"""Example-based tests for the alarm rule kinds (alarms/rules.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from alarms.const import STALE_FACTOR, Combine, Direction, Severity, Trend
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

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def feed(
    rule: PointRule, points: Iterable[tuple[float, float]], state: RuleState | None = None
) -> tuple[RuleState, list[Transition | None]]:
    """Run (minute, value) pairs through a rule; return the final state and every step's transition."""
    state = state or RuleState()
    out: list[Transition | None] = []
    for minute, value in points:
        state, transition = evaluate(rule, state, Reading(at(minute), value))
        out.append(transition)
    return state, out


# Distribution-room temperature (domain-defaults §2): > 35 warn, > 40 alarm, > 45 critical.
ROOM = ThresholdRule(id="room_temp", direction=Direction.above, warning=35, alarm=40, critical=45, clear_band=2)


class TestThreshold:
    def test_raises_on_first_crossing_without_min_duration(self) -> None:
        _, out = feed(ROOM, [(0, 30), (1, 36)])
        assert out == [None, Raise(Severity.warning, 36, at(1))]

    def test_level_itself_is_not_beyond(self) -> None:
        _, out = feed(ROOM, [(0, 35)])
        assert out == [None]

    def test_hysteresis_flapping_inside_band_neither_clears_nor_reraises(self) -> None:
        state, out = feed(ROOM, [(0, 36), (1, 34), (2, 35.5), (3, 33.5), (4, 36)])
        assert out == [Raise(Severity.warning, 36, at(0)), None, None, None, None]
        assert state.active

    def test_clears_only_past_the_band(self) -> None:
        _, out = feed(ROOM, [(0, 36), (1, 33.1), (2, 33)])
        assert out == [Raise(Severity.warning, 36, at(0)), None, Clear(33, at(2))]

    def test_reraises_after_a_clear_as_a_new_episode(self) -> None:
        _, out = feed(ROOM, [(0, 36), (1, 30), (2, 36)])
        assert out == [Raise(Severity.warning, 36, at(0)), Clear(30, at(1)), Raise(Severity.warning, 36, at(2))]

    def test_zero_band_clears_as_soon_as_not_beyond(self) -> None:
        rule = ThresholdRule(id="r", direction=Direction.above, warning=35)
        _, out = feed(rule, [(0, 36), (1, 35)])
        assert out == [Raise(Severity.warning, 36, at(0)), Clear(35, at(1))]

    def test_escalates_instead_of_raising_twice(self) -> None:
        state, out = feed(ROOM, [(0, 36), (1, 41), (2, 46)])
        assert out == [
            Raise(Severity.warning, 36, at(0)),
            Escalate(Severity.alarm, 41, at(1)),
            Escalate(Severity.critical, 46, at(2)),
        ]
        assert state.severity is Severity.critical
        assert state.raised_at == at(0)

    def test_raises_straight_at_the_highest_level_reached(self) -> None:
        _, out = feed(ROOM, [(0, 46)])
        assert out == [Raise(Severity.critical, 46, at(0))]

    def test_keeps_highest_severity_until_clear(self) -> None:
        state, out = feed(ROOM, [(0, 46), (1, 36), (2, 41)])
        assert out == [Raise(Severity.critical, 46, at(0)), None, None]
        assert state.severity is Severity.critical
        assert state.peak == 46

    def test_peak_updates_while_active(self) -> None:
        state, out = feed(ROOM, [(0, 36), (1, 37), (2, 36.5)])
        assert out == [Raise(Severity.warning, 36, at(0)), UpdatePeak(37, at(1)), None]
        assert state.peak == 37

    def test_below_direction_mirrors(self) -> None:
        # Heat-station secondary ΔT < 5 K (warning), clearing at 6 K.
        rule = ThresholdRule(id="dt", direction=Direction.below, warning=5, alarm=3, clear_band=1)
        state, out = feed(rule, [(0, 6), (1, 4.9), (2, 2.5), (3, 2), (4, 5.5), (5, 6)])
        assert out == [
            None,
            Raise(Severity.warning, 4.9, at(1)),
            Escalate(Severity.alarm, 2.5, at(2)),
            UpdatePeak(2, at(3)),
            None,
            Clear(6, at(5)),
        ]
        assert not state.active


class TestThresholdMinDuration:
    # Domestic hot water < 50 °C for 30 min (domain-defaults §2).
    rule = ThresholdRule(
        id="dhw_low", direction=Direction.below, warning=50, clear_band=1, min_duration=timedelta(minutes=30)
    )

    def test_raises_only_after_holding_for_the_duration(self) -> None:
        _, out = feed(self.rule, [(0, 49), (10, 48), (29, 49), (30, 49.5)])
        assert out == [None, None, None, Raise(Severity.warning, 49.5, at(30))]

    def test_one_reading_back_inside_restarts_the_clock(self) -> None:
        _, out = feed(self.rule, [(0, 49), (20, 50), (25, 49), (50, 49), (55, 49)])
        assert out == [None, None, None, None, Raise(Severity.warning, 49, at(55))]

    def test_duration_is_device_time_not_reading_count(self) -> None:
        _, out = feed(self.rule, [(0, 49), (31, 49)])
        assert out == [None, Raise(Severity.warning, 49, at(31))]

    def test_escalation_needs_its_own_duration(self) -> None:
        rule = ThresholdRule(
            id="wt", direction=Direction.above, warning=130, alarm=155, min_duration=timedelta(minutes=5)
        )
        # A one-reading spike over 155 does not escalate; a sustained one does.
        _, out = feed(rule, [(0, 131), (5, 132), (6, 160), (7, 140), (8, 156), (13, 157)])
        assert out == [
            None,
            Raise(Severity.warning, 132, at(5)),
            UpdatePeak(160, at(6)),
            None,
            None,
            Escalate(Severity.alarm, 157, at(13)),
        ]

    def test_state_keeps_condition_start_across_steps(self) -> None:
        state, _ = feed(self.rule, [(0, 49), (10, 48)])
        assert state.condition_since == ((Severity.warning, at(0)),)


class TestLateAndDuplicate:
    def test_duplicate_timestamp_is_ignored_even_with_another_value(self) -> None:
        state, out = feed(ROOM, [(0, 36), (1, 30), (1, 46), (0, 46)])
        assert out == [Raise(Severity.warning, 36, at(0)), Clear(30, at(1)), None, None]
        assert not state.active

    def test_late_reading_leaves_the_state_untouched(self) -> None:
        state, _ = feed(ROOM, [(5, 36)])
        after, transition = evaluate(ROOM, state, Reading(at(4), 20))
        assert transition is None
        assert after is state

    def test_non_finite_values_are_ignored(self) -> None:
        state, out = feed(ROOM, [(0, float("nan")), (1, float("inf")), (2, 30)])
        assert out == [None, None, None]
        assert state.last_ts == at(2)

    def test_naive_timestamps_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            Reading(datetime(2026, 1, 1), 1.0)  # noqa: DTZ001


class TestRepeat:
    rule = RepeatRule(id="imbalance", direction=Direction.above, level=25, count=3, severity=Severity.warning)

    def test_raises_on_the_nth_consecutive_crossing(self) -> None:
        _, out = feed(self.rule, [(0, 26), (1, 27), (2, 28)])
        assert out == [None, None, Raise(Severity.warning, 28, at(2))]

    def test_a_reading_back_inside_resets_the_count(self) -> None:
        _, out = feed(self.rule, [(0, 26), (1, 27), (2, 20), (3, 26), (4, 26), (5, 26)])
        assert out == [None, None, None, None, None, Raise(Severity.warning, 26, at(5))]

    def test_clears_past_the_band_and_tracks_peak(self) -> None:
        rule = RepeatRule(
            id="imbalance", direction=Direction.above, level=25, count=2, severity=Severity.warning, clear_band=3
        )
        _, out = feed(rule, [(0, 26), (1, 30), (2, 31), (3, 23), (4, 22)])
        assert out == [None, Raise(Severity.warning, 30, at(1)), UpdatePeak(31, at(2)), None, Clear(22, at(4))]

    def test_count_is_capped_so_state_stays_small(self) -> None:
        state, _ = feed(self.rule, [(m, 30) for m in range(10)])
        assert state.count == 3


class TestRateOfChange:
    rule = RateOfChangeRule(
        id="temp_jump", trend=Trend.rise, max_delta=5, window=timedelta(minutes=10), severity=Severity.alarm
    )

    def test_raises_on_a_rise_within_the_window(self) -> None:
        _, out = feed(self.rule, [(0, 30), (5, 33), (9, 35.5)])
        assert out == [None, None, Raise(Severity.alarm, 5.5, at(9))]

    def test_slow_rise_spread_beyond_the_window_does_not_raise(self) -> None:
        _, out = feed(self.rule, [(0, 30), (6, 33), (12, 36), (18, 39)])
        assert out == [None, None, None, None]

    def test_fall_is_ignored_by_a_rise_rule(self) -> None:
        _, out = feed(self.rule, [(0, 40), (1, 30)])
        assert out == [None, None]

    def test_either_catches_a_fall(self) -> None:
        rule = RateOfChangeRule(
            id="p_drop", trend=Trend.either, max_delta=0.1, window=timedelta(minutes=1), severity=Severity.alarm
        )
        _, out = feed(rule, [(0, 0.45), (0.5, 0.30)])
        assert isinstance(out[1], Raise)
        assert out[1].value == pytest.approx(0.15)

    def test_clears_when_the_window_change_drops_below_the_band(self) -> None:
        rule = RateOfChangeRule(
            id="j", trend=Trend.rise, max_delta=5, window=timedelta(minutes=10), severity=Severity.alarm, clear_band=2
        )
        _, out = feed(rule, [(0, 30), (1, 36), (2, 37), (11, 40), (13, 40)])
        # At 11 the window [1, 11] still holds 36 → change 4 > 5−2 keeps it open; at 13 only 40s remain.
        assert out == [None, Raise(Severity.alarm, 6, at(1)), UpdatePeak(7, at(2)), None, Clear(0, at(13))]

    def test_window_keeps_only_samples_inside_it(self) -> None:
        state, _ = feed(self.rule, [(0, 1), (5, 1), (20, 1)])
        assert state.window == ((at(20), 1),)


class TestStale:
    rule = StaleRule(id="stale", expected_interval=timedelta(hours=2), severity=Severity.warning)

    def test_limit_is_factor_times_interval(self) -> None:
        assert self.rule.limit == timedelta(hours=2) * STALE_FACTOR == timedelta(hours=3)

    def test_readings_never_transition(self) -> None:
        _, out = feed(self.rule, [(0, 1), (500, 2)])
        assert out == [None, None]

    def test_tick_raises_after_the_limit_and_clears_on_fresh_data(self) -> None:
        state, _ = feed(self.rule, [(0, 1)])
        state, t1 = tick(self.rule, state, at(180))
        assert t1 is None  # exactly at the limit is not yet stale
        state, t2 = tick(self.rule, state, at(181))
        assert t2 == Raise(Severity.warning, None, at(181))
        state, t3 = tick(self.rule, state, at(200))
        assert t3 is None
        state, _ = evaluate(self.rule, state, Reading(at(195), 1))
        assert state.active  # the reading alone does not clear; the next tick does
        state, t4 = tick(self.rule, state, at(201))
        assert t4 == Clear(None, at(201))
        assert not state.active

    def test_backlog_that_is_still_old_keeps_the_alarm(self) -> None:
        state, _ = feed(self.rule, [(0, 1)])
        state, _ = tick(self.rule, state, at(200))
        state, _ = evaluate(self.rule, state, Reading(at(10), 1))  # flushed backlog, still > 3 h old
        state, transition = tick(self.rule, state, at(201))
        assert transition is None
        assert state.active

    def test_never_reporting_point_goes_stale_one_limit_after_first_tick(self) -> None:
        state, t1 = tick(self.rule, RuleState(), at(0))
        assert t1 is None
        assert state.watch_since == at(0)
        state, t2 = tick(self.rule, state, at(181))
        assert t2 == Raise(Severity.warning, None, at(181))

    def test_clock_stepping_back_is_ignored(self) -> None:
        state, _ = feed(self.rule, [(0, 1)])
        state, _ = tick(self.rule, state, at(200))
        after, transition = tick(self.rule, state, at(100))
        assert transition is None
        assert after is state

    def test_tick_is_a_no_op_for_other_rules(self) -> None:
        state = RuleState(last_ts=at(0))
        assert tick(ROOM, state, at(1000)) == (state, None)


class TestComposite:
    pumps = CompositeRule(
        id="no_standby",
        combine=Combine.all_of,
        children=("duty_fault", "standby_not_running"),
        severity=Severity.alarm,
    )

    def test_all_of_needs_every_child(self) -> None:
        state, t1 = evaluate_composite(self.pumps, RuleState(), {"duty_fault": True}, at(0))
        assert t1 is None  # a missing child counts as inactive
        state, t2 = evaluate_composite(self.pumps, state, {"duty_fault": True, "standby_not_running": True}, at(1))
        assert t2 == Raise(Severity.alarm, None, at(1))
        state, t3 = evaluate_composite(self.pumps, state, {"duty_fault": True, "standby_not_running": True}, at(2))
        assert t3 is None
        state, t4 = evaluate_composite(self.pumps, state, {"duty_fault": True, "standby_not_running": False}, at(3))
        assert t4 == Clear(None, at(3))

    def test_any_of_needs_one_child(self) -> None:
        rule = CompositeRule(id="wet", combine=Combine.any_of, children=("water", "smoke"), severity=Severity.critical)
        state, t1 = evaluate_composite(rule, RuleState(), {"water": False, "smoke": True}, at(0))
        assert t1 == Raise(Severity.critical, None, at(0))
        state, t2 = evaluate_composite(rule, state, {"water": True, "smoke": True}, at(1))
        assert t2 is None
        _, t3 = evaluate_composite(rule, state, {"water": False, "smoke": False}, at(2))
        assert t3 == Clear(None, at(2))

    def test_older_snapshot_still_applies(self) -> None:
        state, _ = evaluate_composite(self.pumps, RuleState(), {"duty_fault": True, "standby_not_running": True}, at(5))
        state, transition = evaluate_composite(self.pumps, state, {"duty_fault": False}, at(4))
        assert transition == Clear(None, at(4))
        assert state.last_ts == at(5)


class TestValidation:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"direction": Direction.above},
            {"direction": Direction.above, "warning": 40, "alarm": 35},
            {"direction": Direction.below, "warning": 5, "alarm": 6},
            {"direction": Direction.above, "warning": 35, "alarm": 35},
            {"direction": Direction.above, "warning": 35, "clear_band": -1},
            {"direction": Direction.above, "warning": float("nan")},
            {"direction": Direction.above, "warning": 35, "min_duration": timedelta(seconds=-1)},
        ],
    )
    def test_threshold_rejects_bad_config(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011
            ThresholdRule(id="x", **kwargs)  # type: ignore[arg-type]

    def test_single_level_rule(self) -> None:
        rule = ThresholdRule(id="cap", direction=Direction.above, alarm=60)
        assert rule.levels == ((Severity.alarm, 60),)
        _, out = feed(rule, [(0, 61)])
        assert out == [Raise(Severity.alarm, 61, at(0))]

    def test_other_rules_reject_bad_config(self) -> None:
        with pytest.raises(ValueError, match="count"):
            RepeatRule(id="r", direction=Direction.above, level=1, count=0, severity=Severity.warning)
        with pytest.raises(ValueError, match="max_delta"):
            RateOfChangeRule(id="r", trend=Trend.rise, max_delta=0, window=timedelta(1), severity=Severity.warning)
        with pytest.raises(ValueError, match="window"):
            RateOfChangeRule(id="r", trend=Trend.rise, max_delta=1, window=timedelta(0), severity=Severity.warning)
        with pytest.raises(ValueError, match="expected_interval"):
            StaleRule(id="s", expected_interval=timedelta(0), severity=Severity.warning)
        with pytest.raises(ValueError, match="itself"):
            CompositeRule(id="c", combine=Combine.any_of, children=("c",), severity=Severity.warning)
        with pytest.raises(ValueError, match="empty"):
            StaleRule(id="", expected_interval=timedelta(1), severity=Severity.warning)


class TestRuleState:
    def test_json_round_trip(self) -> None:
        state = RuleState(
            last_ts=at(1),
            active=True,
            severity=Severity.alarm,
            raised_at=at(0),
            peak=41.5,
            condition_since=((Severity.warning, at(0)), (Severity.alarm, at(1))),
            count=2,
            window=((at(0), 1.0), (at(1), 2.5)),
            watch_since=at(0),
            last_tick=at(1),
        )
        assert RuleState.from_json(json.loads(json.dumps(state.to_json()))) == state

    def test_empty_dict_is_the_initial_state(self) -> None:
        assert RuleState.from_json({}) == RuleState()

    def test_severity_ranks(self) -> None:
        assert Severity.warning.rank < Severity.alarm.rank < Severity.critical.rank
