"""The normal (fault-free) behaviour of the fleet: deterministic, valid, realistic."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from protocol.estate_file import EstateFile, ExpandedEstate
from protocol.payloads import MeterReadingV1, SwipeV1, TelemetryV1, decode_uplink
from protocol.topics import parse_uplink
from simulators import Fleet
from simulators.frames import Frame
from tests.simulators.conftest import ESTATE_FILE, START, Run, registers

ISO_CST = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")


def digest(frames: list[Frame]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f"{f.at.isoformat()}|{f.topic}|{f.expect}|".encode() + f.payload + b"\n")
    return h.hexdigest()


def run(seed: int, hours: float = 2, step: timedelta = timedelta(minutes=1), **kw: object) -> list[Frame]:
    fleet = Fleet.from_file(ESTATE_FILE, seed=seed, start=START, **kw)  # type: ignore[arg-type]
    return list(fleet.frames(timedelta(hours=hours), step=step))


def test_same_seed_same_bytes() -> None:
    assert digest(run(5)) == digest(run(5))


def test_different_seed_different_traffic() -> None:
    assert digest(run(5)) != digest(run(6))


def test_tick_step_does_not_change_the_frames() -> None:
    reference = digest(run(5, step=timedelta(minutes=1)))
    assert digest(run(5, step=timedelta(seconds=7))) == reference
    assert digest(run(5, step=timedelta(minutes=20))) == reference


def test_bytes_do_not_depend_on_the_interpreter_hash_seed() -> None:
    code = (
        "import hashlib,sys; from datetime import *; from simulators import Fleet;"
        f"f=Fleet.from_file({str(ESTATE_FILE)!r}, seed=5, start=datetime(2026,11,25,16,tzinfo=UTC));"
        "h=hashlib.sha256();"
        "[h.update(x.topic.encode()+x.payload) for x in f.frames(timedelta(minutes=40))];"
        "print(h.hexdigest())"
    )
    root = Path(__file__).resolve().parents[2]
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": str(s)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for s in (1, 2)
    }
    assert len(outs) == 1


def test_frames_are_valid_and_in_send_order(baseline_day: Run, expanded: ExpandedEstate) -> None:
    codes = {d.spec.code for d in expanded.devices}
    previous = START
    for f in baseline_day.frames:
        topic = parse_uplink(f.topic)
        assert (topic.estate, topic.device, topic.channel.value) == ("lvyuan", f.device, f.channel)
        assert f.device in codes
        assert f.expect == "store"
        (reading,) = decode_uplink(topic.channel, f.payload)
        assert f.at >= previous
        previous = f.at
        ts = json.loads(f.payload)["ts"]
        assert ISO_CST.match(ts), ts
        assert reading.ts <= f.at  # type: ignore[union-attr]  # never a reading from the future


def test_every_simulated_device_reports(baseline_day: Run, expanded: ExpandedEstate) -> None:
    seen = {f.device for f in baseline_day.frames}
    assert seen == {d.spec.code for d in expanded.devices}


def test_seq_is_per_device_and_gapless(baseline_day: Run) -> None:
    seqs: dict[str, list[int]] = defaultdict(list)
    for f in baseline_day.frames:
        seqs[f.device].append(json.loads(f.payload)["seq"])
    for device, values in seqs.items():
        assert values == list(range(1, len(values) + 1)), device


def test_reporting_intervals(baseline_day: Run) -> None:
    meter = [datetime.fromisoformat(json.loads(f.payload)["ts"]) for f in baseline_day.of("E-1-1-101")]
    assert len(meter) == 96
    assert {b - a for a, b in itertools.pairwise(meter)} == {timedelta(minutes=15)}
    assert all(t.minute % 15 == 0 and t.second == 0 for t in meter)  # synchronised freeze times
    vfd = baseline_day.of("PUMP1-VFD")
    assert len(vfd) == 8640  # every 10 s


def test_epoch_ms_timestamps() -> None:
    frames = run(5, hours=0.5, ts_format="epoch_ms")
    assert frames
    for f in frames:
        ts = json.loads(f.payload)["ts"]
        assert isinstance(ts, int)
        assert ts % 1000 == 0
        decode_uplink(parse_uplink(f.topic).channel, f.payload)


def test_registers_monotonic_and_quantized(baseline_day: Run, expanded: ExpandedEstate) -> None:
    specs = {d.spec.code: d.spec for d in expanded.devices}
    for device, series in baseline_day.meter_series().items():
        spec = specs[device]
        assert spec.resolution is not None
        assert spec.register_max is not None
        exponent = spec.resolution.as_tuple().exponent
        values = registers(series)
        for value in values:
            assert value.as_tuple().exponent == exponent, (device, value)
            assert value % spec.resolution == 0
            assert 0 <= value <= spec.register_max
        assert values == sorted(values), device
        for p in series:
            MeterReadingV1.model_validate(p)


def _day_use(run: Run, prefix: str) -> dict[str, Decimal]:
    out = {}
    for device, series in run.meter_series().items():
        if device.startswith(prefix + "-") and "MASTER" not in device:
            values = registers(series)
            out[device.removeprefix(prefix + "-")] = values[-1] - values[0]
    return out


@pytest.mark.parametrize("prefix", ["E", "CW", "HW"])
def test_vacant_units_use_nothing(baseline_day: Run, expanded: ExpandedEstate, prefix: str) -> None:
    use = _day_use(baseline_day, prefix)
    vacant = [u.spec.code for u in expanded.units if u.spec.occupancy == "vacant"]
    assert vacant
    assert all(use[u] == 0 for u in vacant)


@pytest.mark.parametrize(
    ("prefix", "low", "high"),
    [("E", "5", "40"), ("CW", "0.12", "0.5"), ("HW", "0.04", "0.2")],  # per occupied flat per day, means
)
def test_occupied_units_use_plausible_amounts(
    baseline_day: Run, expanded: ExpandedEstate, prefix: str, low: str, high: str
) -> None:
    use = _day_use(baseline_day, prefix)
    occupied = [use[u.spec.code] for u in expanded.units if u.spec.occupancy == "occupied"]
    mean = sum(occupied) / len(occupied)
    assert Decimal(low) <= mean <= Decimal(high)
    assert all(v > 0 for v in occupied) if prefix == "E" else sum(v > 0 for v in occupied) > 0.95 * len(occupied)


def _hourly_share(run: Run, prefix: str) -> list[float]:
    by_hour = [Decimal(0)] * 24
    for device, series in run.meter_series().items():
        if not device.startswith(prefix + "-") or "MASTER" in device:
            continue
        for a, b in itertools.pairwise(series):
            end = datetime.fromisoformat(b["ts"])
            hour = (end - timedelta(minutes=1)).hour  # the interval ending at 08:00 belongs to 07:xx
            by_hour[hour] += Decimal(b["register"]) - Decimal(a["register"])
    total = sum(by_hour)
    return [float(h / total) for h in by_hour]


def test_hot_water_is_drawn_morning_and_evening(baseline_day: Run) -> None:
    share = _hourly_share(baseline_day, "HW")
    assert sum(share[6:9]) + sum(share[18:24]) > 0.7
    assert sum(share[1:5]) < 0.02  # the small hours are (almost) dry: no false leak alarms


def test_electricity_peaks_in_the_evening(baseline_day: Run) -> None:
    share = _hourly_share(baseline_day, "E")
    assert max(range(24), key=lambda h: share[h]) in range(18, 22)
    assert min(share) > 0.005  # fridges never stop


def test_building_master_balances_with_unit_meters(baseline_day: Run) -> None:
    cw = _day_use(baseline_day, "CW")
    series = baseline_day.meter_series()
    for b in "12345":
        values = registers(series[f"CW-MASTER-{b}"])
        master = values[-1] - values[0]
        subs = sum(v for unit, v in cw.items() if unit.startswith(f"{b}-"))
        assert subs < master < subs * Decimal("1.15"), b  # losses, but inside the 15 % alarm threshold


def test_pv_exports_only_where_installed(baseline_day: Run, expanded: ExpandedEstate) -> None:
    series = baseline_day.meter_series()
    pv = {u.spec.code for u in expanded.units if u.spec.has_pv}
    for unit in (u.spec.code for u in expanded.units):
        reverse = registers(series[f"E-{unit}"], "reverse_register")
        flagged = any("reverse_power" in p.get("flags", []) for p in series[f"E-{unit}"])
        if unit in pv:
            assert reverse[-1] > reverse[0]
            assert flagged
        else:
            assert reverse[-1] == reverse[0]
            assert not flagged


def test_sensor_values_stay_near_nominal(baseline_day: Run, estate_doc: EstateFile) -> None:
    points = {(d.code, p.metric): p for r in estate_doc.rooms for d in r.devices for p in d.points}
    seen: dict[tuple[str, str], list[float | bool]] = defaultdict(list)
    for f in baseline_day.frames:
        if f.channel == "telemetry":
            (reading,) = decode_uplink(parse_uplink(f.topic).channel, f.payload)
            assert isinstance(reading, TelemetryV1)
            assert set(reading.values) == {m for (d, m) in points if d == f.device}
            for metric, value in reading.values.items():
                seen[(f.device, metric)].append(value)
    for key, values in seen.items():
        spec = points[key]
        if spec.kind == "state":
            assert all(isinstance(v, bool) for v in values), key
            continue
        nums = [float(v) for v in values]
        mean = sum(nums) / len(nums)
        assert spec.nominal is not None
        assert abs(mean - spec.nominal) <= 0.1 * abs(spec.nominal) + 3 * (spec.noise or 0), key
    assert not any(seen[("TR1", "fan_on")])  # normal load stays well below the 110 °C fan threshold


def test_door_controllers_swipe_known_cards(baseline_day: Run) -> None:
    cards = baseline_day.fleet.cards()
    assert set(cards) == {f"AC-{b}-{e}" for b in "1234" for e in "12"} | {"AC-5-1"}
    swipes = [f for f in baseline_day.frames if f.channel == "swipe"]
    assert 500 < len(swipes) < 5000
    granted = 0
    for f in swipes:
        (s,) = decode_uplink(parse_uplink(f.topic).channel, f.payload)
        assert isinstance(s, SwipeV1)
        raw = json.loads(f.payload)["card"]
        assert raw == raw.upper()
        assert len(raw) == 8
        if s.granted:
            granted += 1
            assert s.card in {c.uid for c in cards[f.device]}
        else:
            assert s.reason in {"unknown", "expired"}  # the made-up list: visitors, former tenants
    assert granted > 0.9 * len(swipes)
    status = baseline_day.of("AC-1-1", "status")
    assert len(status) == 1 + 288  # the connect report, then a heartbeat every 300 s
    assert "report" in status[0].tags
    assert json.loads(status[0].payload)["whitelist"]["version"] == 0


def test_card_uids_do_not_depend_on_the_seed() -> None:
    a = Fleet.from_file(ESTATE_FILE, seed=1, start=START).cards()
    b = Fleet.from_file(ESTATE_FILE, seed=2, start=START).cards()
    assert a == b


def test_time_must_be_aware_and_move_forward() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Fleet.from_file(ESTATE_FILE, start=datetime(2026, 1, 1))  # noqa: DTZ001
    fleet = Fleet.from_file(ESTATE_FILE, start=START)
    fleet.tick(START + timedelta(minutes=5))
    with pytest.raises(ValueError, match="backwards"):
        fleet.tick(START)


def test_tick_returns_only_frames_due_by_now() -> None:
    fleet = Fleet.from_file(ESTATE_FILE, seed=3, start=START)
    now = START + timedelta(minutes=20)
    frames = fleet.tick(now)
    assert frames
    assert all(START <= f.at <= now for f in frames)
    assert fleet.tick(now) == []  # nothing twice
    later = fleet.tick(now + timedelta(minutes=1))
    assert all(now < f.at <= now + timedelta(minutes=1) for f in later)
