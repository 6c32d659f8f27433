"""Consumption from cumulative registers: each branch by example, the invariants by hypothesis."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.meters import (
    Consumption,
    ConsumptionKind,
    Reading,
    billable_total,
    consumption,
    insert_late,
    intervals,
)

D = Decimal
T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
WATER = {"register_max": D("100000"), "resolution": D("0.001"), "multiplier": D(1)}


def r(hours: float, register: str, serial: str | None = None) -> Reading:
    return Reading(T0 + timedelta(hours=hours), D(register), serial=serial)


class TestConsumption:
    @pytest.mark.parametrize(
        ("prev", "curr", "volume", "kind", "billable"),
        [
            # normal
            ("1234.567", "1234.567", "0.000", ConsumptionKind.normal, True),
            ("1234.567", "1235.012", "0.445", ConsumptionKind.normal, True),
            ("0", "99999.999", "99999.999", ConsumptionKind.normal, True),
            # rollover: previous ≥ 90 000 and new < 10 000
            ("99999.500", "0.300", "0.800", ConsumptionKind.rollover, True),
            ("90000.000", "0.000", "10000.000", ConsumptionKind.rollover, True),
            ("99998.000", "3.250", "5.250", ConsumptionKind.rollover, True),
            # reset: falls from below the rollover band, or lands too high to be a wrap
            ("45210.880", "0.000", "0", ConsumptionKind.reset, False),
            ("89999.999", "0.001", "0", ConsumptionKind.reset, False),
            ("95000.000", "60000.000", "0", ConsumptionKind.reset, False),
            ("1234.567", "1234.566", "0", ConsumptionKind.reset, False),
        ],
    )
    def test_water_branches(self, prev: str, curr: str, volume: str, kind: ConsumptionKind, billable: bool) -> None:
        c = consumption(r(0, prev), r(1, curr), **WATER)
        assert c is not None
        assert (c.volume, c.kind, c.billable) == (D(volume), kind, billable)
        assert c.volume >= 0
        assert (c.from_ts, c.to_ts) == (T0, T0 + timedelta(hours=1))

    def test_rollover_is_flagged_with_a_reason(self) -> None:
        c = consumption(r(0, "99999.500"), r(1, "0.300"), **WATER)
        assert c is not None
        assert c.reason == "register rolled over at 100000"

    def test_reset_holds_billing_and_asks_for_both_readings(self) -> None:
        c = consumption(r(0, "45210.880"), r(1, "0.012"), **WATER)
        assert c is not None
        assert c.kind is ConsumptionKind.reset
        assert "hold billing" in c.reason
        assert "final" in c.reason
        assert "initial" in c.reason

    @pytest.mark.parametrize(
        ("prev", "curr"),
        [
            ("45210.880", "0.000"),  # the new meter starts at zero
            ("12.000", "7300.000"),  # the new (second-hand) meter reads higher: still not 7288 m³
            ("99999.000", "0.500"),  # looks like a rollover, but the serial says otherwise
        ],
    )
    def test_serial_change_is_a_replacement(self, prev: str, curr: str) -> None:
        c = consumption(r(0, prev, "WM-001"), r(1, curr, "WM-002"), **WATER)
        assert c is not None
        assert (c.volume, c.kind, c.billable) == (D(0), ConsumptionKind.replacement, False)
        assert "WM-001 → WM-002" in c.reason

    def test_missing_serial_is_not_a_replacement(self) -> None:
        c = consumption(r(0, "10.000", "WM-001"), r(1, "10.500"), **WATER)
        assert c is not None
        assert c.kind is ConsumptionKind.normal

    @pytest.mark.parametrize(
        ("prev", "curr", "multiplier", "volume"),
        [
            # a 300/5 A CT: ratio 60, register 0.01 kWh
            ("1520.35", "1521.10", "60", "45.00"),
            # CT 200/5 × PT 10 kV/100 V = 40 × 100
            ("88.12", "88.15", "4000", "120.00"),
            ("9999.90", "0.10", "60", "12.00"),  # rollover of a 10 000 kWh register, then × 60
        ],
    )
    def test_electricity_multiplier(self, prev: str, curr: str, multiplier: str, volume: str) -> None:
        c = consumption(r(0, prev), r(1, curr), register_max=D("10000"), resolution=D("0.01"), multiplier=D(multiplier))
        assert c is not None
        assert c.volume == D(volume)

    @pytest.mark.parametrize(
        ("prev", "curr", "resolution", "volume"),
        [
            ("10.0004", "10.0019", "0.001", "0.001"),  # 10.000 → 10.001: floored, like the dial shows
            ("10.0009", "10.0011", "0.001", "0.001"),
            ("10.0001", "10.0009", "0.001", "0.000"),
            ("100.004", "100.013", "0.005", "0.010"),  # a non-decimal step: 100.000 → 100.010
            ("1234.56789", "1235.0", None, "0.43211"),  # no resolution known: exact
        ],
    )
    def test_quantised_to_resolution(self, prev: str, curr: str, resolution: str | None, volume: str) -> None:
        res = None if resolution is None else D(resolution)
        c = consumption(r(0, prev), r(1, curr), register_max=D("100000"), resolution=res)
        assert c is not None
        assert c.volume == D(volume)

    def test_no_register_max_means_every_fall_is_a_reset(self) -> None:
        c = consumption(r(0, "99999.5"), r(1, "0.3"), register_max=None, resolution=D("0.001"))
        assert c is not None
        assert c.kind is ConsumptionKind.reset

    @pytest.mark.parametrize(
        ("prev", "curr", "params"),
        [
            (r(1, "10"), r(1, "11"), WATER),  # same device time
            (r(2, "10"), r(1, "11"), WATER),  # out of order: the caller must sort
            (r(0, "-1"), r(1, "11"), WATER),
            (r(0, "10"), r(1, "NaN"), WATER),
            (r(0, "10"), r(1, "Infinity"), WATER),
            (r(0, "10"), r(1, "100000"), WATER),  # at the modulus: a misread
            (Reading(datetime(2026, 11, 26), D(1)), r(1, "2"), WATER),  # noqa: DTZ001 - naive on purpose
            (r(0, "10"), r(1, "11"), {**WATER, "multiplier": D(0)}),
            (r(0, "10"), r(1, "11"), {**WATER, "resolution": D(0)}),
            (r(0, "10"), r(1, "11"), {**WATER, "register_max": D(-5)}),
        ],
    )
    def test_unusable_input_gives_none(self, prev: Reading, curr: Reading, params: dict[str, Decimal]) -> None:
        assert consumption(prev, curr, **params) is None


class TestIntervals:
    def test_sequence_with_rollover_and_replacement(self) -> None:
        readings = [
            r(0, "99990.000", "A"),
            r(1, "99999.000", "A"),
            r(2, "4.000", "A"),
            r(3, "7.500", "A"),
            r(4, "0.000", "B"),
            r(5, "1.250", "B"),
        ]
        got = intervals(readings, **WATER)
        assert [(c.volume, c.kind) for c in got] == [
            (D("9.000"), ConsumptionKind.normal),
            (D("5.000"), ConsumptionKind.rollover),
            (D("3.500"), ConsumptionKind.normal),
            (D(0), ConsumptionKind.replacement),
            (D("1.250"), ConsumptionKind.normal),
        ]
        assert billable_total(got) == D("18.750")

    def test_sorts_by_device_time_and_keeps_the_first_of_a_duplicate_instant(self) -> None:
        got = intervals([r(2, "12"), r(0, "10"), r(1, "11"), r(1, "50")], **WATER)
        assert [(c.from_register, c.to_register) for c in got] == [
            (D("10.000"), D("11.000")),
            (D("11.000"), D("12.000")),
        ]

    def test_skips_unusable_readings_without_losing_volume(self) -> None:
        got = intervals([r(0, "10"), r(1, "NaN"), r(2, "-3"), r(3, "12")], **WATER)
        assert [(c.from_ts, c.to_ts, c.volume) for c in got] == [(T0, T0 + timedelta(hours=3), D("2.000"))]

    def test_intervals_are_contiguous(self) -> None:
        got = intervals([r(h, str(h)) for h in range(5)], **WATER)
        assert all(a.to_ts == b.from_ts for a, b in pairwise(got))

    @pytest.mark.parametrize("readings", [[], [r(0, "1")]])
    def test_fewer_than_two_readings_give_no_intervals(self, readings: list[Reading]) -> None:
        assert intervals(readings, **WATER) == []


class TestInsertLate:
    def test_late_reading_splits_the_interval_it_falls_in(self) -> None:
        stored = [r(0, "10.000"), r(2, "12.000"), r(3, "13.000")]
        rev = insert_late(stored, r(1, "11.400"), **WATER)
        assert [(c.from_register, c.to_register) for c in rev.superseded] == [(D("10.000"), D("12.000"))]
        assert [(c.from_register, c.to_register) for c in rev.replacing] == [
            (D("10.000"), D("11.400")),
            (D("11.400"), D("12.000")),
        ]
        assert rev.adjustment == 0  # same volume, now attributed to the right hours
        assert [x.ts for x in rev.readings] == [T0 + timedelta(hours=h) for h in range(4)]

    def test_late_reading_that_reveals_a_reset_changes_the_billable_volume(self) -> None:
        # 10 → 12 looked like 2 m³, but the meter was reset in between and has counted 11.5 m³ since;
        # the reset interval itself is held (0, not billable) until someone records the readings.
        rev = insert_late([r(0, "10.000"), r(2, "12.000")], r(1, "0.500"), **WATER)
        assert [(c.kind, c.volume) for c in rev.replacing] == [
            (ConsumptionKind.reset, D(0)),
            (ConsumptionKind.normal, D("11.500")),
        ]
        assert rev.adjustment == D("9.500")

    @pytest.mark.parametrize("hours", [-1, 5])
    def test_late_reading_outside_the_range_only_adds(self, hours: float) -> None:
        rev = insert_late([r(0, "10"), r(4, "14")], r(hours, "9" if hours < 0 else "15"), **WATER)
        assert rev.superseded == ()
        assert [c.volume for c in rev.replacing] == [D("1.000")]

    @pytest.mark.parametrize("late", [r(2, "99"), r(3, "NaN")])
    def test_duplicate_or_unusable_late_reading_changes_nothing(self, late: Reading) -> None:
        stored = [r(0, "10"), r(2, "12"), r(4, "14")]
        rev = insert_late(stored, late, **WATER)
        assert (rev.superseded, rev.replacing, rev.readings) == ((), (), tuple(stored))


# --- invariants ------------------------------------------------------------------------------------

MAX = D("1000")
RES = D("0.001")
# Below 10 % of the range per interval, as the rollover guard assumes (and hourly reads guarantee).
delta = st.integers(min_value=0, max_value=99_999).map(lambda n: D(n) * RES)


@st.composite
def wrapped_series(draw: st.DrawFn) -> tuple[list[Reading], Decimal]:
    """A true cumulative use, shown on a register that wraps at MAX; returns readings and true total."""
    start = D(draw(st.integers(min_value=0, max_value=999_999))) * RES
    # Start near the top often so rollovers are common.
    if draw(st.booleans()):
        start = MAX - D(draw(st.integers(min_value=1, max_value=50_000))) * RES
    deltas = draw(st.lists(delta, min_size=1, max_size=40))
    readings, total, reg = [Reading(T0, start)], D(0), start
    for i, d in enumerate(deltas, start=1):
        total += d
        reg = (reg + d) % MAX
        readings.append(Reading(T0 + timedelta(minutes=15 * i), reg))
    return readings, total


class TestInvariants:
    @given(wrapped_series(), st.sampled_from([D(1), D(60), D("0.5")]))
    @settings(max_examples=300)
    def test_total_equals_true_total_and_never_negative(
        self, series: tuple[list[Reading], Decimal], multiplier: Decimal
    ) -> None:
        readings, truth = series
        got = intervals(readings, register_max=MAX, resolution=RES, multiplier=multiplier)
        assert len(got) == len(readings) - 1
        assert all(c.volume >= 0 for c in got)
        assert all(c.kind in (ConsumptionKind.normal, ConsumptionKind.rollover) for c in got)
        assert billable_total(got) == truth * multiplier

    @given(wrapped_series(), st.randoms(use_true_random=False))
    @settings(max_examples=200)
    def test_late_insertion_matches_in_order_processing(
        self, series: tuple[list[Reading], Decimal], rnd: random.Random
    ) -> None:
        readings, truth = series
        arrival = readings[:]
        rnd.shuffle(arrival)
        stored: tuple[Reading, ...] = ()
        billed = D(0)
        for late in arrival:
            rev = insert_late(stored, late, register_max=MAX, resolution=RES)
            stored = rev.readings
            billed += rev.adjustment  # billing only ever adds adjustments
        expected = intervals(readings, register_max=MAX, resolution=RES)
        assert intervals(stored, register_max=MAX, resolution=RES) == expected
        assert billed == billable_total(expected) == truth

    @given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2_000_000)), max_size=30))
    def test_arbitrary_registers_never_negative_and_never_above_the_span(self, points: list[tuple[int, int]]) -> None:
        # Any garbage sequence (resets, jumps, duplicates): volume is never negative and each interval is
        # bounded by what the register could have counted (at most one wrap).
        readings = [Reading(T0 + timedelta(minutes=m), D(v) * RES) for m, v in points]
        for c in intervals(readings, register_max=MAX, resolution=RES):
            assert D(0) <= c.volume < MAX
            assert c.billable == (c.kind in (ConsumptionKind.normal, ConsumptionKind.rollover))


def test_consumption_is_a_value_object() -> None:
    c = consumption(r(0, "1"), r(1, "2"), **WATER)
    assert isinstance(c, Consumption)
    assert c == consumption(r(0, "1"), r(1, "2"), **WATER)
