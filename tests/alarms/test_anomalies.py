"""Meter anomaly detectors with realistic numbers: m³ registers at 0.001 (1 L), kWh at 0.01, local nights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alarms.anomalies import (
    DEFAULTS,
    AnomalyDefaults,
    AnomalyKind,
    MeterContext,
    building_balance,
    continuous_flow,
    detect,
    hourly,
    night_leak,
    percentile,
    reset_or_replacement,
    reverse_energy,
    spike,
    stuck,
    total_between,
    vacant_flow,
)
from alarms.const import Severity
from facility.meters import Consumption, Reading, intervals

D = Decimal
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 20, 0, 0, tzinfo=TZ)
HOUR = timedelta(hours=1)
WATER = MeterContext(unit="m3", resolution=D("0.001"), tz=TZ, register_max=D("100000"))
VACANT = replace(WATER, occupancy="vacant", has_valve=True)
POWER = MeterContext(unit="kWh", resolution=D("0.01"), tz=TZ, register_max=D("1000000"))

# Litres per hour of a family of three, 00:00–23:00: nothing at night, peaks at breakfast and evening.
FAMILY_DAY = [0, 0, 0, 0, 0, 0, 30, 80, 40, 10, 5, 0, 20, 10, 0, 0, 5, 10, 40, 60, 50, 30, 10, 0]


def water(
    litres: Sequence[int], *, start: datetime = START, step: timedelta = HOUR, register: str = "123.456"
) -> list[Reading]:
    """Readings every ``step`` whose register grows by the given litres per step (register in m³)."""
    reg = D(register)
    out = [Reading(start, reg)]
    for i, volume in enumerate(litres, start=1):
        reg += D(volume) / 1000
        out.append(Reading(start + step * i, reg))
    return out


def use(readings: Sequence[Reading], ctx: MeterContext = WATER) -> list[Consumption]:
    return intervals(readings, register_max=ctx.register_max, resolution=ctx.resolution, multiplier=ctx.multiplier)


def days(profile: list[int], n: int) -> list[int]:
    return profile * n


def with_night(profile: list[int], night: dict[int, int]) -> list[int]:
    return [night.get(h, v) for h, v in enumerate(profile)]


class TestVacantFlow:
    def test_two_consecutive_litres_in_a_vacant_unit(self) -> None:
        f = vacant_flow(use(water([0, 0, 0, 2, 1])), VACANT)
        assert f is not None
        assert (f.kind, f.severity, f.close_valve) == (AnomalyKind.vacant_flow, Severity.critical, True)
        assert f.evidence["volumes"] == "0.002,0.001"
        assert f.at == START + 5 * HOUR

    def test_without_a_valve_someone_is_sent(self) -> None:
        f = vacant_flow(use(water([3, 3])), replace(VACANT, has_valve=False))
        assert f is not None
        assert not f.close_valve
        assert "stop valve" in f.detail

    @pytest.mark.parametrize(
        "litres",
        [
            [0, 0, 0, 0],  # dry
            [0, 0, 4, 0],  # one reading: a drip or jitter, not yet flow
            [5, 5, 5, 0],  # stopped at the latest reading
            [1],  # only one interval so far
        ],
    )
    def test_not_two_in_a_row(self, litres: list[int]) -> None:
        assert vacant_flow(use(water(litres)), VACANT) is None

    def test_occupied_unit_flow_is_fine(self) -> None:
        assert vacant_flow(use(water([80, 40, 10])), WATER) is None

    def test_renovating_unit_is_not_vacant(self) -> None:
        assert vacant_flow(use(water([80, 40])), replace(WATER, occupancy="renovating")) is None

    def test_electricity_in_a_vacant_unit_is_not_water(self) -> None:
        items = use(water([500, 500]), POWER)
        assert vacant_flow(items, replace(POWER, occupancy="vacant")) is None

    def test_configurable_run_length(self) -> None:
        three = AnomalyDefaults(vacant_consecutive=3)
        assert vacant_flow(use(water([0, 2, 2])), VACANT, three) is None
        assert vacant_flow(use(water([2, 2, 2])), VACANT, three) is not None


def power(
    reverse: Sequence[str], *, step: timedelta = timedelta(minutes=15), flags: dict[int, str] | None = None
) -> list[Reading]:
    """kWh readings with a slowly rising forward register and the given reverse register values."""
    return [
        Reading(
            START + step * i, D("5230.00") + D(i) / 100, D(rev), flags=((flags or {})[i],) if i in (flags or {}) else ()
        )
        for i, rev in enumerate(reverse)
    ]


class TestReverseEnergy:
    def test_reverse_register_rising_on_a_unit_without_pv(self) -> None:
        # 0.35 kWh back over one day (96 quarter-hour reads).
        rev = [f"{D('12.00') + D(min(i, 35)) / 100:.2f}" for i in range(97)]
        f = reverse_energy(power(rev), POWER)
        assert f is not None
        assert (f.kind, f.severity) == (AnomalyKind.reverse_energy, Severity.alarm)
        assert f.evidence["increase_kwh"] == "0.35"
        assert "wiring / tampering" in f.detail

    def test_pv_unit_reverse_is_fine(self) -> None:
        rev = [f"{D(i) / 10:.2f}" for i in range(97)]  # 9.6 kWh exported in a sunny day
        assert reverse_energy(power(rev, flags={50: "reverse_power"}), replace(POWER, has_pv=True)) is None

    def test_reverse_power_flag(self) -> None:
        f = reverse_energy(power(["0.00"] * 4, flags={2: "reverse_power"}), POWER)
        assert f is not None
        assert f.at == START + timedelta(minutes=30)

    @pytest.mark.parametrize(
        ("reverse", "step"),
        [
            (["12.00", "12.05"], timedelta(days=1)),  # 0.05 kWh/day: creep below the threshold
            (["12.00", "12.10"], timedelta(days=1)),  # exactly 0.1 is not "more than"
            (["12.00", "12.01"], timedelta(minutes=15)),  # one step in 15 min is not 0.96 kWh/day
            (["12.00", "12.30", "12.30"], timedelta(days=2)),  # 0.3 over 4 days = 0.075/day
            (["12.00", "0.00", "0.05"], timedelta(hours=12)),  # register reset is not reverse energy
        ],
    )
    def test_below_threshold(self, reverse: list[str], step: timedelta) -> None:
        assert reverse_energy(power(reverse, step=step), POWER) is None

    def test_ct_multiplier_applies_to_reverse(self) -> None:
        # 0.01 on the register behind a 300/5 CT is 0.6 kWh.
        f = reverse_energy(power(["3.00", "3.01"], step=timedelta(days=1)), replace(POWER, multiplier=D(60)))
        assert f is not None
        assert f.evidence["increase_kwh"] == "0.60"

    def test_water_meter_has_no_reverse_rule(self) -> None:
        assert reverse_energy(power(["0", "5"], step=timedelta(days=1)), WATER) is None

    def test_no_reverse_register(self) -> None:
        assert reverse_energy([Reading(START, D(1)), Reading(START + HOUR, D(2))], POWER) is None


class TestNightLeak:
    def test_running_toilet_every_night_hour_for_three_nights(self) -> None:
        # A cistern leaking ~4 L/h: small, but never zero between 02:00 and 05:00.
        leaky = with_night(FAMILY_DAY, {2: 4, 3: 3, 4: 4})
        f = night_leak(use(water(days(leaky, 3))), WATER)
        assert f is not None
        assert (f.kind, f.severity, f.evidence["verdict"]) == (
            AnomalyKind.night_leak,
            Severity.warning,
            "possible leak",
        )
        assert f.evidence["nights"] == "2026-11-20,2026-11-21,2026-11-22"
        assert "consecutive nights" in f.detail
        assert f.at == datetime(2026, 11, 22, 5, tzinfo=TZ)

    def test_two_nights_are_not_enough(self) -> None:
        leaky = with_night(FAMILY_DAY, {2: 4, 3: 3, 4: 4})
        assert night_leak(use(water(FAMILY_DAY + leaky * 2)), WATER) is None

    def test_a_dry_night_breaks_the_run(self) -> None:
        leaky = with_night(FAMILY_DAY, {2: 4, 3: 3, 4: 4})
        assert night_leak(use(water(leaky * 2 + FAMILY_DAY + leaky * 2)), WATER) is None

    def test_minimum_night_flow_above_10_lph_on_three_nights(self) -> None:
        # 12–14 L/h on three of four nights (one dry night in between), and still on the latest.
        leaky = with_night(FAMILY_DAY, {2: 12, 3: 14, 4: 13})
        f = night_leak(use(water(leaky + FAMILY_DAY + leaky * 2)), WATER)
        assert f is not None
        assert f.severity is Severity.warning
        assert f.evidence["nights"] == "2026-11-20,2026-11-22,2026-11-23"
        assert f.evidence["min_flow_lph"] == "12.0,12.0,12.0"

    def test_above_30_lph_once_is_a_leak(self) -> None:
        burst = with_night(FAMILY_DAY, {2: 36, 3: 35, 4: 38})
        f = night_leak(use(water(FAMILY_DAY * 2 + burst)), WATER)
        assert f is not None
        assert (f.severity, f.evidence["verdict"], f.evidence["min_flow_lph"]) == (Severity.alarm, "leak", "35.0")

    def test_fixed_leak_no_longer_shows(self) -> None:
        burst = with_night(FAMILY_DAY, {2: 36, 3: 35, 4: 38})
        assert night_leak(use(water(burst * 3 + FAMILY_DAY)), WATER) is None

    def test_occupied_family_with_a_night_flush_is_fine(self) -> None:
        # A toilet flush (6 L) at 03:00 some nights: not every hour, so not a leak.
        flush = with_night(FAMILY_DAY, {3: 6})
        assert night_leak(use(water(days(flush, 7))), WATER) is None

    def test_quarter_hour_reads_are_pooled_into_hours(self) -> None:
        # 4 L/h read every 15 minutes on a 1 L register: most quarter hours show 0, every hour shows 4.
        quarters = [1 if h in (2, 3, 4) else 0 for h in range(24) for _ in range(4)]
        f = night_leak(use(water(quarters * 3, step=timedelta(minutes=15))), WATER)
        assert f is not None
        assert f.evidence["min_flow_lph"] == "4.0,4.0,4.0"

    def test_a_missing_night_hour_means_no_verdict_for_that_night(self) -> None:
        leaky = with_night(FAMILY_DAY, {2: 12, 3: 14, 4: 13})
        readings = [r for r in water(leaky * 3) if r.ts != datetime(2026, 11, 22, 3, tzinfo=TZ)]
        # 02:00–04:00 is one 2-hour interval now, too coarse to say which hour had the flow.
        assert night_leak(use(readings), WATER) is None

    def test_coarse_reads_are_not_evidence(self) -> None:
        six_hourly = [sum(FAMILY_DAY[i : i + 6]) + 30 for i in range(0, 24, 6)]
        assert night_leak(use(water(six_hourly * 4, step=timedelta(hours=6))), WATER) is None

    def test_night_is_local_time(self) -> None:
        # 02:00–05:00 in Shanghai is 18:00–21:00 UTC: evening use in UTC terms must not count.
        utc_ctx = replace(WATER, tz=UTC)
        leaky = with_night(FAMILY_DAY, {2: 40, 3: 40, 4: 40})
        items = use(water(leaky * 3))
        assert night_leak(items, WATER) is not None
        assert night_leak(items, utc_ctx) is None

    def test_electricity_at_night_is_normal(self) -> None:
        assert night_leak(use(water([500] * 72), POWER), POWER) is None


class TestContinuousFlow:
    def test_flow_every_hour_for_a_day(self) -> None:
        f = continuous_flow(use(water([3] * 25)), WATER)
        assert f is not None
        assert (f.kind, f.severity, f.evidence["hours"], f.evidence["min_flow_lph"]) == (
            AnomalyKind.continuous_flow,
            Severity.alarm,
            "25",
            "3.0",
        )
        assert f.at == START + 25 * HOUR

    @pytest.mark.parametrize(
        "litres",
        [
            [3] * 23,
            [3] * 12 + [0] + [3] * 20,  # an hour without flow resets the run
            [3] * 30 + [0],  # stopped in the latest hour
            FAMILY_DAY * 3,  # a normal household has dry hours every night
        ],
    )
    def test_not_continuous(self, litres: list[int]) -> None:
        assert continuous_flow(use(water(litres)), WATER) is None

    def test_trickle_read_every_quarter_hour(self) -> None:
        # 2 L/h on a 1 L register read every 15 minutes: half the reads show nothing, every hour shows 2 L.
        litres = [1, 0] * 2 * 24
        assert continuous_flow(use(water(litres, step=timedelta(minutes=15))), WATER) is not None

    def test_gap_in_reads_breaks_the_evidence(self) -> None:
        readings = water([3] * 30)
        del readings[10:13]  # a 4-hour interval: too coarse to know it flowed every hour
        assert continuous_flow(use(readings), WATER) is None


class TestSpike:
    # Two days of a household's hourly use; the 95th percentile is 60 L.
    HISTORY = FAMILY_DAY * 2

    def test_three_times_the_95th_percentile(self) -> None:
        f = spike(use(water([*self.HISTORY, 200])), WATER)
        assert f is not None
        assert (f.kind, f.severity, f.hold_billing) == (AnomalyKind.spike, Severity.alarm, True)
        assert (f.evidence["volume"], f.evidence["percentile"], f.evidence["threshold"]) == ("0.200", "0.060", "0.180")

    def test_a_big_bath_is_not_a_spike(self) -> None:
        assert spike(use(water([*self.HISTORY, 150])), WATER) is None

    def test_minimum_step_keeps_a_busy_hour_from_tripping(self) -> None:
        # 3 × p95 is 180 L; 400 L in an hour is a busy evening, not a meter fault, under a 0.5 m³ floor.
        floor = replace(DEFAULTS, spike_min_step=D("0.5"))
        assert spike(use(water([*self.HISTORY, 400])), WATER) is not None
        assert spike(use(water([*self.HISTORY, 400])), WATER, floor) is None
        assert spike(use(water([*self.HISTORY, 500])), WATER, floor) is None  # at the floor: not above it
        f = spike(use(water([*self.HISTORY, 501])), WATER, floor)
        assert f is not None
        assert f.evidence["threshold"] == "0.5"

    def test_needs_enough_history(self) -> None:
        assert spike(use(water([*FAMILY_DAY[:10], 500])), WATER) is None

    def test_catch_up_read_after_missed_reads(self) -> None:
        readings = water([*self.HISTORY, 60, 60, 60, 60, 60])
        del readings[-5:-1]  # one 5-hour interval of 300 L: 5 h × 3 × 60 L allowed
        assert spike(use(readings), WATER) is None

    def test_above_pipe_capacity_without_history(self) -> None:
        # A DN20 domestic supply delivers about 2.5 m³/h; 3.2 m³ in one hour is a misread, not use.
        ctx = replace(WATER, capacity_per_hour=D("2.5"))
        f = spike(use(water([10, 3200])), ctx)
        assert f is not None
        assert f.hold_billing
        assert f.evidence["capacity_limit"] == "2.5"

    def test_idle_meter_has_no_usual_use(self) -> None:
        assert spike(use(water([0] * 48 + [30])), WATER) is None

    def test_latest_reset_is_not_a_spike(self) -> None:
        readings = water([*self.HISTORY])
        readings.append(Reading(readings[-1].ts + HOUR, D("0.5")))
        assert spike(use(readings), WATER) is None

    def test_electricity_with_multiplier(self) -> None:
        ctx = replace(POWER, multiplier=D(60))
        regs = [D("100.00") + D(i) / 100 for i in range(49)]  # 0.6 kWh every hour
        readings = [Reading(START + HOUR * i, r) for i, r in enumerate(regs)]
        readings.append(Reading(START + HOUR * 49, regs[-1] + D("0.05")))  # 3 kWh: 5×
        f = spike(use(readings, ctx), ctx)
        assert f is not None
        assert f.evidence["volume"] == "3.00"


class TestStuck:
    def daily(self, registers: list[str], serial: str | None = None) -> list[Reading]:
        return [Reading(START + timedelta(days=i), D(r), serial=serial) for i, r in enumerate(registers)]

    def test_no_change_for_seven_days_on_an_occupied_unit(self) -> None:
        f = stuck(self.daily(["310.112", "310.540"] + ["310.877"] * 8), WATER)
        assert f is not None
        assert (f.kind, f.severity, f.evidence["days"], f.evidence["register"]) == (
            AnomalyKind.stuck,
            Severity.warning,
            "7",
            "310.877",
        )
        assert "check meter" in f.detail

    def test_six_days_is_not_yet_stuck(self) -> None:
        assert stuck(self.daily(["310.540"] + ["310.877"] * 7), WATER) is None

    def test_vacant_unit_may_use_nothing(self) -> None:
        assert stuck(self.daily(["310.877"] * 10), VACANT) is None

    def test_sub_resolution_noise_is_not_movement(self) -> None:
        regs = ["310.8770", "310.8772", "310.8771"] * 3
        assert stuck(self.daily(regs), WATER) is not None

    def test_a_window_shorter_than_the_rule(self) -> None:
        assert stuck(self.daily(["310.877"] * 3), WATER) is None
        assert stuck([], WATER) is None


class TestResetOrReplacement:
    def test_reset_holds_billing(self) -> None:
        readings = [*water([10, 10]), Reading(START + 3 * HOUR, D("0.012")), Reading(START + 4 * HOUR, D("0.030"))]
        f = reset_or_replacement(use(readings))
        assert f is not None
        assert (f.kind, f.severity, f.hold_billing) == (AnomalyKind.reset_or_replacement, Severity.warning, True)
        assert (f.evidence["kind"], f.evidence["from_register"], f.evidence["to_register"]) == (
            "reset",
            "123.476",
            "0.012",
        )
        assert "final" in f.detail

    def test_replacement(self) -> None:
        readings = [Reading(START, D("845.210"), serial="WM-1"), Reading(START + HOUR, D("0.004"), serial="WM-2")]
        f = reset_or_replacement(use(readings))
        assert f is not None
        assert f.evidence["kind"] == "replacement"

    def test_rollover_is_normal(self) -> None:
        assert reset_or_replacement(use(water([400, 300], register="99999.500"))) is None


class TestBuildingBalance:
    DAY_END = START + timedelta(days=1)

    def meter(self, litres_per_hour: int, *, offset: timedelta = timedelta(0)) -> list[Consumption]:
        return use(water([litres_per_hour] * 24, start=START + offset))

    def test_master_exceeds_sub_meters_by_more_than_15_percent(self) -> None:
        # Master 120 L/h; twelve flats at 8 L/h = 96 L/h: 20 % unaccounted for.
        subs = {f"3-1-{floor}01": self.meter(8) for floor in range(1, 13)}
        f = building_balance(self.meter(120), subs, start=START, end=self.DAY_END)
        assert f is not None
        assert (f.kind, f.severity) == (AnomalyKind.building_balance, Severity.alarm)
        assert (f.evidence["master"], f.evidence["sub_total"], f.evidence["loss_pct"]) == ("2.880", "2.304", "20.0")

    def test_normal_losses_are_fine(self) -> None:
        subs = {f"3-1-{floor}01": self.meter(9) for floor in range(1, 13)}  # 10 % loss
        assert building_balance(self.meter(120), subs, start=START, end=self.DAY_END) is None

    def test_reads_within_tolerance_count_as_synchronised(self) -> None:
        subs = {f"u{i}": self.meter(8, offset=timedelta(minutes=5)) for i in range(12)}
        assert building_balance(self.meter(120), subs, start=START, end=self.DAY_END) is not None

    def test_a_sub_meter_without_synchronised_reads_gives_no_verdict(self) -> None:
        subs = {f"u{i}": self.meter(8) for i in range(11)}
        subs["u11"] = self.meter(8, offset=timedelta(minutes=40))
        assert building_balance(self.meter(120), subs, start=START, end=self.DAY_END) is None

    def test_a_missing_hour_on_a_sub_meter_gives_no_verdict(self) -> None:
        subs = {f"u{i}": self.meter(8) for i in range(12)}
        subs["u0"] = subs["u0"][:10] + subs["u0"][11:]
        assert building_balance(self.meter(120), subs, start=START, end=self.DAY_END) is None

    def test_idle_master(self) -> None:
        assert building_balance(self.meter(0), {"u": self.meter(0)}, start=START, end=self.DAY_END) is None

    def test_total_between_needs_the_boundaries(self) -> None:
        items = self.meter(10)
        assert total_between(items, START, self.DAY_END, tolerance=timedelta(minutes=15)) == D("0.240")
        assert total_between(items, START + HOUR, START + 3 * HOUR, tolerance=timedelta(0)) == D("0.020")
        assert total_between(items, START - HOUR, self.DAY_END, tolerance=timedelta(minutes=15)) is None


class TestDetect:
    def test_vacant_flat_with_a_burst_pipe(self) -> None:
        # Dry until 20:00, then 40 L/h through the night and the next day.
        readings = water([0] * 20 + [40] * 30)
        found = {f.kind: f for f in detect(readings, VACANT)}
        assert set(found) == {AnomalyKind.vacant_flow, AnomalyKind.continuous_flow, AnomalyKind.night_leak}
        assert found[AnomalyKind.vacant_flow].close_valve
        assert found[AnomalyKind.night_leak].evidence["verdict"] == "leak"

    def test_quiet_household_has_no_findings(self) -> None:
        assert detect(water(FAMILY_DAY * 7), WATER) == []


class TestHelpers:
    @pytest.mark.parametrize(
        ("values", "pct", "expected"),
        [
            ([], 95, None),
            (["5"], 95, "5"),
            ([str(i) for i in range(1, 21)], 95, "19"),
            ([str(i) for i in range(1, 101)], 95, "95"),
            ([str(i) for i in range(1, 101)], 100, "100"),
        ],
    )
    def test_nearest_rank_percentile(self, values: list[str], pct: int, expected: str | None) -> None:
        got = percentile([D(v) for v in values], pct)
        assert got == (None if expected is None else D(expected))

    def test_hourly_splits_an_interval_across_hours(self) -> None:
        readings = [
            Reading(START + timedelta(minutes=30), D("1.000")),
            Reading(START + timedelta(minutes=90), D("1.010")),
        ]
        # Neither hour is fully covered by this one interval.
        assert hourly(use(readings), TZ, max_interval=HOUR) == {}
        readings = [Reading(START, D("1.000")), *readings, Reading(START + 2 * HOUR, D("1.012"))]
        assert hourly(use(readings), TZ, max_interval=HOUR) == {START: D("0.005"), START + HOUR: D("0.007")}

    @pytest.mark.parametrize(
        "changes",
        [
            {"night_start": time(5), "night_end": time(2)},
            {"night_start": time(2, 30)},
            {"night_nights": 0},
            {"spike_percentile": 0},
        ],
    )
    def test_defaults_are_validated(self, changes: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"night|count|percentile"):
            replace(DEFAULTS, **changes)

    def test_defaults_match_the_domain_table(self) -> None:
        assert (DEFAULTS.vacant_consecutive, DEFAULTS.reverse_per_day, DEFAULTS.night_nights) == (2, D("0.1"), 3)
        assert (DEFAULTS.night_min_flow, DEFAULTS.leak_flow, DEFAULTS.continuous_for) == (
            D(10),
            D(30),
            timedelta(days=1),
        )
        assert (DEFAULTS.spike_factor, DEFAULTS.spike_percentile, DEFAULTS.stuck_for) == (D(3), 95, timedelta(days=7))
        assert DEFAULTS.balance_loss == D("0.15")
