"""core.mqtt_buffered against stock paho: the same byte stream, cut anywhere, gives the same messages,
the same PUBACKs and the same errors; and through a real Mosquitto nothing is lost or reordered."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.mqtt import SessionOptions, connect_async, make_client
from core.mqtt_buffered import BufferedClient, BufferedSocket

PINGRESP = b"\xd0\x00"


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, *, qos: int, mid: int, dup: bool, retain: bool, mqtt5: bool, props: bytes = b"\x00"
) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if mqtt5:
        body += props
    body += payload
    command = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes([command]) + remaining_length(len(body)) + body


def user_property_bytes(key: str, value: str) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = (key, value)
    return bytes(props.pack())  # type: ignore[no-untyped-call]


class ScriptedSocket:
    """Hands out the stream in the given pieces, as a non-blocking socket would as data arrives."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = deque(p for p in pieces if p)
        self.sent = bytearray()

    def recv(self, bufsize: int) -> bytes:
        if not self.pieces:
            raise BlockingIOError
        head = self.pieces[0]
        if len(head) <= bufsize:
            self.pieces.popleft()
            return head
        self.pieces[0] = head[bufsize:]
        return head[:bufsize]

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def close(self) -> None:
        pass

    def drained(self) -> bool:
        return not self.pieces


def received_by(
    client_cls: type[mqtt.Client], pieces: list[bytes], *, mqtt5: bool, manual_ack: bool
) -> tuple[list[tuple[Any, ...]], bytes, MQTTErrorCode]:
    protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
    client = client_cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=manual_ack)
    got: list[tuple[Any, ...]] = []

    def on_message(c: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        props = m.properties.json() if m.properties is not None else {}  # type: ignore[no-untyped-call]
        got.append((m._topic, bytes(m.payload), m.qos, m.mid, m.dup, m.retain, props))

    client.on_message = on_message
    raw = ScriptedSocket(pieces)
    sock = BufferedSocket(raw) if client_cls is BufferedClient else raw  # type: ignore[arg-type]
    client._sock = sock  # type: ignore[assignment]
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    for _ in range(100_000):
        if raw.drained() and not (isinstance(sock, BufferedSocket) and sock.pending()):
            rc = client.loop_read()  # a last read meets EAGAIN, or finishes nothing
            break
        rc = client.loop_read()
        if rc:
            break
    return got, bytes(raw.sent), rc


packet_spec = st.fixed_dictionaries(
    {
        "topic": st.one_of(
            st.sampled_from([b"steward/v1/e/LY/d/PR1-T1/telemetry", b"a", b"x/\xff\xfe/bad-utf8"]),
            st.binary(min_size=1, max_size=40),
        ),
        # Large payloads (three-byte remaining length) are made, not drawn: hypothesis draws byte by byte.
        "payload": st.one_of(
            st.binary(max_size=300), st.integers(16_380, 16_400).map(lambda n: (b"0123456789abcdef" * 1100)[:n])
        ),
        "qos": st.integers(0, 1),
        "mid": st.integers(1, 65_535),
        "dup": st.booleans(),
        "retain": st.booleans(),
        "props": st.sampled_from([None, None, None, ("site", "绿苑")]),
        "ping_after": st.booleans(),
    }
)


def stream_of(specs: list[dict[str, Any]], mqtt5: bool) -> bytes:
    out = bytearray()
    for s in specs:
        props = user_property_bytes(*s["props"]) if (mqtt5 and s["props"]) else b"\x00"
        out += publish_packet(
            s["topic"],
            s["payload"],
            qos=s["qos"],
            mid=s["mid"],
            dup=s["dup"],
            retain=s["retain"],
            mqtt5=mqtt5,
            props=props,
        )
        if s["ping_after"]:
            out += PINGRESP
    return bytes(out)


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(packet_spec, min_size=1, max_size=25),
    points=st.lists(st.integers(0, 10**9), max_size=12),
    mqtt5=st.booleans(),
    manual_ack=st.booleans(),
)
def test_same_messages_acks_and_order_as_stock_paho(
    specs: list[dict[str, Any]], points: list[int], mqtt5: bool, manual_ack: bool
) -> None:
    stream = stream_of(specs, mqtt5)
    pieces = cut(stream, points)
    stock = received_by(mqtt.Client, pieces, mqtt5=mqtt5, manual_ack=manual_ack)
    buffered = received_by(BufferedClient, pieces, mqtt5=mqtt5, manual_ack=manual_ack)
    assert len(stock[0]) == len(specs)
    if mqtt5:  # the lean path gives properties=None where paho gives an empty Properties: both mean none
        assert [m[:6] for m in buffered[0]] == [m[:6] for m in stock[0]]
        assert [m[6] or {} for m in buffered[0]] == [m[6] or {} for m in stock[0]]
    else:
        assert buffered[0] == stock[0]
    assert buffered[1] == stock[1]  # the same PUBACKs, byte for byte
    assert buffered[2] == stock[2] == MQTTErrorCode.MQTT_ERR_SUCCESS


