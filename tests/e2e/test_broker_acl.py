"""The shipped production broker configuration (deploy/mosquitto): credentials, %u ACLs, size limit.

An unauthorised publish is acknowledged and dropped by the broker, so every check is made at the
subscriber (reliability matrix S10, M13).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import require_mosquitto
from tests.support.deploy_broker import DeployBroker, deploy_broker

pytestmark = pytest.mark.broker
PLATFORM = "steward-platform"
ACCOUNTS = {PLATFORM: "platform-pw", "DEV-A": "a-pw", "DEV-B": "b-pw"}


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[DeployBroker]:
    """Mosquitto with the shipped configuration: device listener, platform listener, TLS listener."""
    binary = require_mosquitto()
    broker = deploy_broker(
        binary,
        tmp_path / "broker",
        devices={k: v for k, v in ACCOUNTS.items() if k != PLATFORM},
        platform={PLATFORM: ACCOUNTS[PLATFORM]},
    )
    try:
        yield broker.start()
    finally:
        broker.kill()  # on failure too, and also when it never came up


@pytest.fixture
def production_broker(deployed: DeployBroker) -> int:
    """The device listener's port (devices' and simulators' side)."""
    return deployed.device_port


class Client:
    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.disconnects = 0
        self.refused: object = None
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"acl-{user}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        self.c.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
        self.c.loop_start()
        self.connected.wait(3)

    def _on_connect(self, c: mqtt.Client, u: object, f: object, reason: mqtt.ReasonCode, p: object) -> None:
        if reason.is_failure:
            self.refused = reason
        else:
            self.connected.set()

    def _on_disconnect(self, *args: object) -> None:
        self.disconnects += 1

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        time.sleep(0.2)

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(3)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_devices_write_only_their_own_uplink_and_read_only_their_own_downlink(
    deployed: DeployBroker, production_broker: int
) -> None:
    platform = Client(deployed.platform_port, "steward-platform", ACCOUNTS["steward-platform"])
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


def test_oversized_message_is_refused_by_the_broker(deployed: DeployBroker, production_broker: int) -> None:
    platform = Client(deployed.platform_port, "steward-platform", ACCOUNTS["steward-platform"])
    platform.subscribe("steward/+/up/#")
    dev_a = Client(production_broker, "DEV-A", ACCOUNTS["DEV-A"])
    dev_a.c.publish("steward/e1/up/DEV-A/telemetry", b"x" * 300_000, qos=1)
    time.sleep(0.5)
    assert platform.received == []
    platform.close()
    dev_a.close()


# --- issue 9 #2: client ids are tied to identities ------------------------------------------------------------


def test_a_device_using_the_platforms_client_id_does_not_take_over_its_session(deployed: DeployBroker) -> None:
    """On the device listener the client id is the username: a device connecting as "steward-ingest" is
    DEV-A to the broker, so ingest stays connected and keeps receiving."""
    ingest = Client(
        deployed.platform_port, PLATFORM, ACCOUNTS[PLATFORM], client_id="steward-ingest", clean_start=False,
        session_expiry_s=3600,
    )  # fmt: skip
    assert ingest.connected.is_set()
    ingest.subscribe("steward/+/up/#")
    for clean in (True, False):
        thief = Client(deployed.device_port, "DEV-A", ACCOUNTS["DEV-A"], client_id="steward-ingest", clean_start=clean)
        assert thief.connected.is_set()
        thief.subscribe("steward/#")
        thief.publish("steward/e1/up/DEV-A/telemetry", b"after-takeover-attempt")
        time.sleep(0.3)
        thief.close()
    assert ingest.disconnects == 0
    assert ingest.received == [("steward/e1/up/DEV-A/telemetry", b"after-takeover-attempt")] * 2
    assert thief.received == []
    ingest.close()


def test_device_and_platform_accounts_open_only_their_own_listener(deployed: DeployBroker) -> None:
    device_on_platform = Client(deployed.platform_port, "DEV-A", ACCOUNTS["DEV-A"], client_id="steward-ingest")
    platform_on_device = Client(deployed.device_port, PLATFORM, ACCOUNTS[PLATFORM])
    assert not device_on_platform.connected.is_set()
    assert not platform_on_device.connected.is_set()
    device_on_platform.close()
    platform_on_device.close()


