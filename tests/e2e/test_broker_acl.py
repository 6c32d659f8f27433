"""The shipped production broker configuration (deploy/mosquitto): credentials, %u ACLs, size limit.

An unauthorised publish is acknowledged and dropped by the broker, so every check is made at the
subscriber (reliability matrix S10, M13).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from steward.broker import free_port, wait_for_port
from tests.conftest import require_mosquitto

pytestmark = pytest.mark.broker
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
ACCOUNTS = {"steward-platform": "platform-pw", "DEV-A": "a-pw", "DEV-B": "b-pw"}


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[int]:
    binary = require_mosquitto()
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, pw in ACCOUNTS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/config/passwd", str(passwd)).replace("/mosquitto/config/acl", str(DEPLOY / "acl"))
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/") + "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")], stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


class Client:
    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.refused: object = None
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}-{time.monotonic_ns()}")
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.c.on_connect = self._on_connect
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.connected.wait(3)

    def _on_connect(self, c: mqtt.Client, u: object, f: object, reason: mqtt.ReasonCode, p: object) -> None:
        if reason.is_failure:
            self.refused = reason
        else:
            self.connected.set()

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        time.sleep(0.2)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(3)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_devices_write_only_their_own_uplink_and_read_only_their_own_downlink(production_broker: int) -> None:
    platform = Client(production_broker, "steward-platform", ACCOUNTS["steward-platform"])
    dev_a = Client(production_broker, "DEV-A", ACCOUNTS["DEV-A"])
    assert platform.connected.is_set()
    assert dev_a.connected.is_set()
    platform.subscribe("steward/+/up/#")
    dev_a.subscribe("steward/+/down/#")  # allowed only for its own downlink by the ACL

    dev_a.publish("steward/e1/up/DEV-A/telemetry", b"own")
    dev_a.publish("steward/e1/up/DEV-B/telemetry", b"forged")  # another device's topic
    platform.publish("steward/e1/down/DEV-A/valve", b"for-a")
    platform.publish("steward/e1/down/DEV-B/valve", b"for-b")
    time.sleep(0.5)

    assert platform.received == [("steward/e1/up/DEV-A/telemetry", b"own")]
    assert dev_a.received == [("steward/e1/down/DEV-A/valve", b"for-a")]
    for c in (platform, dev_a):
        c.close()


def test_anonymous_and_wrong_password_are_refused(production_broker: int) -> None:
    anonymous = Client(production_broker, None)
    wrong = Client(production_broker, "DEV-A", "not-the-password")
    assert not anonymous.connected.is_set()
    assert not wrong.connected.is_set()
    anonymous.close()
    wrong.close()


def test_oversized_message_is_refused_by_the_broker(production_broker: int) -> None:
    platform = Client(production_broker, "steward-platform", ACCOUNTS["steward-platform"])
    platform.subscribe("steward/+/up/#")
    dev_a = Client(production_broker, "DEV-A", ACCOUNTS["DEV-A"])
    dev_a.c.publish("steward/e1/up/DEV-A/telemetry", b"x" * 300_000, qos=1)
    time.sleep(0.5)
    assert platform.received == []
    platform.close()
    dev_a.close()
