"""A platform-side client drives a running simulated door controller through a real Mosquitto: whitelist
commands are applied and acked, a gap is refused, an offline controller hears nothing and reports on
reconnect, and its list survives a kill and restart of the simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core import clock
from protocol.payloads import AckV1, StatusV1, SwipeV1, command_wire, decode_uplink
from protocol.topics import Channel, downlink, parse_uplink
from protocol.whitelist import (
    WHITELIST,
    WHITELIST_REPORT,
    WhitelistEntryV1,
    whitelist_delta,
    whitelist_digest,
    whitelist_report_command,
    whitelist_snapshot,
)
from simulators import run_simulation
from simulators.controls import DoorControls
from simulators.doors import Whitelist
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from tests.simulators.test_door_whitelist import CTL, TINY_DOORS

pytestmark = pytest.mark.broker
A, B = "0A0A0A0A", "0B0B0B0B"


def _wait(what: str, cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class Platform:
    """The platform's side of the wire: publishes commands as the outbox dispatcher does, collects uplinks."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[Channel, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="door-test-platform")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("steward/doors/up/+/+", qos=1)
        self.client.loop_start()

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        channel = parse_uplink(m.topic).channel
        (obj,) = decode_uplink(channel, bytes(m.payload))  # exactly what ingest accepts
        with self._lock:
            self._seen.append((channel, obj))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def send(self, command: str, body: dict[str, Any], command_id: str) -> None:
        wire = command_wire(body, command_id=command_id, issued_at=None, expires_at=None)
        self.client.publish(downlink("doors", CTL, command), wire, qos=1).wait_for_publish(5)

    def ack(self, command_id: str) -> AckV1 | None:
        with self._lock:
            found = [o for ch, o in self._seen if ch == Channel.ack and o.command_id == command_id]
        return found[-1] if found else None

    def reports(self) -> list[StatusV1]:
        with self._lock:
            return [o for ch, o in self._seen if ch == Channel.status and o.whitelist is not None]

    def swipes(self, card: str) -> list[SwipeV1]:
        with self._lock:
            return [o for ch, o in self._seen if ch == Channel.swipe and o.card == card]


@pytest.fixture
def platform(mosquitto: MosquittoProcess) -> Iterator[Platform]:
    p = Platform(mosquitto.port)
    time.sleep(0.3)  # subscribed before the simulator's start report
    yield p
    p.close()