# --- issue 9 #13: per-device ACL lines from the estate model --------------------------------------------------


def test_generated_acl_confines_each_device_to_its_own_estate(fresh_database: str, tmp_path: Path) -> None:
    """With the pattern ACL a device could publish under another estate's code; with `steward broker acl`
    each device writes only under its own estate and reads only its own downlink."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from facility.broker_acl import render_acl
    from tests.support.estate import load_small_estate

    engine = create_engine(fresh_database)
    load_small_estate(engine, "acla", sensors=1, meters=1)
    load_small_estate(engine, "aclb", sensors=1, meters=1)
    with Session(engine) as s:
        acl = render_acl(s, [("acla-gateway", "acla")])
    engine.dispose()
    assert "pattern" not in acl
    assert "user ACLA-S0000\ntopic write steward/acla/up/ACLA-S0000/#\ntopic read steward/acla/down/ACLA-S0000/#" in acl
    broker = deploy_broker(
        require_mosquitto(),
        tmp_path / "broker",
        devices={"ACLA-S0000": "a-pw", "acla-gateway": "gw-pw"},
        platform={PLATFORM: ACCOUNTS[PLATFORM]},
        acl_text=acl,
    ).start()
    try:
        platform = Client(broker.platform_port, PLATFORM, ACCOUNTS[PLATFORM])
        platform.subscribe("steward/+/up/#")
        dev = Client(broker.device_port, "ACLA-S0000", "a-pw")
        dev.subscribe("steward/+/down/#")
        gateway = Client(broker.device_port, "acla-gateway", "gw-pw")
        dev.publish("steward/acla/up/ACLA-S0000/telemetry", b"own estate")
        dev.publish("steward/aclb/up/ACLA-S0000/telemetry", b"another estate's code")
        gateway.publish("steward/acla/up/ACLA-M0000/meter", b"gateway, its estate")
        gateway.publish("steward/aclb/up/ACLB-M0000/meter", b"gateway, another estate")
        platform.publish("steward/acla/down/ACLA-S0000/valve", b"for it")
        platform.publish("steward/aclb/down/ACLA-S0000/valve", b"under another estate")
        time.sleep(0.5)
        assert sorted(platform.received) == [
            ("steward/acla/up/ACLA-M0000/meter", b"gateway, its estate"),
            ("steward/acla/up/ACLA-S0000/telemetry", b"own estate"),
        ]
        assert dev.received == [("steward/acla/down/ACLA-S0000/valve", b"for it")]
        for c in (platform, dev, gateway):
            c.close()
    finally:
        broker.kill()


def test_acl_refuses_codes_that_would_break_a_line(fresh_database: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from core.errors import InvalidInput
    from facility.broker_acl import render_acl
    from tests.support.estate import load_small_estate

    engine = create_engine(fresh_database)
    load_small_estate(engine, "aclc", sensors=1, meters=1)
    with engine.begin() as conn:
        conn.execute(text("UPDATE devices SET code = 'BAD #' WHERE code = 'ACLC-S0000'"))
    with Session(engine) as s, pytest.raises(InvalidInput):
        render_acl(s)
    with engine.begin() as conn:
        conn.execute(text("UPDATE devices SET code = 'ACLC-S0000' WHERE code = 'BAD #'"))
    with Session(engine) as s:
        assert "user ACLC-S0000" in render_acl(s)
        with pytest.raises(InvalidInput):
            render_acl(s, [("gw +", "aclc")])
    engine.dispose()


def test_negative_control_the_pattern_acl_lets_a_device_use_another_estates_code(deployed: DeployBroker) -> None:
    """Why the ACL is generated: the shipped fallback patterns (`steward/+/up/%u/#`) accept a device's publish
    under any estate's code (ingest then quarantines it into that estate's view)."""
    platform = Client(deployed.platform_port, PLATFORM, ACCOUNTS[PLATFORM])
    platform.subscribe("steward/+/up/#")
    dev_a = Client(deployed.device_port, "DEV-A", ACCOUNTS["DEV-A"])
    dev_a.publish("steward/other-estate/up/DEV-A/telemetry", b"under another estate")
    time.sleep(0.5)
    assert platform.received == [("steward/other-estate/up/DEV-A/telemetry", b"under another estate")]
    for c in (platform, dev_a):
        c.close()
