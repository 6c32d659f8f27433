"""Each fault scenario produces what its name promises, on a deterministic device."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from protocol.estate_file import ExpandedEstate
from protocol.payloads import MeterReadingV1, PayloadError, StatusV1, TelemetryV1, decode_uplink
from protocol.topics import Channel, TopicError, parse_uplink
from simulators import SCENARIOS, Fleet, ScenarioSpec, parse_scenario
from simulators.frames import Frame
from simulators.meters import MeterModel
from simulators.scenarios import DEFAULT_ONSET
from tests.simulators.conftest import ESTATE_FILE, START, Run, registers

ACCEPT_PAST = timedelta(days=30)
ACCEPT_FUTURE = timedelta(minutes=5)


def decodes(frame: Frame) -> bool:
    try:
        decode_uplink(parse_uplink(frame.topic).channel, frame.payload)
    except (PayloadError, TopicError):
        return False
    return True


def meter(frame: Frame) -> MeterReadingV1:
    (reading,) = decode_uplink(Channel.meter, frame.payload)
    assert isinstance(reading, MeterReadingV1)
    return reading


def occupancy_of(expanded: ExpandedEstate, device: str) -> tuple[str, bool]:
    unit = next(d.unit for d in expanded.devices if d.spec.code == device)
    spec = next(u.spec for u in expanded.units if u.spec.code == unit)
    return spec.occupancy, spec.has_pv


def test_every_scenario_has_a_distinct_default_target(all_scenarios: Run) -> None:
    plans = all_scenarios.fleet.plans
    assert [p.name for p in plans] == list(SCENARIOS)
    assert len({p.device for p in plans}) == len(plans)
    assert all(p.onset == START + DEFAULT_ONSET for p in plans)


def test_targets_do_not_depend_on_seed_or_selection(all_scenarios: Run) -> None:
    alone = Fleet.from_file(ESTATE_FILE, seed=99, start=START, scenarios=["late"])
    assert alone.plan("late").device == all_scenarios.fleet.plan("late").device


def test_labels_match_wire_validity(all_scenarios: Run) -> None:
    for f in all_scenarios.frames:
        assert decodes(f) == (f.expect != "dead_letter"), (f.scenario, f.tags)
    counts = {e: sum(f.expect == e for f in all_scenarios.frames) for e in ("dead_letter", "quarantine", "duplicate")}
    assert all(counts.values()), counts


def test_only_selected_scenarios_shape_frames() -> None:
    fleet = Fleet.from_file(ESTATE_FILE, seed=1, start=START, scenarios=["rollover"])
    scenarios = {f.scenario for f in fleet.frames(timedelta(hours=2))}
    assert scenarios == {None, "rollover"}


def test_spike(all_scenarios: Run) -> None:
    device = all_scenarios.fleet.plan("spike").device
    frames = all_scenarios.of(device, "meter")
    i = next(i for i, f in enumerate(frames) if f.scenario == "spike")
    deltas = [meter(b).reading - meter(a).reading for a, b in itertools.pairwise(frames)]
    jump = deltas[i - 1]
    others = [d for j, d in enumerate(deltas) if j != i - 1]
    assert jump >= 2
    assert jump > 3 * max(others)
    assert frames[i].expect == "store"


def test_stale_sensor_goes_silent(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("stale_sensor")
    frames = all_scenarios.of(plan.device)
    assert frames
    assert all(f.at < plan.onset for f in frames)
    assert len(frames) >= 0.9 * DEFAULT_ONSET.total_seconds() / 60  # it was reporting before


def test_rollover_wraps(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("rollover")
    frames = all_scenarios.of(plan.device, "meter")
    i = next(i for i, f in enumerate(frames) if "rollover" in f.tags)
    prev, curr = meter(frames[i - 1]).reading, meter(frames[i]).reading
    register_max = next(d.spec.register_max for d in all_scenarios.fleet.expanded.devices if d.spec.code == plan.device)
    assert register_max is not None
    assert prev >= register_max * 9 / 10  # domain-defaults §3: previous ≥ 90 % of register_max
    assert curr < prev
    consumption = register_max - prev + curr + Decimal("0.01")  # max → 0 is one resolution step too
    assert 0 < consumption < 2
    assert datetime.fromisoformat(json.loads(frames[i].payload)["ts"]) >= plan.onset
    assert [meter(f).reading for f in frames[i:]] == sorted(meter(f).reading for f in frames[i:])


def test_meter_replacement_restarts_near_zero(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("meter_replacement")
    frames = all_scenarios.of(plan.device, "meter")
    i = next(i for i, f in enumerate(frames) if f.scenario == "meter_replacement")
    old, new = meter(frames[i - 1]).reading, meter(frames[i]).reading
    assert old > 10
    assert new < 1
    meta = frames[i].meta_dict()
    assert meta["serial"] != meta["old_serial"]
    after = [meter(f).reading for f in frames[i:]]
    assert after == sorted(after)


def test_reverse_flow_on_a_non_pv_unit(all_scenarios: Run, expanded: ExpandedEstate) -> None:
    plan = all_scenarios.fleet.plan("reverse_flow")
    assert occupancy_of(expanded, plan.device) == ("occupied", False)
    readings = [(f, meter(f)) for f in all_scenarios.of(plan.device, "meter")]
    before = [r for f, r in readings if f.scenario is None]
    after = [r for f, r in readings if f.scenario == "reverse_flow"]
    assert before
    assert len(after) >= 8
    assert all(r.reverse_register == 0 and not r.flags for r in before)
    reverse = [r.reverse_register or Decimal(0) for r in after]
    assert reverse == sorted(reverse)
    assert reverse[-1] > reverse[0] + Decimal("0.1")
    assert all("reverse_power" in r.flags for r in after)
    assert len({r.reading for r in after}) == 1  # the forward register stands still


def test_vacant_flow(all_scenarios: Run, baseline_day: Run, expanded: ExpandedEstate) -> None:
    plan = all_scenarios.fleet.plan("vacant_flow")
    assert occupancy_of(expanded, plan.device)[0] == "vacant"
    values = [meter(f).reading for f in all_scenarios.of(plan.device, "meter")]
    steps = [b - a for a, b in itertools.pairwise(values)]
    rising = [s >= Decimal("0.001") for s in steps]
    assert any(a and b for a, b in itertools.pairwise(rising))  # 2 consecutive readings
    assert all(
        s == 0 for s, f in zip(steps, all_scenarios.of(plan.device, "meter")[1:], strict=False) if f.at < plan.onset
    )
    # Without the scenario the same flat uses nothing all day.
    normal = registers(baseline_day.meter_series()[plan.device])
    assert normal[0] == normal[-1]


def test_malformed_payloads_all_fail_decoding(all_scenarios: Run) -> None:
    frames = all_scenarios.tagged("malformed")
    tags = {f.tags[1] for f in frames}
    assert {"truncated_json", "register_number", "nan_token", "non_utf8", "deep_nesting", "unknown_channel"} <= tags
    for f in frames:
        assert f.expect == "dead_letter"
        assert not decodes(f), f.tags
        assert f.device == all_scenarios.fleet.plan("malformed").device
    non_utf8 = next(f for f in frames if "non_utf8" in f.tags)
    with pytest.raises(UnicodeDecodeError):
        non_utf8.payload.decode()


def test_duplicates_are_identical_resends(all_scenarios: Run) -> None:
    frames = all_scenarios.tagged("duplicates")
    originals = [f for f in frames if "original" in f.tags]
    assert len(originals) == 3
    for original in originals:
        copies = [f for f in frames if f.payload == original.payload and f is not original]
        assert 2 <= len(copies) <= 5
        assert all(c.expect == "duplicate" and c.at > original.at for c in copies)
        assert original.expect == "store"


def test_out_of_order_swaps_pairs(all_scenarios: Run) -> None:
    frames = all_scenarios.tagged("out_of_order")
    assert len(frames) == 6
    for overtaking, overtaken in zip(frames[::2], frames[1::2], strict=True):
        assert "overtaking" in overtaking.tags
        assert "overtaken" in overtaken.tags
        assert meter(overtaken).ts < meter(overtaking).ts
        assert meter(overtaken).seq < meter(overtaking).seq  # type: ignore[operator]
        assert all_scenarios.frames.index(overtaken) > all_scenarios.frames.index(overtaking)


def test_late_reading_is_hours_old(all_scenarios: Run) -> None:
    (frame,) = all_scenarios.tagged("late")
    age = frame.at - meter(frame).ts
    assert timedelta(hours=2) <= age < timedelta(hours=3)
    assert frame.expect == "store"
    assert age < ACCEPT_PAST


def test_bad_time_is_outside_the_acceptance_window(all_scenarios: Run) -> None:
    frames = all_scenarios.tagged("bad_time")
    assert [f.tags[-1] for f in frames] == ["far_future", "far_past", "no_timezone"]
    for f in frames:
        assert f.expect == "quarantine"
        (reading,) = decode_uplink(Channel.telemetry, f.payload)
        assert isinstance(reading, TelemetryV1)
        if reading.ts.tzinfo is None:
            continue
        assert not f.at - ACCEPT_PAST <= reading.ts <= f.at + ACCEPT_FUTURE


def test_unknown_device(all_scenarios: Run, expanded: ExpandedEstate) -> None:
    plan = all_scenarios.fleet.plan("unknown_device")
    assert plan.device not in {d.spec.code for d in expanded.devices}
    frames = all_scenarios.of(plan.device)
    assert len(frames) >= 10
    assert all(f.expect == "quarantine" and decodes(f) for f in frames)


def test_transformer_overheat(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("transformer_overheat")
    series = []
    for f in all_scenarios.of(plan.device):
        (reading,) = decode_uplink(Channel.telemetry, f.payload)
        assert isinstance(reading, TelemetryV1)
        hottest = max(float(v) for m, v in reading.values.items() if m.startswith("winding_temp"))
        series.append((reading.ts, hottest, reading.values["fan_on"]))
    before = [h for ts, h, _ in series if ts < plan.onset]
    assert max(before) < 110
    crossed_155 = next(ts for ts, h, _ in series if h > 155)
    assert crossed_155 - plan.onset < timedelta(hours=1, minutes=30)
    assert max(h for _, h, _ in series) > 170
    assert all(fan for _, h, fan in series if h >= 110)


def test_parse_scenario() -> None:
    assert parse_scenario("rollover") == ScenarioSpec("rollover")
    assert parse_scenario("spike:HW-1-1-101@2h") == ScenarioSpec("spike", "HW-1-1-101", timedelta(hours=2))
    assert parse_scenario("late@900") == ScenarioSpec("late", None, timedelta(seconds=900))
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_scenario("meteor_strike")


def test_explicit_device_and_onset() -> None:
    fleet = Fleet.from_file(ESTATE_FILE, start=START, scenarios=["spike:HW-2-2-1101@1h"])
    assert fleet.plan("spike").device == "HW-2-2-1101"
    assert fleet.plan("spike").onset == START + timedelta(hours=1)
    (frame,) = [f for f in fleet.frames(timedelta(hours=2)) if f.scenario == "spike"]
    assert meter(frame).ts == START + timedelta(hours=1)


def test_explicit_device_must_fit_the_scenario() -> None:
    with pytest.raises(ValueError, match="cannot target"):
        Fleet.from_file(ESTATE_FILE, start=START, scenarios=["rollover:TR1"])


def test_hot_tap(all_scenarios: Run, baseline_day: Run, expanded: ExpandedEstate) -> None:
    """An occupied flat's hot water rises by at least the tap's 60 L/h on top of the household's own use."""
    plan = all_scenarios.fleet.plan("hot_tap")
    assert plan.device.startswith("HW-")
    assert occupancy_of(expanded, plan.device)[0] == "occupied"
    after = [meter(f) for f in all_scenarios.of(plan.device, "meter") if f.at >= plan.onset]
    steps = [b.reading - a.reading for a, b in itertools.pairwise(after)]
    assert len(steps) >= 4
    assert all(s >= Decimal("0.015") for s in steps), steps  # 15 min × 60 L/h, at least


