"""run_simulation against a real Mosquitto on a free loopback port (skipped when there is none)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators import run_simulation
from simulators.run import RunStats
from tests.simulators.conftest import ESTATE_FILE

pytestmark = pytest.mark.broker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        if os.environ.get("STEWARD_REQUIRE_MOSQUITTO") == "1":
            pytest.fail("mosquitto not found and STEWARD_REQUIRE_MOSQUITTO=1")
        pytest.skip("no mosquitto binary")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    # The test's Python subscriber can fall behind on a loaded machine; Mosquitto's default
    # queue limit (1,000 per client) would then silently drop QoS 1 messages meant for it.
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_run_publishes_every_frame_and_gets_every_ack(mosquitto: int) -> None:
    received: list[str] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-test-sub")
    sub.on_message = lambda c, u, m: received.append(m.topic)
    sub.connect("127.0.0.1", mosquitto)
    sub.subscribe("steward/+/up/+/+", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    progress: list[RunStats] = []
    try:
        stats = run_simulation(
            ESTATE_FILE,
            "127.0.0.1",
            mosquitto,
            seed=3,
            speed=0,
            duration_s=3600,
            window=50,
            scenarios=["malformed", "duplicates"],
            on_progress=progress.append,
        )
        deadline = time.monotonic() + 20
        while len(received) < stats.published and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert stats.frames.total > 2000
    assert stats.published == stats.acked == stats.frames.total
    assert stats.drained
    assert not stats.stopped
    assert stats.max_in_flight <= 50
    assert stats.frames.by_expect["dead_letter"] >= 10
    assert len(received) >= stats.published
    assert progress
    assert progress[-1] is stats


def test_stop_event_ends_an_unbounded_realtime_run(mosquitto: int) -> None:
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    stats = run_simulation(ESTATE_FILE, "127.0.0.1", mosquitto, seed=1, speed=1, stop_event=stop)
    assert time.monotonic() - started < 5
    assert stats.stopped
