"""Issue 9 #8: Steward's MQTT client over TLS, against the shipped configuration's TLS listener (8883) with a
throwaway CA made by the test (tests/support/deploy_broker.make_certs) and client certificates required."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from tests.conftest import require_mosquitto
from tests.e2e.test_broker_acl import Client
from tests.support.deploy_broker import DeployBroker, deploy_broker
from worker.outbox import MqttPublisher

pytestmark = pytest.mark.broker
PLATFORM, PLATFORM_PW = "steward-platform", "platform-pw"
DEVICE, DEVICE_PW = "DEV-A", "a-pw"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[DeployBroker]:
    broker = deploy_broker(
        require_mosquitto(),
        tmp_path / "broker",
        devices={DEVICE: DEVICE_PW},
        platform={PLATFORM: PLATFORM_PW},
        require_certificate=True,
    ).start()
    yield broker
    broker.kill()


def settings(broker: DeployBroker, **tls: Path | None) -> Settings:
    assert broker.tls_port is not None
    files = {"mqtt_tls_ca_file": broker.certs.ca, **{f"mqtt_tls_{k}": v for k, v in tls.items()}}
    return Settings(
        mqtt_url=f"mqtts://127.0.0.1:{broker.tls_port}", mqtt_username=DEVICE, mqtt_password=DEVICE_PW, **files
    )


def connects(s: Settings) -> MqttPublisher | None:
    pub = MqttPublisher.from_settings(s).start()
    if pub.wait_connected(5):
        return pub
    pub.stop()
    return None


def test_steward_publishes_over_tls_with_a_client_certificate(tls_broker: DeployBroker) -> None:
    platform = Client(tls_broker.platform_port, PLATFORM, PLATFORM_PW)
    platform.subscribe("steward/+/up/#")
    certs = tls_broker.certs
    pub = connects(settings(tls_broker, cert_file=certs.client_cert, key_file=certs.client_key))
    assert pub is not None, "no TLS connection with the CA's client certificate"
    assert pub.publish_batch([("steward/e1/up/DEV-A/telemetry", b"over tls")], timeout=5) == [True]
    time.sleep(0.3)
    pub.stop()
    assert platform.received == [("steward/e1/up/DEV-A/telemetry", b"over tls")]
    platform.close()


def test_tls_refuses_missing_or_foreign_certificates(tls_broker: DeployBroker) -> None:
    certs = tls_broker.certs
    # No client certificate, where the listener requires one.
    assert connects(settings(tls_broker)) is None
    # A self-signed client certificate with the right name but not from the CA.
    assert connects(settings(tls_broker, cert_file=certs.rogue_cert, key_file=certs.rogue_key)) is None
    # The broker's certificate checked against a CA that did not sign it: our side refuses the broker.
    wrong_ca = settings(tls_broker, cert_file=certs.client_cert, key_file=certs.client_key).model_copy(
        update={"mqtt_tls_ca_file": certs.rogue_cert}
    )
    assert connects(wrong_ca) is None


def test_plain_mqtt_is_not_spoken_on_the_tls_listener(tls_broker: DeployBroker) -> None:
    assert tls_broker.tls_port is not None
    plain = Client(tls_broker.tls_port, DEVICE, DEVICE_PW)
    assert not plain.connected.is_set()
    plain.close()


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    assert Settings(mqtt_url="mqtts://broker").mqtt_host_port == ("broker", 8883)
    with pytest.raises(ValidationError, match="go together"):
        Settings(mqtt_url="mqtts://broker:8883", mqtt_tls_cert_file=ca)
    with pytest.raises(ValidationError, match="not mqtts"):
        Settings(mqtt_url="mqtt://broker:1883", mqtt_tls_ca_file=ca)
    with pytest.raises(ValidationError, match="no such file"):
        Settings(mqtt_url="mqtts://broker:8883", mqtt_tls_ca_file=tmp_path / "missing.crt")


def test_ingest_consumes_over_the_platform_tls_listener(fresh_database: str, tmp_path: Path) -> None:
    """`steward run ingest` with STEWARD_MQTT_URL=mqtts://… and the throwaway CA: every acked frame stored."""
    from sqlalchemy import create_engine

    from tests.support.estate import load_small_estate
    from tests.support.ingest_process import IngestProcess
    from tests.support.oracle import judge, telemetry_traffic, wait_quiescent
    from tests.support.publisher import OraclePublisher

    device = "TLSI-S0000"
    broker = deploy_broker(
        require_mosquitto(), tmp_path / "broker", devices={device: "d-pw"}, platform={PLATFORM: PLATFORM_PW}
    ).start()
    try:
        assert broker.platform_tls_port is not None
        load_small_estate(create_engine(fresh_database), "tlsi", sensors=1)
        ingest = IngestProcess(
            fresh_database,
            f"mqtts://127.0.0.1:{broker.platform_tls_port}",
            tmp_path / "logs",
            STEWARD_MQTT_USERNAME=PLATFORM,
            STEWARD_MQTT_PASSWORD=PLATFORM_PW,
            STEWARD_MQTT_TLS_CA_FILE=str(broker.certs.ca),
        ).start()
        items = list(telemetry_traffic("tlsi", devices=1, frames=200))
        pub = OraclePublisher("127.0.0.1", broker.device_port, client_id=device, username=device, password="d-pw")
        pub.publish_all(items)
        pub.drain()
        pub.close()
        engine = create_engine(fresh_database)
        wait_quiescent(engine, acked=pub.log.acked, timeout=60)
        verdict = judge(engine, pub.log.acked, {k for k, _, _ in items})
        engine.dispose()
        ingest.stop()
    finally:
        broker.kill()
    assert verdict.acked == 200
    assert (verdict.lost, verdict.duplicated, verdict.unexpected) == ([], [], [])