@pytest.mark.parametrize("mqtt5", [True, False])
@pytest.mark.parametrize("split", [None, 3, 7])
def test_a_malformed_publish_is_reported_as_paho_reports_it(mqtt5: bool, split: int | None) -> None:
    good = publish_packet(b"t/1", b"ok", qos=1, mid=7, dup=False, retain=False, mqtt5=mqtt5)
    # Topic length 200 in a 10-byte body.
    bad = bytes([0x32, 10]) + (200).to_bytes(2, "big") + b"abcdefgh"
    stream = good + bad + good
    pieces = [stream] if split is None else [stream[: len(good) + split], stream[len(good) + split :]]
    stock = received_by(mqtt.Client, pieces, mqtt5=mqtt5, manual_ack=True)
    buffered = received_by(BufferedClient, pieces, mqtt5=mqtt5, manual_ack=True)
    assert stock[2] == buffered[2] == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert [m[:6] for m in buffered[0]] == [m[:6] for m in stock[0]] == [(b"t/1", b"ok", 1, 7, False, False)]


def test_empty_topic_in_mqtt3_is_a_protocol_error_on_both() -> None:
    stream = publish_packet(b"", b"x", qos=0, mid=0, dup=False, retain=False, mqtt5=False)
    stock = received_by(mqtt.Client, [stream], mqtt5=False, manual_ack=True)
    buffered = received_by(BufferedClient, [stream], mqtt5=False, manual_ack=True)
    assert stock == buffered
    assert stock[2] == MQTTErrorCode.MQTT_ERR_PROTOCOL


def test_an_exception_in_on_message_propagates_unless_suppressed() -> None:
    stream = publish_packet(b"t", b"x", qos=0, mid=0, dup=False, retain=False, mqtt5=True) * 3
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    seen: list[bytes] = []

    def on_message(c: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        seen.append(m.payload)
        raise RuntimeError("boom")

    client.on_message = on_message
    client._sock = BufferedSocket(ScriptedSocket([stream]))  # type: ignore[arg-type,assignment]
    with pytest.raises(RuntimeError):
        client.loop_read()
    assert seen == [b"x"]
    client.suppress_exceptions = True
    client.loop_read()
    # Reading goes on. (Stock paho hands the message whose callback raised to the callback again on
    # the next read; so does this class when paho's reader had it, hence "at least".)
    assert len(seen) >= 3


def test_topic_callbacks_switch_the_lean_path_off() -> None:
    stream = publish_packet(b"a/b", b"1", qos=0, mid=0, dup=False, retain=False, mqtt5=True)
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    filtered: list[bytes] = []
    client.message_callback_add("a/#", lambda c, u, m: filtered.append(m.payload))
    client.on_message = lambda c, u, m: pytest.fail("paho gives a filtered message to its callback only")
    client._sock = BufferedSocket(ScriptedSocket([stream]))  # type: ignore[arg-type,assignment]
    client.loop_read()
    assert filtered == [b"1"]


def test_through_mosquitto_nothing_is_lost_or_reordered(mosquitto: Any) -> None:
    """60,000 QoS 1 messages of mixed sizes, some with properties, published while the buffered
    subscriber reads (auto-ack), then a second connection to collect anything left."""
    n = 60_000
    options = SessionOptions(client_id="buffered-sub", receive_maximum=1_000, manual_ack=False)
    sub = make_client(options)
    got: list[tuple[str, bytes]] = []
    subscribed, done = threading.Event(), threading.Event()

    def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
        c.subscribe("bench/#", qos=1)

    def on_message(c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        got.append((m.topic, bytes(m.payload)))
        if len(got) >= n:
            done.set()

    sub.on_connect = on_connect
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_message
    assert isinstance(sub, BufferedClient)
    connect_async(sub, "127.0.0.1", mosquitto.port, options)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="buffered-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1_000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("k", "v")
        expected = []
        for i in range(n):
            payload = (f"{i:06d}" * (1 + (i % 7) * 40)).encode()
            topic = f"bench/{i % 50}"
            expected.append((topic, payload))
            info = pub.publish(topic, payload, qos=1, properties=props if i % 97 == 0 else None)
            if i % 1000 == 999:
                info.wait_for_publish(30)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 60
        while not done.wait(0.5) and time.monotonic() < deadline:
            pass
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert len(got) == n
    # One publisher, so Mosquitto keeps its order per topic (and overall).
    assert got == expected
