"""The decoder: raw MQTT messages → rows, dead letters and quarantined messages (no broker, no writes).

The registry is loaded from the real database with an estate of this module's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from ingest.decode import DEAD_LETTER_KEEP_BYTES, NO_CARD, AckRow, DecodedBatch, Decoder, Reason, WhitelistReport
from ingest.messages import RawMessage
from ingest.registry import DeviceRegistry
from protocol.topics import Channel
from tests.ingest.conftest import Estate, frame, new_estate_code, raw
from tests.support.clock import INSTANTS, pinned
from tests.support.estate import METRICS, load_small_estate

MAX = 4096
PAST, FUTURE = timedelta(days=30), timedelta(minutes=5)


@pytest.fixture(scope="module")
def estates(engine: Engine) -> tuple[Estate, Estate]:
    a, b = new_estate_code("idec"), new_estate_code("idec")
    load_small_estate(engine, a, sensors=3, meters=2)
    load_small_estate(engine, b, sensors=1, meters=1)
    return Estate(a, engine), Estate(b, engine)


@pytest.fixture(scope="module")
def est(estates: tuple[Estate, Estate]) -> Estate:
    return estates[0]


@pytest.fixture(scope="module")
def decoder(engine: Engine, estates: tuple[Estate, Estate]) -> Decoder:
    registry = DeviceRegistry()
    with engine.connect() as conn:
        registry.load(conn)
    return Decoder(registry, accept_past=PAST, accept_future=FUTURE, max_payload_bytes=MAX)


# The decoder judges a device's clock against the arrival time (RawMessage.received_at, which `raw` takes
# from core.clock): pinned here, so "now" is one fixed instant for every test of the module.
NOW = INSTANTS["sh-1200"].astimezone(UTC)


@pytest.fixture(autouse=True)
def _pinned_clock() -> Iterator[None]:
    with pinned(NOW):
        yield


def decode(decoder: Decoder, *messages: RawMessage) -> DecodedBatch:
    return decoder.decode(list(messages))


# --- good readings -------------------------------------------------------------------------------


def test_telemetry_frame_becomes_samples_at_device_time(decoder: Decoder, est: Estate) -> None:
    ts = NOW - timedelta(minutes=10)
    out = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), frame(ts, seq=7, base=30.0)))
    points = decoder.registry.get(est.sensor(0)).points  # type: ignore[union-attr]
    assert out.sample_ts == [ts] * len(METRICS)
    assert out.sample_point == [points[m] for m in METRICS]
    assert out.sample_value == [30.0 + i for i in range(len(METRICS))]
    assert (out.readings, out.messages, out.dead_letters, out.quarantined) == (len(METRICS), 1, [], [])
    assert out.seen == {est.device_id(est.sensor(0)): (ts, [7])}


def test_timestamp_forms_all_land_on_the_same_instant(decoder: Decoder, est: Estate) -> None:
    ts = NOW - timedelta(minutes=3)
    forms = [ts.isoformat(), ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), int(ts.timestamp() * 1000)]
    forms.append(ts.astimezone(timezone(timedelta(hours=-3, minutes=-30))).isoformat())
    for form in forms:
        out = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), frame(form)))
        assert set(out.sample_ts) == {ts}, form


def test_batch_payload_yields_every_frame(decoder: Decoder, est: Estate) -> None:
    frames = [frame(NOW - timedelta(seconds=60 - i), seq=i) for i in range(3)]
    out = decode(decoder, raw(est.topic(est.sensor(1), "telemetry"), {"v": 1, "batch": frames}))
    assert len(out.sample_ts) == 3 * len(METRICS)
    assert out.seen[est.device_id(est.sensor(1))] == (NOW - timedelta(seconds=58), [0, 1, 2])


def test_meter_reading_keeps_the_exact_register(decoder: Decoder, est: Estate) -> None:
    ts, received = NOW - timedelta(minutes=1), NOW
    body = {
        "v": 1,
        "ts": ts.isoformat(),
        "seq": 12,
        "register": "1234.567",
        "unit": "m3",
        "reverse_register": "0.100",
        "valve": "closed",
        "flags": ["reverse_flow", "low_battery"],
    }
    out = decode(decoder, raw(est.topic(est.meter(0), "meter"), body, received_at=received))
    assert out.meters == [
        (
            ts,
            est.device_id(est.meter(0)),
            Decimal("1234.567"),
            Decimal("0.100"),
            "closed",
            ["reverse_flow", "low_battery"],
            12,
            received,
        )
    ]
    assert isinstance(out.meters[0][2], Decimal)
    assert out.readings == 1


def test_meter_batch(decoder: Decoder, est: Estate) -> None:
    items = [
        {"v": 1, "ts": (NOW - timedelta(minutes=5 - i)).isoformat(), "register": f"10.00{i}", "unit": "kWh"}
        for i in range(3)
    ]
    out = decode(decoder, raw(est.topic(est.meter(1), "meter"), {"v": 1, "batch": items}))
    assert [m[2] for m in out.meters] == [Decimal("10.000"), Decimal("10.001"), Decimal("10.002")]


def test_swipe_status_and_ack(decoder: Decoder, est: Estate) -> None:
    ts, received = NOW - timedelta(seconds=5), NOW
    ctl = est.controller
    out = decode(
        decoder,
        raw(
            est.topic(ctl, "swipe"),
            {
                "v": 1,
                "ts": ts.isoformat(),
                "seq": 3,
                "door": "1-1-main",
                "card": "04a1b2c3",
                "granted": False,
                "reason": "not_in_acl",
            },
            received_at=received,
        ),
        raw(est.topic(ctl, "status"), {"v": 1, "ts": ts.isoformat(), "online": True, "battery_v": 3.4}),
        raw(est.topic(ctl, "ack"), {"v": 1, "command_id": "17", "status": "applied"}, received_at=received),
    )
    dev = est.device_id(ctl)
    assert out.swipes == [(ts, dev, "1-1-main", "04A1B2C3", False, "not_in_acl", 3, received)]
    assert out.statuses == [(dev, ts, True, 3.4)]
    assert out.acks == [AckRow("17", "applied", received, dev)]  # the device whose topic it came on
    assert out.whitelists == []  # no whitelist state in either frame
    assert out.readings == 1  # statuses and acks are not readings
    assert out.seen == {dev: (ts, [3])}


def test_door_events_are_stored_with_the_swipes_and_whitelist_reports_keep_decoding(
    decoder: Decoder, est: Estate
) -> None:
    ts, received = NOW - timedelta(seconds=5), NOW
    ctl = est.controller
    state = {"version": 8, "digest": "ab" * 32, "entries": 311}
    status = raw(est.topic(ctl, "status"), {"v": 1, "ts": ts.isoformat(), "online": True, "whitelist": state})
    out = decode(
        decoder,
        raw(
            est.topic(ctl, "door"),
            {"v": 1, "ts": ts.isoformat(), "seq": 4, "door": "1-1-main", "event": "held_open", "open_s": 120},
            received_at=received,
        ),
        status,
        raw(
            est.topic(ctl, "ack"),
            {
                "v": 1,
                "command_id": "18",
                "status": "rejected",
                "acl_version": 5,
                "reason": "version_gap",
                "whitelist": state,
            },
            received_at=received,
        ),
    )
    dev = est.device_id(ctl)
    # No card was presented: card_uid NO_CARD, never granted, the event as the reason.
    assert out.swipes == [(ts, dev, "1-1-main", NO_CARD, False, "held_open", 4, received)]
    assert out.statuses == [(dev, ts, True, None)]
    # The ack's answer with its reason and version, and both whitelist reports: the status's at its device time,
    # the ack's (no device time) at its arrival.
    assert out.acks == [AckRow("18", "rejected", received, dev, "version_gap", 5)]
    assert out.whitelists == [
        WhitelistReport(dev, 8, "ab" * 32, 311, ts, status.received_at, "status"),
        WhitelistReport(dev, 8, "ab" * 32, 311, received, received, "ack", command_id="18"),
    ]
    assert out.dead_letters == []
    assert out.quarantined == []


def test_a_quarantined_status_reports_no_whitelist_and_a_malformed_state_is_a_dead_letter(
    decoder: Decoder, est: Estate
) -> None:
    ctl, state = est.controller, {"version": 3, "digest": "cd" * 32, "entries": 2}
    too_old = NOW - PAST - timedelta(minutes=1)
    out = decode(
        decoder,
        raw(est.topic(ctl, "status"), {"v": 1, "ts": too_old.isoformat(), "online": True, "whitelist": state}),
        raw(
            est.topic(ctl, "status"),
            {"v": 1, "ts": NOW.isoformat(), "online": True, "whitelist": {**state, "digest": "XYZ"}},
        ),
        raw(est.topic(ctl, "ack"), {"v": 1, "command_id": "5", "status": "rejected", "reason": "Version Gap"}),
    )
    assert [q.reason for q in out.quarantined] == [Reason.ts_too_old]
    assert [d.error.split(":")[0] for d in out.dead_letters] == ["whitelist.digest", "reason"]
    assert (out.whitelists, out.acks, out.statuses) == ([], [], [])


def test_an_ack_without_a_state_reports_no_whitelist(decoder: Decoder, est: Estate) -> None:
    """A valve refusal: a bare status, no reason, no state."""
    meter = est.meter(0)
    out = decode(
        decoder, raw(est.topic(meter, "ack"), {"v": 1, "command_id": "9", "status": "rejected"}, received_at=NOW)
    )
    assert out.acks == [AckRow("9", "rejected", NOW, est.device_id(meter))]
    assert out.whitelists == []


# --- quarantine ----------------------------------------------------------------------------------


def _only_quarantine(out: DecodedBatch) -> tuple[str, str]:
    assert out.readings == 0
    assert out.statuses == []
    assert out.dead_letters == []
    assert len(out.quarantined) == 1
    q = out.quarantined[0]
    return q.reason, q.detail


def test_unknown_device_is_quarantined(decoder: Decoder, est: Estate) -> None:
    topic = est.topic(f"{est.code.upper()}-GHOST", "telemetry")
    msg = raw(topic, frame(NOW))
    out = decode(decoder, msg)
    assert _only_quarantine(out)[0] == Reason.unknown_device
    q = out.quarantined[0]
    assert (q.topic, q.device_code, q.payload, q.received_at) == (
        topic,
        f"{est.code.upper()}-GHOST",
        msg.payload,
        msg.received_at,
    )
    assert out.seen == {}


def test_unknown_codes_lists_devices_to_resolve(decoder: Decoder, est: Estate) -> None:
    msgs = [
        raw(est.topic(est.sensor(0), "telemetry"), b"{}"),
        raw(est.topic("NOPE-1", "telemetry"), b"{}"),
        raw(est.topic("NOPE-2", "meter"), b"{}"),
        raw("not/a/topic", b"{}"),
    ]
    assert decoder.unknown_codes(msgs) == {"NOPE-1", "NOPE-2"}


def test_device_on_another_estates_topic_is_quarantined(decoder: Decoder, estates: tuple[Estate, Estate]) -> None:
    a, b = estates
    out = decode(decoder, raw(b.topic(a.sensor(0), "telemetry"), frame(NOW)))
    reason, detail = _only_quarantine(out)
    assert reason == Reason.estate_mismatch
    assert a.code in detail
    assert b.code in detail


def test_unknown_metric_is_quarantined_and_known_ones_kept(decoder: Decoder, est: Estate) -> None:
    body = frame(NOW)
    body["values"]["humidity_pct"] = 40.0
    out = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), body))
    assert len(out.sample_ts) == len(METRICS)
    assert [q.reason for q in out.quarantined] == [Reason.unknown_metric]
    assert "humidity_pct" in out.quarantined[0].detail


def test_meter_metrics_are_not_sensor_points(decoder: Decoder, est: Estate) -> None:
    # A meter has no telemetry points: any telemetry it sends is an unknown metric.
    out = decode(decoder, raw(est.topic(est.meter(0), "telemetry"), frame(NOW)))
    assert out.sample_ts == []
    assert [q.reason for q in out.quarantined] == [Reason.unknown_metric]


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2026-11-26T08:00:00", Reason.ts_without_timezone),
        ((NOW - PAST - timedelta(seconds=1)).isoformat(), Reason.ts_too_old),
        ((NOW - timedelta(days=365)).isoformat(), Reason.ts_too_old),
        (0, Reason.ts_too_old),
        ((NOW + FUTURE + timedelta(seconds=1)).isoformat(), Reason.ts_in_future),
        ((NOW + timedelta(days=3650)).isoformat(), Reason.ts_in_future),
    ],
)
@pytest.mark.parametrize("channel", ["telemetry", "meter", "swipe", "status"])
def test_timestamp_outside_window_is_quarantined(
    decoder: Decoder, est: Estate, ts: str | int, reason: str, channel: str
) -> None:
    bodies = {
        "telemetry": (est.sensor(0), frame(ts)),
        "meter": (est.meter(0), {"v": 1, "ts": ts, "register": "1.000", "unit": "m3"}),
        "swipe": (est.controller, {"v": 1, "ts": ts, "door": "1-1-main", "card": "ABCD", "granted": True}),
        "status": (est.controller, {"v": 1, "ts": ts, "online": True}),
    }
    device, body = bodies[channel]
    msg = raw(est.topic(device, channel), body, received_at=NOW)
    out = decode(decoder, msg)
    assert _only_quarantine(out)[0] == reason
    assert out.quarantined[0].payload == msg.payload
    assert out.quarantined[0].received_at == NOW
    assert out.seen == {}


def test_window_edges_are_accepted(decoder: Decoder, est: Estate) -> None:
    out = decode(
        decoder,
        raw(est.topic(est.sensor(0), "telemetry"), frame(NOW - PAST), received_at=NOW),
        raw(est.topic(est.sensor(1), "telemetry"), frame(NOW + FUTURE), received_at=NOW),
        raw(est.topic(est.sensor(2), "telemetry"), frame(NOW - timedelta(days=29, hours=23)), received_at=NOW),
    )
    assert out.quarantined == []
    assert len(out.sample_ts) == 3 * len(METRICS)


def test_window_is_judged_against_arrival_not_now(decoder: Decoder, est: Estate) -> None:
    # A batch retried long after it arrived (database outage) keeps readings that were fresh on arrival.
    arrived = NOW - timedelta(days=40)
    out = decode(
        decoder, raw(est.topic(est.sensor(0), "telemetry"), frame(arrived - timedelta(hours=1)), received_at=arrived)
    )
    assert out.quarantined == []
    assert len(out.sample_ts) == len(METRICS)


def test_bad_items_of_a_batch_are_quarantined_one_by_one(decoder: Decoder, est: Estate) -> None:
    items = [
        frame(NOW - timedelta(seconds=3), seq=1),
        frame("2026-11-26T08:00:00", seq=2),
        frame(NOW + timedelta(days=1), seq=3),
        frame(NOW - timedelta(seconds=1), seq=4),
    ]
    out = decode(decoder, raw(est.topic(est.sensor(2), "telemetry"), {"v": 1, "batch": items}))
    assert len(out.sample_ts) == 2 * len(METRICS)
    assert [(q.reason, q.detail.split(":")[0]) for q in out.quarantined] == [
        (Reason.ts_without_timezone, "item 1"),
        (Reason.ts_in_future, "item 2"),
    ]
    assert out.seen[est.device_id(est.sensor(2))] == (NOW - timedelta(seconds=1), [1, 4])


def test_ack_from_unknown_device_is_quarantined(decoder: Decoder, est: Estate) -> None:
    out = decode(decoder, raw(est.topic("NOPE-9", "ack"), {"v": 1, "command_id": "1", "status": "applied"}))
    assert [q.reason for q in out.quarantined] == [Reason.unknown_device]
    assert out.acks == []


# --- dead letters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b"\xff\xfe\xfd", "Invalid JSON"),
        (b"[" * 500 + b"]" * 500, "recursion limit"),
        (b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{"winding_temp_a_c":NaN}}', "finite"),
        (b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{"winding_temp_a_c":"hot"}}', "values.winding_temp_a_c"),
        (b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","seq":"abc","values":{"load_pct":1}}', "seq"),
        (b'{"v":1,"ts":100000000000000000000,"values":{"load_pct":1}}', "ts"),
        (b'{"v":2,"ts":"2026-11-26T08:00:00+08:00","values":{"load_pct":1}}', "v: Input should be 1"),
        (b"", "Invalid JSON"),
    ],
)
def test_malformed_payload_is_dead_lettered_with_raw_bytes(
    decoder: Decoder, est: Estate, payload: bytes, reason: str
) -> None:
    msg = raw(est.topic(est.sensor(0), "telemetry"), payload)
    out = decode(decoder, msg)
    assert out.readings == 0
    assert out.quarantined == []
    assert len(out.dead_letters) == 1
    d = out.dead_letters[0]
    assert (d.topic, d.payload, d.received_at) == (msg.topic, payload, msg.received_at)
    assert reason in d.error


def test_meter_register_as_float_is_dead_lettered(decoder: Decoder, est: Estate) -> None:
    payload = json.dumps({"v": 1, "ts": NOW.isoformat(), "register": 1234.567, "unit": "m3"}).encode()
    out = decode(decoder, raw(est.topic(est.meter(0), "meter"), payload))
    assert out.meters == []
    assert [d.payload for d in out.dead_letters] == [payload]
    assert "register must be a decimal string" in out.dead_letters[0].error


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("steward/x/up/DEV/firmware", "unknown channel 'firmware'"),
        ("steward/x/down/DEV/acl", "not an uplink topic"),
        ("steward/x/up/DEV", "not an uplink topic"),
    ],
)
def test_bad_topic_is_dead_lettered(decoder: Decoder, topic: str, reason: str) -> None:
    msg = raw(topic, frame(NOW))
    out = decode(decoder, msg)
    assert [(d.topic, d.payload) for d in out.dead_letters] == [(topic, msg.payload)]
    assert reason in out.dead_letters[0].error
    assert (out.readings, out.quarantined) == (0, [])


def test_oversized_payload_is_dead_lettered_and_truncated(decoder: Decoder, est: Estate) -> None:
    body = frame(NOW)
    body["pad"] = "x" * 10_000
    payload = json.dumps(body).encode()
    out = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), payload))
    assert out.readings == 0
    assert len(out.dead_letters) == 1
    d = out.dead_letters[0]
    assert d.payload == payload[:DEAD_LETTER_KEEP_BYTES]
    assert d.error.startswith(f"payload too large: {len(payload)} bytes > limit {MAX}")


def test_payload_at_the_limit_is_decoded(decoder: Decoder, est: Estate) -> None:
    body = frame(NOW)
    payload = json.dumps(body).encode()
    payload = payload[:-1] + b" " * (MAX - len(payload)) + b"}"  # JSON whitespace up to exactly MAX bytes
    assert len(payload) == MAX
    out = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), payload))
    assert out.dead_letters == []
    assert len(out.sample_ts) == len(METRICS)
    over = decode(decoder, raw(est.topic(est.sensor(0), "telemetry"), payload + b" "))
    assert over.readings == 0
    assert len(over.dead_letters) == 1


def test_one_bad_message_does_not_spoil_the_batch(decoder: Decoder, est: Estate) -> None:
    out = decode(
        decoder,
        raw(est.topic(est.sensor(0), "telemetry"), frame(NOW - timedelta(seconds=2))),
        raw(est.topic(est.sensor(0), "telemetry"), b"garbage"),
        raw(est.topic("NOPE-3", "telemetry"), frame(NOW)),
        raw(est.topic(est.sensor(1), "telemetry"), frame(NOW - timedelta(seconds=1))),
    )
    assert out.messages == 4
    assert len(out.sample_ts) == 2 * len(METRICS)
    assert len(out.dead_letters) == 1
    assert len(out.quarantined) == 1


# --- property: every message is accounted for, nothing raises ------------------------------------

TOPICS = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda e, d, c: f"steward/{e}/up/{d}/{c}",
        st.sampled_from(["x", "e"]),
        st.sampled_from(["NOPE", "DEV"]),
        st.sampled_from([c.value for c in Channel] + ["other"]),
    ),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    topic=TOPICS,
    payload=st.binary(max_size=200) | JSONISH.map(lambda v: json.dumps(v).encode()),
    known=st.booleans(),
    channel=st.sampled_from([c.value for c in Channel]),
)
def test_every_message_is_accounted_for(
    decoder: Decoder, est: Estate, topic: str, payload: bytes, known: bool, channel: str
) -> None:
    if known:  # aim some at real devices, so decoding goes past the registry
        device = {"telemetry": est.sensor(0), "meter": est.meter(0)}.get(channel, est.controller)
        topic = est.topic(device, channel)
    out = decode(decoder, raw(topic, payload))
    accounted = out.readings + len(out.statuses) + len(out.acks) + len(out.dead_letters) + len(out.quarantined)
    assert accounted >= 1
    for d in out.dead_letters:
        assert d.payload == payload
        assert d.error