class Sim:
    """One run of the simulator in a thread (a process, as far as the broker can tell)."""

    def __init__(self, estate: Path, port: int, kept: dict[str, Whitelist], controls: DoorControls) -> None:
        self.stop = threading.Event()
        self.progress: list[RunStats] = []
        self.thread = threading.Thread(
            target=run_simulation,
            args=(estate, "127.0.0.1", port),
            kwargs={
                "seed": 2,
                "speed": 1,  # realtime: the controller lives on the wall clock, like a real one
                "stop_event": self.stop,
                "on_progress": self.progress.append,
                "client_id": "door-test-sim",
                "initial_cards": False,
                "whitelists": kept,
                "controls": controls,
            },
            name="door-sim",
        )
        self.thread.start()
        _wait(
            "the simulator's downlink subscription",
            lambda: bool(self.progress) and self.progress[-1].commands.subscribed > 0,
        )

    def kill(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def entry(uid: str) -> WhitelistEntryV1:
    return WhitelistEntryV1(uid=uid, doors=("1-1-main",))


def test_a_platform_drives_a_live_controller_over_mosquitto(
    mosquitto: MosquittoProcess, platform: Platform, tmp_path: Path
) -> None:
    estate = tmp_path / "doors.yaml"
    estate.write_text(TINY_DOORS)
    kept: dict[str, Whitelist] = {}
    controls = DoorControls()
    now = clock.now
    sim = Sim(estate, mosquitto.port, kept, controls)
    try:
        _wait("the connect report", lambda: len(platform.reports()) >= 1)
        first = platform.reports()[0].whitelist
        assert first is not None
        assert (first.version, first.entries, first.digest) == (0, 0, whitelist_digest([]))

        (snap,) = whitelist_snapshot(command_id="x", issued_at=now(), expires_at=None, version=1, entries=[entry(A)])
        platform.send(WHITELIST, snap, "101")
        gap = whitelist_delta(command_id="x", issued_at=now(), expires_at=None, version=3, base_version=2, remove=[A])
        platform.send(WHITELIST, gap, "102")
        step = whitelist_delta(
            command_id="x", issued_at=now(), expires_at=None, version=2, base_version=1, upsert=[entry(B)], remove=[A]
        )
        platform.send(WHITELIST, step, "103")
        _wait("the three acks", lambda: all(platform.ack(c) for c in ("101", "102", "103")))
        acks = {c: platform.ack(c) for c in ("101", "102", "103")}
        assert {c: (a.status, a.acl_version, a.reason) for c, a in acks.items() if a} == {
            "101": ("applied", 1, None),
            "102": ("rejected", 1, "version_gap"),
            "103": ("applied", 2, None),
        }
        held = acks["103"].whitelist if acks["103"] else None
        assert held is not None
        assert held.digest == whitelist_digest([entry(B)])

        controls.present(CTL, A)  # revoked by v2
        controls.present(CTL, B)
        _wait("both swipes", lambda: platform.swipes(A) and platform.swipes(B))
        assert [(s.granted, s.reason) for s in platform.swipes(A)] == [(False, "unknown")]
        assert [(s.granted, s.reason) for s in platform.swipes(B)] == [(True, None)]

        # Offline: it hears nothing; back online it reports what it holds, so the platform can resend.
        controls.disconnect(CTL)
        time.sleep(1.5)
        reports_before = len(platform.reports())
        missed = whitelist_delta(
            command_id="x", issued_at=now(), expires_at=None, version=3, base_version=2, remove=[B]
        )
        platform.send(WHITELIST, missed, "104")
        time.sleep(2)
        assert platform.ack("104") is None
        controls.reconnect(CTL)
        _wait("the reconnect report", lambda: len(platform.reports()) > reports_before)
        back = platform.reports()[-1].whitelist
        assert back == held  # still v2: the platform must send v3 again
        platform.send(WHITELIST, {**missed}, "105")
        _wait("the resent delta's ack", lambda: platform.ack("105") is not None)
        resent = platform.ack("105")
        assert resent is not None
        assert (resent.status, resent.acl_version) == ("applied", 3)

        controls.tamper(CTL, upsert=[entry(A)])  # behind the platform's back
        platform.send(
            WHITELIST_REPORT, whitelist_report_command(command_id="x", issued_at=now(), expires_at=None), "106"
        )
        _wait("the report", lambda: platform.ack("106") is not None)
        tampered = platform.ack("106")
        assert tampered is not None
        assert tampered.whitelist is not None
        assert tampered.whitelist.version == 3
        assert tampered.whitelist.digest == whitelist_digest([entry(A)]) != whitelist_digest([])
    finally:
        sim.kill()

    # Kill and restart: the list is what a controller keeps; it reports it on connect.
    reports_before = len(platform.reports())
    sim = Sim(estate, mosquitto.port, kept, controls)
    try:
        _wait("the restart report", lambda: len(platform.reports()) > reports_before)
        restarted = platform.reports()[-1].whitelist
        assert restarted is not None
        assert (restarted.version, restarted.digest) == (3, whitelist_digest([entry(A)]))
        # The nightly reconcile's repair: a snapshot, here in parts (as a long list would go).
        repair = [entry(f"1000000{i}") for i in range(5)]
        bodies = whitelist_snapshot(
            command_id="x", issued_at=now(), expires_at=None, version=4, entries=repair, max_bytes=500
        )
        ids = [f"2{i:02d}" for i in range(len(bodies))]
        assert len(ids) >= 2
        for body, cid in zip(bodies, ids, strict=True):
            platform.send(WHITELIST, body, cid)
        _wait("the repair acks", lambda: all(platform.ack(c) for c in ids))
        answers = [platform.ack(c) for c in ids]
        assert [(a.status, a.reason, a.acl_version) for a in answers if a] == [("applied", "staged", 3)] * (
            len(ids) - 1
        ) + [("applied", None, 4)]
        repaired = answers[-1]
        assert repaired is not None
        assert repaired.whitelist is not None
        assert (repaired.whitelist.version, repaired.whitelist.digest) == (4, whitelist_digest(repair))
        expired = whitelist_delta(
            command_id="x",
            issued_at=now(),
            expires_at=now() - timedelta(seconds=1),
            version=5,
            base_version=4,
            upsert=[entry(B)],
        )
        platform.send(WHITELIST, expired, "108")
        _wait("the expired ack", lambda: platform.ack("108") is not None)
        assert platform.ack("108").status == "expired"  # type: ignore[union-attr]
    finally:
        sim.kill()
    assert kept[CTL].version == 4
    assert sim.progress[-1].door_commands.applied == len(ids)
