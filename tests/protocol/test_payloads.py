"""The payload half of the wire contract (DESIGN.md §4): what ``decode_uplink`` accepts, and what it refuses.

Everything refused must be refused with a ``PayloadError`` (ingest turns it into a dead letter); any other
exception escaping ``decode_uplink`` would take the ingest loop down on one bad message (M12).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol.payloads import (
    MAX_BATCH,
    MAX_VALUES_PER_FRAME,
    AckV1,
    DoorEventV1,
    MeterReadingV1,
    PayloadError,
    StatusV1,
    SwipeV1,
    TelemetryV1,
    WhitelistStateV1,
    decode_uplink,
    encode,
)
from protocol.topics import Channel

TS = "2026-11-26T08:00:00+08:00"
TS_UTC = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def telemetry(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "seq": 41, "values": {"winding_temp_c": 88.2, "room_temp_c": 31.0}, **kw}


def meter(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "seq": 7, "register": "1234.567", "unit": "m3", **kw}


def swipe(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "seq": 3, "door": "3-1-main", "card": "04A1B2C3", "granted": False, **kw}


def status(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "online": True, "battery_v": 3.5, **kw}


def ack(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "command_id": "cmd-42", "status": "applied", "acl_version": 42, **kw}


def door(**kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": TS, "seq": 9, "door": "3-1-main", "event": "held_open", "open_s": 120, **kw}


BUILDERS = {
    Channel.telemetry: telemetry,
    Channel.meter: meter,
    Channel.swipe: swipe,
    Channel.status: status,
    Channel.ack: ack,
    Channel.door: door,
}


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def one(channel: Channel, obj: Any) -> Any:
    readings = decode_uplink(channel, raw(obj) if not isinstance(obj, bytes) else obj)
    assert len(readings) == 1
    return readings[0]


def refused(channel: Channel, payload: Any, match: str | None = None) -> str:
    with pytest.raises(PayloadError, match=match) as info:
        decode_uplink(channel, payload if isinstance(payload, bytes) else raw(payload))
    return str(info.value)


# --- the documented examples ---------------------------------------------------------------------


def test_design_examples_decode() -> None:
    t = one(Channel.telemetry, telemetry())
    assert isinstance(t, TelemetryV1)
    assert (t.ts, t.seq, t.values) == (TS_UTC, 41, {"winding_temp_c": 88.2, "room_temp_c": 31.0})

    m = one(Channel.meter, meter(reverse_register="0.000", valve="open", flags=["reverse_power"]))
    assert isinstance(m, MeterReadingV1)
    assert (m.reading, m.unit, m.reverse_register, m.valve, m.flags) == (
        Decimal("1234.567"),
        "m3",
        Decimal("0.000"),
        "open",
        ("reverse_power",),
    )

    s = one(Channel.swipe, swipe(reason="not_in_acl"))
    assert isinstance(s, SwipeV1)
    assert (s.door, s.card, s.granted, s.reason) == ("3-1-main", "04A1B2C3", False, "not_in_acl")

    st_ = one(Channel.status, status())
    assert isinstance(st_, StatusV1)
    assert (st_.online, st_.battery_v) == (True, 3.5)

    a = one(Channel.ack, ack())
    assert isinstance(a, AckV1)
    assert (a.command_id, a.status, a.acl_version) == ("cmd-42", "applied", 42)


def test_decoded_objects_are_frozen() -> None:
    t = one(Channel.telemetry, telemetry())
    with pytest.raises(ValueError, match="frozen"):
        t.seq = 1


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-26T08:00:00+08:00", TS_UTC),
        ("2026-11-26T00:00:00Z", TS_UTC),
        ("2026-11-26T00:00:00+00:00", TS_UTC),
        ("2026-11-25T19:00:00-05:00", TS_UTC),
        ("2026-11-26T08:00:00.250+08:00", TS_UTC + timedelta(milliseconds=250)),
        (int(TS_UTC.timestamp() * 1000), TS_UTC),
        (int(TS_UTC.timestamp() * 1000) + 999, TS_UTC + timedelta(milliseconds=999)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_timestamp_forms_are_timezone_aware(ts: Any, expected: datetime) -> None:
    t = one(Channel.telemetry, telemetry(ts=ts))
    assert t.ts.tzinfo is not None
    assert t.ts.utcoffset() is not None
    assert t.ts == expected


def test_epoch_ms_is_milliseconds_in_utc() -> None:
    t = one(Channel.telemetry, telemetry(ts=1_764_115_200_123))
    assert t.ts == datetime(2025, 11, 26, 0, 0, 0, 123_000, tzinfo=UTC)
    assert t.ts.utcoffset() == timedelta(0)


def test_iso_offset_is_kept() -> None:
    t = one(Channel.telemetry, telemetry(ts="2026-11-26T08:00:00+08:00"))
    assert t.ts.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize("ts", ["2026-11-26T08:00:00", "2026-11-26T08:00:00.5", "2026-11-26 08:00:00"])
def test_naive_timestamp_is_parsed_as_naive(ts: str) -> None:
    # Parsed, never guessed at: ingest quarantines it as ts_without_timezone.
    t = one(Channel.telemetry, telemetry(ts=ts))
    assert t.ts.tzinfo is None
    assert t.ts.replace(microsecond=0) == datetime(2026, 11, 26, 8, 0)  # noqa: DTZ001


@pytest.mark.parametrize(
    "ts",
    [
        True,  # bool is an int subclass; never epoch 1 ms
        False,
        1.764e12,  # a float is not integer epoch ms
        1764115200000.5,
        None,
        [2026, 11, 26],
        {"iso": TS},
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-26T25:00:00Z",
        "2026-11-26T08:00:00+25:00",
    ],
)
def test_bad_timestamps_are_refused(ts: Any) -> None:
    refused(Channel.telemetry, telemetry(ts=ts), "ts")


@pytest.mark.parametrize("ts", [10**20, -(10**20), 2**63, -(2**63), 10**400, 253_402_300_800_000])
def test_out_of_range_epoch_ms_is_a_payload_error(ts: int) -> None:
    # BUG (fixed in protocol/payloads.py): datetime.fromtimestamp raised OSError / OverflowError, which
    # pydantic does not turn into a ValidationError, so one such frame crashed the ingest loop.
    refused(Channel.telemetry, telemetry(ts=ts), "ts")


def test_missing_timestamp_is_refused() -> None:
    body = telemetry()
    del body["ts"]
    refused(Channel.telemetry, body, "ts: Field required")


def test_digit_string_timestamp_is_refused() -> None:
    refused(Channel.telemetry, telemetry(ts="1764115200"), "ts")


# --- registers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.567", Decimal("1234.567")),
        ("0", Decimal(0)),
        ("0.000", Decimal("0.000")),
        ("99999.999", Decimal("99999.999")),
        ("0.000001", Decimal("0.000001")),
        ("12345678901234.123456", Decimal("12345678901234.123456")),  # 20 digits, 6 places: the maximum
        ("0.1", Decimal("0.1")),  # not 0.1000000000000000055511151231257827 (float)
    ],
)
def test_register_is_an_exact_decimal(text: str, expected: Decimal) -> None:
    m = one(Channel.meter, meter(register=text, reverse_register=text))
    assert isinstance(m.reading, Decimal)
    assert m.reading == expected
    assert str(m.reading) == str(expected)
    assert m.reverse_register == expected


@pytest.mark.parametrize(
    "register",
    [
        1234.567,  # a float: rounding would touch a billed quantity
        1234,  # an integer is not a decimal string either
        0,
        True,
        None,
        ["1234.567"],
        {"value": "1234.567"},
        "",
        "abc",
        "0x10",
        "1,234.567",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "-1",  # registers count up from zero
        "-0.001",
        "1.1234567",  # more than 6 decimal places
        "123456789012345.123456",  # 21 digits
        "1E+100",
    ],
)
def test_bad_registers_are_refused(register: Any) -> None:
    refused(Channel.meter, meter(register=register), "register")
    if register is not None:  # reverse_register is optional
        refused(Channel.meter, meter(reverse_register=register), "reverse_register")


def test_register_is_required_and_unit_is_closed() -> None:
    body = meter()
    del body["register"]
    refused(Channel.meter, body, "register: Field required")
    refused(Channel.meter, meter(unit="kwh"), "unit")
    refused(Channel.meter, meter(unit="L"), "unit")
    assert one(Channel.meter, meter(unit="kWh")).unit == "kWh"
    refused(Channel.meter, meter(valve="half"), "valve")


def test_register_is_encoded_as_a_decimal_string() -> None:
    m = one(Channel.meter, meter(register="1234.500"))
    wire = json.loads(encode(m))
    assert wire["register"] == "1234.500"
    assert "reading" not in wire


# --- values, NaN and Infinity --------------------------------------------------------------------


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400])
def test_non_finite_values_are_refused(literal: bytes) -> None:
    payload = b'{"v":1,"ts":"%s","values":{"winding_temp_c":%s}}' % (TS.encode(), literal)
    refused(Channel.telemetry, payload, "finite")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_battery_is_refused(literal: bytes) -> None:
    payload = b'{"v":1,"ts":"%s","online":true,"battery_v":%s}' % (TS.encode(), literal)
    refused(Channel.status, payload, "battery_v")


def test_bool_values_stay_bool() -> None:
    t = one(Channel.telemetry, telemetry(values={"door_open": True, "fan_on": False, "load_pct": 1}))
    assert t.values == {"door_open": True, "fan_on": False, "load_pct": 1.0}
    assert t.values["door_open"] is True
    assert t.values["fan_on"] is False
    assert type(t.values["load_pct"]) is float


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"Winding": 1.0},  # metric names are lower-case identifiers
        {"1temp": 1.0},
        {"temp-c": 1.0},
        {"": 1.0},
        {"x" * 65: 1.0},
        {"temp": None},
        {"temp": [1.0]},
        {"temp": {"v": 1.0}},
        {"temp": "hot"},
        {f"m{i}": 1.0 for i in range(MAX_VALUES_PER_FRAME + 1)},
    ],
)
def test_bad_values_are_refused(values: dict[str, Any]) -> None:
    refused(Channel.telemetry, telemetry(values=values), "values")


def test_values_limit_is_inclusive() -> None:
    t = one(Channel.telemetry, telemetry(values={f"m{i}": float(i) for i in range(MAX_VALUES_PER_FRAME)}))
    assert len(t.values) == MAX_VALUES_PER_FRAME


# --- other field rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [-1, 2**63, 1.5, "x", None])
def test_bad_seq_is_refused(seq: Any) -> None:
    if seq is None:
        assert one(Channel.telemetry, telemetry(seq=None)).seq is None
        return
    refused(Channel.telemetry, telemetry(seq=seq), "seq")


def test_seq_bounds() -> None:
    assert one(Channel.telemetry, telemetry(seq=0)).seq == 0
    assert one(Channel.telemetry, telemetry(seq=2**63 - 1)).seq == 2**63 - 1
    body = telemetry()
    del body["seq"]
    assert one(Channel.telemetry, body).seq is None


def test_swipe_fields() -> None:
    assert one(Channel.swipe, swipe(card="04a1b2c3")).card == "04A1B2C3"
    refused(Channel.swipe, swipe(card="XYZ123"), "card")
    refused(Channel.swipe, swipe(card="04A"), "card")
    refused(Channel.swipe, swipe(card="0" * 21), "card")
    refused(Channel.swipe, swipe(door="3/1/main"), "door")
    refused(Channel.swipe, swipe(door=""), "door")
    refused(Channel.swipe, swipe(door="d" * 65), "door")
    refused(Channel.swipe, swipe(reason="r" * 65), "reason")
    refused(Channel.swipe, swipe(granted=None), "granted")
    refused(Channel.swipe, swipe(granted="maybe"), "granted")


def test_status_and_ack_fields() -> None:
    refused(Channel.status, status(online=None), "online")
    refused(Channel.ack, ack(status="done"), "status")
    refused(Channel.ack, ack(command_id=""), "command_id")
    refused(Channel.ack, ack(command_id="a b"), "command_id")
    assert one(Channel.ack, ack(acl_version=None)).acl_version is None


# --- extra fields and versions -------------------------------------------------------------------


def test_door_events_decode_and_a_card_swipe_is_not_one() -> None:
    d = one(Channel.door, door(event="forced_open", open_s=None))
    assert isinstance(d, DoorEventV1)
    assert (d.door, d.event, d.open_s, d.seq) == ("3-1-main", "forced_open", None, 9)
    refused(Channel.door, door(event="opened"), "event")
    refused(Channel.door, door(open_s=-1), "open_s")
    refused(Channel.door, swipe(), "event")


@pytest.mark.parametrize("channel", list(Channel))
def test_extra_fields_are_refused(channel: Channel) -> None:
    reason = refused(channel, BUILDERS[channel](unit_price="0.01"), "unit_price")
    assert "Extra inputs are not permitted" in reason


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("v", [0, 2, -1, "1", "v1", None, 1.5])
def test_other_versions_are_refused(channel: Channel, v: Any) -> None:
    refused(channel, BUILDERS[channel](v=v), "v")


def test_extra_fields_inside_a_batch_item_are_refused() -> None:
    item = telemetry(debug=True)
    reason = refused(Channel.telemetry, {"v": 1, "batch": [telemetry(), item]}, "batch.1.debug")
    assert "Extra inputs are not permitted" in reason


def test_batch_envelope_version_and_extras() -> None:
    refused(Channel.telemetry, {"v": 2, "batch": [telemetry()]}, "v")
    refused(Channel.telemetry, {"v": 1, "batch": [telemetry(v=2)]}, "batch.0.v")
    refused(Channel.telemetry, {"v": 1, "batch": [telemetry()], "ts": TS}, "ts")


# --- batches -------------------------------------------------------------------------------------


def test_telemetry_batch_yields_every_frame_in_order() -> None:
    frames = [telemetry(ts=f"2026-11-26T08:00:{i:02d}+08:00", seq=i, values={"room_temp_c": i}) for i in range(5)]
    readings = decode_uplink(Channel.telemetry, raw({"v": 1, "batch": frames}))
    assert [r.seq for r in readings] == [0, 1, 2, 3, 4]
    assert all(isinstance(r, TelemetryV1) for r in readings)
    assert readings[3].ts == TS_UTC + timedelta(seconds=3)


def test_meter_batch_keeps_exact_registers() -> None:
    regs = ["0.001", "0.002", "1234.567", "99999.999"]
    readings = decode_uplink(
        Channel.meter,
        raw({"v": 1, "batch": [meter(ts=f"2026-11-26T08:0{i}:00+08:00", register=r) for i, r in enumerate(regs)]}),
    )
    assert [r.reading for r in readings] == [Decimal(r) for r in regs]
    assert all(isinstance(r, MeterReadingV1) for r in readings)


def test_batch_items_keep_their_own_timestamp_form() -> None:
    items = [telemetry(ts=TS), telemetry(ts="2026-11-26T08:00:00"), telemetry(ts=1_764_115_200_000)]
    readings = decode_uplink(Channel.telemetry, raw({"v": 1, "batch": items}))
    assert [r.ts.tzinfo is None for r in readings] == [False, True, False]


def test_batch_limits() -> None:
    refused(Channel.telemetry, {"v": 1, "batch": []}, "batch")
    refused(Channel.meter, {"v": 1, "batch": []}, "batch")
    refused(Channel.telemetry, {"v": 1, "batch": [telemetry()] * (MAX_BATCH + 1)}, "batch")
    assert len(decode_uplink(Channel.telemetry, raw({"v": 1, "batch": [telemetry()] * MAX_BATCH}))) == MAX_BATCH


def test_one_bad_item_refuses_the_whole_batch() -> None:
    refused(Channel.meter, {"v": 1, "batch": [meter(), meter(register=1.5)]}, "batch.1.register")


@pytest.mark.parametrize("channel", [Channel.swipe, Channel.status, Channel.ack])
def test_only_telemetry_and_meter_take_batches(channel: Channel) -> None:
    refused(channel, {"v": 1, "batch": [BUILDERS[channel]()]}, "batch")


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        (Channel.telemetry, telemetry(values={"batch": 1.0})),  # a metric may be called "batch"
        (Channel.meter, meter(flags=["batch"])),
        (Channel.swipe, swipe(reason='"batch"')),
    ],
)
def test_single_frame_mentioning_batch_is_not_a_batch(channel: Channel, body: dict[str, Any]) -> None:
    # BUG (fixed in protocol/payloads.py): any payload containing the bytes '"batch"' was validated as a
    # batch envelope, so these valid single frames were dead-lettered.
    assert len(decode_uplink(channel, raw(body))) == 1


@pytest.mark.parametrize(
    ("channel", "body", "field"),
    [
        (Channel.meter, meter(register=1.5, flags=["batch"]), "register"),
        (Channel.telemetry, telemetry(ts=True, values={"batch": 1.0}), "ts"),
    ],
)
def test_bad_single_frame_mentioning_batch_gets_its_own_reason(
    channel: Channel, body: dict[str, Any], field: str
) -> None:
    # The dead-letter reason must name what is wrong with the frame, not a batch envelope's complaints.
    reason = refused(channel, body)
    assert reason.startswith(f"{field}: ")
    assert "batch: Field required" not in reason


def test_batch_marker_inside_a_bad_payload_still_gives_a_payload_error() -> None:
    refused(Channel.telemetry, b'{"batch": [', "Invalid JSON")
    refused(Channel.telemetry, b'["batch"]')
    refused(Channel.telemetry, b'"batch"')
    refused(Channel.meter, b'{"v":1,"batch":"batch"}', "batch")


# --- malformed payloads (M12) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b" ",
        b"null",
        b"true",
        b"42",
        b'"text"',
        b"[]",
        b"{}",
        b"{",
        b'{"v":1,',
        b"{'v': 1}",  # not JSON
        b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{"a":1},}',  # trailing comma
        b"\xff\xfe\x00",  # not UTF-8
        b'{"v":1,"ts":"2026-11-26T08:00:00\xff+08:00","values":{"a":1}}',  # invalid UTF-8 in a string
        b"\x00\x01\x02",
        b"[" * 10_000 + b"]" * 10_000,  # deep nesting
        b'{"v":1,"batch":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
)
@pytest.mark.parametrize("channel", list(Channel))
def test_malformed_payloads_are_payload_errors(payload: bytes, channel: Channel) -> None:
    reason = refused(channel, payload)
    assert reason
    assert len(reason) < 2_000


def test_reason_names_the_field_and_is_bounded() -> None:
    body = {"v": 2, "ts": True, "seq": -1, "values": {}, "a": 1, "b": 2, "c": 3}
    reason = refused(Channel.telemetry, body)
    assert reason.startswith("v: ")
    assert reason.count(";") == 4  # at most five errors reported
    assert "https://" not in reason


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


# --- property tests ------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # includes NaN and ±Infinity, which json.dumps writes as bare literals
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = (
    "v ts seq values register reverse_register unit valve flags door card granted reason online battery_v "
    "command_id status acl_version batch extra whitelist event open_s"
)
FIELDS = st.sampled_from(FIELD_NAMES.split(" "))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(channel=st.sampled_from(list(Channel)), payload=st.binary(max_size=300))
@example(channel=Channel.telemetry, payload=b'{"v":1,"ts":100000000000000000000,"values":{"x":1}}')
@example(channel=Channel.meter, payload=b'{"batch":[{"ts":-99999999999999999999}]}')
def test_arbitrary_bytes_raise_only_payload_error(channel: Channel, payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_uplink(channel, payload)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=st.sampled_from(list(Channel)),
    replace=st.dictionaries(FIELDS, JSON, max_size=3),
    wrap=st.booleans(),
)
def test_mutated_frames_raise_only_payload_error(channel: Channel, replace: dict[str, Any], wrap: bool) -> None:
    body: Any = {**BUILDERS[channel](), **replace}
    if wrap:
        body = {"v": 1, "batch": [body]}
    try:
        readings = decode_uplink(channel, json.dumps(body).encode())
    except PayloadError:
        return
    for r in readings:  # whatever got through obeys the contract
        if isinstance(r, TelemetryV1):
            assert all(isinstance(v, bool) or (v == v and abs(v) != float("inf")) for v in r.values.values())
        if isinstance(r, MeterReadingV1):
            assert isinstance(r.reading, Decimal)
            assert r.reading.is_finite()
            assert r.reading >= 0


OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
AWARE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS)  # noqa: DTZ001
NAIVE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))  # noqa: DTZ001
TIMES = AWARE | NAIVE
METRICS = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
VALUES = st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
SEQS = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
REGISTERS = st.decimals(min_value=0, max_value=Decimal("99999999999999.999999"), places=6, allow_nan=False)
SHORT_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=32)
IDENTS = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)

TELEMETRY_FRAMES = st.builds(
    TelemetryV1,
    ts=TIMES,
    seq=SEQS,
    values=st.dictionaries(METRICS, VALUES, min_size=1, max_size=8),
)
METER_FRAMES = st.builds(
    MeterReadingV1,
    ts=TIMES,
    seq=SEQS,
    register=REGISTERS,
    unit=st.sampled_from(["kWh", "m3"]),
    reverse_register=st.none() | REGISTERS,
    valve=st.sampled_from([None, "open", "closed", "unknown"]),
    flags=st.lists(st.from_regex(r"[A-Za-z0-9_.:-]{1,32}", fullmatch=True), max_size=4).map(tuple),
)
WHITELIST_STATES = st.builds(
    WhitelistStateV1,
    version=st.integers(0, 2**63 - 1),
    digest=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    entries=st.integers(0, 10**6),
)
FRAMES = st.one_of(
    TELEMETRY_FRAMES,
    METER_FRAMES,
    st.builds(
        SwipeV1,
        ts=TIMES,
        seq=SEQS,
        door=IDENTS,
        card=st.from_regex(r"[0-9A-F]{4,20}", fullmatch=True),
        granted=st.booleans(),
        reason=st.none() | st.text(max_size=64),
    ),
    st.builds(
        StatusV1,
        ts=TIMES,
        seq=SEQS,
        online=st.booleans(),
        battery_v=st.none() | st.floats(-10, 10),
        whitelist=st.none() | WHITELIST_STATES,
    ),
    st.builds(
        AckV1,
        command_id=IDENTS,
        status=st.sampled_from(["applied", "rejected", "expired"]),
        acl_version=st.none() | st.integers(-(2**31), 2**31),
        reason=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
        whitelist=st.none() | WHITELIST_STATES,
    ),
    st.builds(
        DoorEventV1,
        ts=TIMES,
        seq=SEQS,
        door=IDENTS,
        event=st.sampled_from(["held_open", "forced_open", "closed"]),
        open_s=st.none() | st.integers(0, 2**31 - 1),
    ),
)
CHANNEL_OF = {TelemetryV1: Channel.telemetry, MeterReadingV1: Channel.meter, SwipeV1: Channel.swipe}
CHANNEL_OF |= {StatusV1: Channel.status, AckV1: Channel.ack, DoorEventV1: Channel.door}


def _same(a: Any, b: Any) -> None:
    assert a == b
    ts_a, ts_b = getattr(a, "ts", None), getattr(b, "ts", None)
    if ts_a is not None:
        assert (ts_a.tzinfo is None) == (ts_b.tzinfo is None)  # naive stays naive, aware stays aware
        assert ts_a.utcoffset() == ts_b.utcoffset()
    if isinstance(a, MeterReadingV1):
        assert str(a.reading) == str(b.reading)  # exactly, digits and scale


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frame=FRAMES)
def test_valid_frames_round_trip_through_encode(frame: Any) -> None:
    decoded = decode_uplink(CHANNEL_OF[type(frame)], encode(frame))
    assert len(decoded) == 1
    _same(decoded[0], frame)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(TELEMETRY_FRAMES, min_size=1, max_size=10) | st.lists(METER_FRAMES, min_size=1, max_size=10))
def test_valid_batches_round_trip_through_encode(frames: list[Any]) -> None:
    kind = type(frames[0])
    payload = b'{"v":1,"batch":[' + b",".join(encode(f) for f in frames) + b"]}"
    decoded = decode_uplink(CHANNEL_OF[kind], payload)
    assert len(decoded) == len(frames)
    for a, b in zip(decoded, frames, strict=True):
        _same(a, b)
