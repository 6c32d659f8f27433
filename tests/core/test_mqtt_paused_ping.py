"""core.mqtt_buffered's read pause (ingest at Receive Maximum) still lets a keepalive ping be answered: paho counts
only bytes received as a sign of life, so a pause longer than the keepalive (a commit stalled on a locked table,
reliability matrix M8) would otherwise drop a healthy connection. End to end: tests/e2e/test_faults_matrix.py."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.mqtt_buffered import BufferedClient, BufferedSocket
from tests.core.test_mqtt_buffered import PINGRESP, ScriptedSocket, publish_packet


def paused_client(pieces: list[bytes]) -> tuple[BufferedClient, ScriptedSocket, list[bytes]]:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    got: list[bytes] = []

    def on_message(c: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        got.append(bytes(m.payload))

    client.on_message = on_message
    raw = ScriptedSocket(pieces)
    client._sock = BufferedSocket(raw)  # type: ignore[assignment]
    client.read_paused = lambda: True  # at Receive Maximum for good: the commit never returns
    return client, raw, got


def test_paused_reads_nothing_while_no_ping_is_out() -> None:
    message = publish_packet(b"steward/e/up/D/telemetry", b"{}", qos=1, mid=1, dup=False, retain=False, mqtt5=True)
    client, raw, got = paused_client([message])
    client._ping_t = 0
    client.loop_read()
    assert got == []
    assert not raw.drained()  # TCP pushes back on the broker


def test_an_outstanding_ping_is_read_through_to_its_pingresp_then_the_pause_holds() -> None:
    messages = [
        publish_packet(b"steward/e/up/D/telemetry", b"%d" % i, qos=1, mid=i, dup=False, retain=False, mqtt5=True)
        for i in range(1, 4)
    ]
    after = publish_packet(b"steward/e/up/D/telemetry", b"after", qos=1, mid=9, dup=False, retain=False, mqtt5=True)
    # The broker had sent three messages before it answered our PINGREQ; one more after.
    client, raw, got = paused_client([b"".join(messages), PINGRESP, after])
    client._ping_t = 1.0  # a PINGREQ awaits its answer
    for _ in range(10):
        client.loop_read()
        if client._ping_t == 0:
            break
    assert client._ping_t == 0  # answered: paho will not call the broker dead
    assert got == [b"1", b"2", b"3"]  # what stood in front of the PINGRESP, handed on as usual (and unacked)
    client.loop_read()
    assert got == [b"1", b"2", b"3"]  # paused again
    assert not raw.drained()