def _status_volts(frames: list[Frame]) -> list[tuple[datetime, float]]:
    out = []
    for f in frames:
        (reading,) = decode_uplink(Channel.status, f.payload)
        assert isinstance(reading, StatusV1)
        assert reading.battery_v is not None
        out.append((f.at, reading.battery_v))
    return out


def test_battery_meters_report_their_voltage_every_6_hours(baseline_day: Run) -> None:
    volts = _status_volts(baseline_day.of("CW-1-1-101", "status"))
    assert len(volts) == 4  # one local day: 00:00, 06:00, 12:00, 18:00 UTC boundaries
    assert {v for _, v in volts} == {3.6}
    assert baseline_day.of("E-1-1-101", "status") == []  # mains-powered: no voltage to report


def test_dying_battery_sags_below_the_low_level(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("dying_battery")
    assert plan.device.startswith("CW-")
    model = all_scenarios.fleet.entries[plan.device].model
    assert isinstance(model, MeterModel)
    assert model.battery_at(plan.onset) == (3.6, "dying_battery")
    assert model.battery_at(plan.onset + timedelta(hours=2)) == (3.2, "dying_battery")
    assert model.battery_at(plan.onset + timedelta(hours=9)) == (3.0, "dying_battery")  # exhausted, no lower


def test_cold_day_lowers_outdoors_and_raises_every_supply(all_scenarios: Run) -> None:
    plan = all_scenarios.fleet.plan("cold_day")
    assert plan.device == "HS1-OT"

    def values(device: str, metric: str, at: datetime) -> float:
        [f] = [f for f in all_scenarios.of(device, "telemetry") if at <= f.at < at + timedelta(seconds=60)][:1]
        (reading,) = decode_uplink(Channel.telemetry, f.payload)
        assert isinstance(reading, TelemetryV1)
        return float(reading.values[metric])

    before, after = plan.onset - timedelta(minutes=5), plan.onset + timedelta(minutes=40)
    assert values("HS1-OT", "outdoor_temp_c", after) < values("HS1-OT", "outdoor_temp_c", before) - 13
    overshoot = all_scenarios.fleet.plan("supply_overshoot").device
    other = ({"HS1-HX1", "HS1-HX2"} - {overshoot}).pop()
    assert values(other, "secondary_supply_temp_c", after) > values(other, "secondary_supply_temp_c", before) + 3
