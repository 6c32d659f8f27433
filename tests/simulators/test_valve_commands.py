"""Valve commands: a meter obeys close/open (unit level) and a live run answers them over a real broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core import clock
from protocol.payloads import decode_uplink
from protocol.topics import Channel, downlink
from simulators import Fleet, Frame, run_simulation
from simulators.commands import CommandCounts, CommandInbox, Inbound, ValveController
from simulators.meters import MeterModel
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from tests.simulators.conftest import ESTATE_FILE, START

TINY_ESTATE = """\
estate: {code: tiny, name: Tiny, timezone: Asia/Shanghai}
buildings:
  - {code: "1", name: B1, floors: 1, entrances: 1, units_per_floor: 2, vacant: [1-1-101]}
unit_meters:
  - {kind: cold_water_meter, code: "CW-{unit}", register_max: "99999.999", resolution: "0.001",
     has_valve: true, expected_interval_s: 60}
  - {kind: electricity_meter, code: "E-{unit}", register_max: "999999.99", resolution: "0.01",
     expected_interval_s: 60}
"""
LEAKING = "CW-1-1-101"  # the vacant flat's cold water meter, leaking from the start


def command(command_id: str, action: str = "close", *, expires_in: timedelta = timedelta(hours=1)) -> bytes:
    """A command shaped like tickets/from_alarms.py + worker/outbox.encode put it on the wire."""
    now = clock.now()
    body = {
        "v": 1,
        "action": action,
        "reason": "vacant_flow",
        "ticket": "GD20261126-0001",
        "command_id": command_id,
        "issued_at": now.isoformat(),
        "expires_at": (now + expires_in).isoformat(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def meter_payloads(frames: list[Frame], device: str) -> list[dict[str, Any]]:
    return [json.loads(f.payload) for f in frames if f.device == device and f.channel == "meter"]


# --- unit level ---------------------------------------------------------------------------------


@pytest.fixture
def leaking_fleet(tmp_path: Path) -> Fleet:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_ESTATE)
    return Fleet.from_file(path, seed=5, start=START, scenarios=[f"vacant_flow:{LEAKING}@0s"])


def test_closed_valve_stops_the_leak_and_reopening_resumes_it(leaking_fleet: Fleet) -> None:
    fleet = leaking_fleet
    meter = fleet.entries[LEAKING].model
    assert isinstance(meter, MeterModel)
    assert meter.has_valve
    step = timedelta(seconds=30)
    before = meter_payloads(list(fleet.frames(timedelta(minutes=10), step)), LEAKING)
    regs = [Decimal(p["register"]) for p in before]
    assert all(p["valve"] == "open" for p in before)
    assert regs[-1] > regs[1]  # 60 L/h = 1 L a minute: the register rises

    closed_at = fleet.now + timedelta(seconds=10)  # mid-interval: that interval books a sixth of its flow
    assert meter.set_valve(closed_at, is_open=False) == closed_at
    assert not meter.valve_open_at(closed_at)
    during = list(fleet.frames(timedelta(minutes=30), step))
    readings = meter_payloads(during, LEAKING)
    after_close = [p for p in readings if datetime.fromisoformat(p["ts"]) >= closed_at]
    assert len(after_close) >= 15
    assert all(p["valve"] == "closed" for p in after_close)
    assert len({p["register"] for p in after_close}) == 1  # flat: nothing flows behind a closed valve
    closed_frames = [f for f in during if f.device == LEAKING and json.loads(f.payload)["valve"] == "closed"]
    assert all("valve_closed" in f.tags and f.scenario != "vacant_flow" for f in closed_frames[1:])
    assert all(decode_uplink(Channel.meter, f.payload) for f in closed_frames)
    flat = Decimal(after_close[0]["register"])
    assert flat > regs[-1]  # the 10 s before the close still flowed into the first closed reading's interval

    reopened_at = fleet.now
    meter.set_valve(reopened_at, is_open=True)
    resumed = meter_payloads(list(fleet.frames(timedelta(minutes=45), step)), LEAKING)
    later = [p for p in resumed if datetime.fromisoformat(p["ts"]) > reopened_at]
    assert later
    assert all(p["valve"] == "open" for p in later)
    assert Decimal(later[-1]["register"]) >= flat + Decimal("0.010")  # ~1 L a minute again


def test_no_command_leaves_the_frames_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_ESTATE)

    def frames() -> list[Frame]:
        fleet = Fleet.from_file(path, seed=5, start=START, scenarios=[f"vacant_flow:{LEAKING}@0s"])
        return list(fleet.frames(timedelta(hours=1)))

    first = frames()
    assert first == frames()
    assert all(json.loads(f.payload)["valve"] == "open" for f in first if f.device == LEAKING)


def test_controller_answers_every_kind_of_command(leaking_fleet: Fleet) -> None:
    fleet = leaking_fleet
    list(fleet.frames(timedelta(minutes=5)))
    counts = CommandCounts()
    wall = clock.now()
    controller = ValveController(fleet, counts, wall=lambda: wall)
    at = fleet.now

    def handle(device: str, payload: bytes) -> tuple[str | None, dict[str, Any] | None]:
        outcome, ack = controller.handle(Inbound(device, payload), at)
        if ack is None:
            return outcome.status, None
        assert ack.topic == f"steward/tiny/up/{device}/ack"
        decode_uplink(Channel.ack, ack.payload)  # what ingest will accept
        return outcome.status, json.loads(ack.payload)

    assert handle(LEAKING, command("7")) == ("applied", {"v": 1, "command_id": "7", "status": "applied"})
    meter = fleet.entries[LEAKING].model
    assert isinstance(meter, MeterModel)
    assert not meter.valve_open_at(at)
    # At-least-once delivery: the same command again is answered again but not re-applied.
    assert handle(LEAKING, command("7", "open"))[0] == "applied"
    assert not meter.valve_open_at(at)
    assert handle(LEAKING, command("8", expires_in=timedelta(seconds=-1)))[0] == "expired"
    assert handle("E-1-1-101", command("9"))[0] == "rejected"  # no valve
    assert handle(LEAKING, b'{"v":1,"command_id":"10","action":"explode"}')[0] == "rejected"
    assert (
        handle(LEAKING, b'{"v":2,"command_id":"11","issued_at":"2026-11-26T08:00:00+08:00","action":"close"}')[0]
        == "rejected"
    )
    assert handle(LEAKING, b"\xff not json")[0] is None  # nothing to name in an ack
    assert handle(LEAKING, b'{"command_id":"bad id with spaces"}')[0] is None
    assert handle("CW-9-9-999", command("12"))[0] is None  # not ours to answer
    assert handle(LEAKING, command("13", "open"))[0] == "applied"
    assert meter.valve_open_at(at)
    assert counts == CommandCounts(
        received=10, applied=2, rejected=3, expired=1, duplicates=1, ignored=3, dropped=0, acks=7, subscribed=0
    )


def test_the_demo_estates_vacant_flow_meter_obeys(tmp_path: Path) -> None:
    """examples/estate.yaml: the meter vacant_flow picks has a valve, and closing it stops the flow."""
    fleet = Fleet.from_file(ESTATE_FILE, seed=7, start=START, scenarios=["vacant_flow@0s"])
    device = fleet.plan("vacant_flow").device
    list(fleet.frames(timedelta(hours=1), timedelta(minutes=5)))
    controller = ValveController(fleet, CommandCounts())
    outcome, ack = controller.handle(Inbound(device, command("1")), fleet.now)
    assert outcome.status == "applied"
    assert ack is not None
    closed_at = fleet.now
    later = [
        p
        for p in meter_payloads(list(fleet.frames(timedelta(hours=3), timedelta(minutes=5))), device)
        if datetime.fromisoformat(p["ts"]) > closed_at  # the reading at closed_at was taken before the command
    ]
    assert len(later) >= 4
    assert {p["valve"] for p in later} == {"closed"}
    assert len({p["register"] for p in later}) == 1


class _EarlySubackClient:
    """A client whose broker answers the SUBSCRIBE on the network thread before ``subscribe()`` returns its mid
    (it happens with paho's background loop on a fast broker)."""

    def __init__(self) -> None:
        self.on_connect: Any = None
        self.on_message: Any = None
        self.on_subscribe: Any = None
        self.network: threading.Thread | None = None

    def is_connected(self) -> bool:
        return True

    def subscribe(self, topic: str, qos: int = 0) -> tuple[int, int]:
        ok = type("Reason", (), {"is_failure": False})()
        self.network = threading.Thread(target=self.on_subscribe, args=(self, None, 7, [ok], None))
        self.network.start()
        self.network.join(0.2)  # the SUBACK is handled now, while subscribe() has not returned yet
        return 0, 7


def test_a_suback_before_subscribe_returns_still_counts() -> None:
    counts = CommandCounts()
    client = _EarlySubackClient()
    CommandInbox("tiny", counts).attach(client)
    assert client.network is not None
    client.network.join(5)
    assert counts.subscribed == 1


# --- against a real Mosquitto ----------------------------------------------------------------------


def _wait(what: str, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.broker
def test_live_run_closes_the_valve_and_acks(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    estate = tmp_path / "tiny.yaml"
    estate.write_text(TINY_ESTATE)
    lock = threading.Lock()
    received: list[tuple[str, bytes]] = []

    def on_message(c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with lock:
            received.append((m.topic, bytes(m.payload)))

    def acks() -> dict[str, str]:
        with lock:
            return {json.loads(p)["command_id"]: json.loads(p)["status"] for t, p in received if t.endswith("/ack")}

    def readings() -> list[dict[str, Any]]:
        with lock:
            return [json.loads(p) for t, p in received if t == f"steward/tiny/up/{LEAKING}/meter"]

    platform = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="valve-test-platform")
    platform.on_message = on_message
    platform.connect("127.0.0.1", mosquitto.port)
    platform.subscribe("steward/tiny/up/+/+", qos=1)
    platform.loop_start()
    stop = threading.Event()
    progress: list[RunStats] = []
    result: list[RunStats] = []

    def run() -> None:
        # 120× realtime over the last day: a 60 s meter reading every half second of wall time.
        result.append(
            run_simulation(
                estate,
                "127.0.0.1",
                mosquitto.port,
                seed=5,
                speed=120,
                scenarios=[f"vacant_flow:{LEAKING}@0s"],
                stop_event=stop,
                on_progress=progress.append,
                client_id="valve-test-sim",
            )
        )

    sim = threading.Thread(target=run, name="sim")
    sim.start()
    try:
        _wait("the simulator's downlink subscription", lambda: bool(progress) and progress[-1].commands.subscribed > 0)
        _wait("the leak to show", lambda: len({r["register"] for r in readings()}) >= 3)
        assert all(r["valve"] == "open" for r in readings())

        def send(device: str, payload: bytes) -> None:
            platform.publish(downlink("tiny", device, "valve"), payload, qos=1).wait_for_publish(5)

        send(LEAKING, b"{ not json")  # must not crash the run
        send("E-1-1-101", command("101"))  # no valve
        send(LEAKING, command("102", expires_in=timedelta(seconds=-5)))
        send(LEAKING, command("103"))
        _wait("the acks", lambda: len(acks()) >= 3)
        assert acks() == {"101": "rejected", "102": "expired", "103": "applied"}

        # Readings frozen before the close may still be on their way (modules upload late): judge by ts.
        _wait("closed readings", lambda: sum(r["valve"] == "closed" for r in readings()) >= 4)
        series = sorted(readings(), key=lambda r: r["ts"])
        first_closed = next(i for i, r in enumerate(series) if r["valve"] == "closed")
        closed = series[first_closed:]
        assert all(r["valve"] == "closed" for r in closed)
        assert len({r["register"] for r in closed}) == 1  # the flow stopped
        assert Decimal(closed[0]["register"]) > Decimal(series[0]["register"])  # and it had been flowing

        send(LEAKING, command("104", "open"))
        _wait("the reopen ack", lambda: acks().get("104") == "applied")
        flat = Decimal(closed[0]["register"])
        _wait(
            "the flow to resume",
            lambda: any(r["valve"] == "open" and Decimal(r["register"]) > flat for r in readings()),
        )
    finally:
        stop.set()
        sim.join(10)
        platform.loop_stop()
        platform.disconnect()
    assert not sim.is_alive()
    stats = result[0]
    assert stats.commands.received == 5
    assert stats.commands.applied == 2
    assert (stats.commands.rejected, stats.commands.expired, stats.commands.ignored) == (1, 1, 1)
    assert stats.commands.acks == 4
    assert stats.frames.by_channel["ack"] == 4
