"""MqttSource's PUBACK bookkeeping, including a broker that reuses packet ids still in flight
(Mosquitto < 2.0.13): an id is acked only once every message under it is committed, and then once
per message, so the broker's in-flight entries all go."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest

from core.settings import Settings
from ingest.health import Health
from ingest.messages import RawMessage
from ingest.source import MqttSource


@pytest.fixture
def source() -> Any:
    src = MqttSource(Settings(env="testing"), Health())
    sent: list[list[int]] = []
    src._send_pubacks = lambda ids: sent.append(list(ids))  # type: ignore[method-assign]
    src._connection = src._generations = 1
    src.sent = sent  # type: ignore[attr-defined]
    return src


def deliver(src: MqttSource, mid: int, payload: bytes = b"{}") -> RawMessage:
    msg = mqtt.MQTTMessage(mid, b"steward/v1/e/x/d/y/telemetry")
    msg.payload, msg.qos = payload, 1
    src._on_message(src.client, None, msg)
    return src.queue.get_nowait()


def test_each_committed_message_is_acked_once_in_order(source: Any) -> None:
    batch = [deliver(source, mid) for mid in (5, 6, 7)]
    assert source.ack(batch) == 3
    assert source.sent == [[5, 6, 7]]


def test_a_reused_id_is_acked_when_its_last_message_commits_once_per_message(source: Any) -> None:
    first = deliver(source, 9)
    second = deliver(source, 9)  # the broker reused 9 while the first was unacked
    assert source.health.counters.broker_id_reuse == 1
    assert source.ack([first]) == 0  # acking now could retire `second`, not yet committed
    assert source.sent == []
    assert source.ack([second]) == 2
    assert source.sent == [[9, 9]]
    assert not source._pending
    assert not source._deferred


def test_messages_of_an_earlier_connection_are_not_acked(source: Any) -> None:
    old = deliver(source, 3)
    source._on_connect(source.client, None, type("F", (), {"session_present": True})(), _Ok(), None)
    assert source.ack([old]) == 0  # the broker redelivers it on this connection under a new id
    assert source.sent == []


class _Ok:
    is_failure = False


def test_reading_pauses_at_receive_maximum_and_resumes_on_ack(source: Any) -> None:
    limit = source.options.receive_maximum
    paused = source.client.read_paused
    batch = [deliver(source, 1 + i % 65_535) for i in range(limit)]
    assert paused()
    source.ack(batch[:10])
    assert not paused()
    for mid in range(60_001, 60_011):
        deliver(source, mid)
    assert paused()
    source._on_disconnect(source.client, None, None, None, None)
    assert not paused()  # the reconnect's CONNACK must be read
