"""The whitelist wire contract: commands round-trip, the digest is canonical, entries decide swipes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.payloads import AckV1, PayloadError, StatusV1, WhitelistStateV1, command_wire, decode_uplink, encode
from protocol.topics import Channel, downlink
from protocol.whitelist import (
    MAX_COMMAND_BYTES,
    WHITELIST,
    WHITELIST_REPORT,
    WeeklyWindowV1,
    WhitelistCommandV1,
    WhitelistEntryV1,
    whitelist_delta,
    whitelist_digest,
    whitelist_report_command,
    whitelist_snapshot,
)

NOW = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
CST = timezone(timedelta(hours=8))


def entry(uid: str = "04A1B2C3", **kw: Any) -> WhitelistEntryV1:
    return WhitelistEntryV1.model_validate({"uid": uid, "doors": ["3-1-main"], **kw})


# --- commands ------------------------------------------------------------------------------------


def test_a_queued_delta_goes_out_as_the_controller_parses_it() -> None:
    body = whitelist_delta(
        command_id="provisional",
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        version=8,
        base_version=7,
        upsert=[entry("04a1b2c3", valid_until=NOW + timedelta(days=30))],
        remove=["0badcafe"],
    )
    json.dumps(body)  # JSON-ready, as the outbox stores it
    wire = command_wire(body, command_id="42", issued_at=NOW, expires_at=None)
    cmd = WhitelistCommandV1.model_validate_json(wire)
    assert (cmd.command_id, cmd.op, cmd.version, cmd.base_version) == ("42", "delta", 8, 7)
    assert cmd.upsert == (entry("04A1B2C3", valid_until=NOW + timedelta(days=30)),)
    assert cmd.remove == ("0BADCAFE",)  # uppercase hex, as read
    assert cmd.expires_at == NOW + timedelta(hours=1)
    assert downlink("lvyuan", "AC-1-1", WHITELIST) == "steward/lvyuan/down/AC-1-1/whitelist"


def test_a_snapshot_carries_the_whole_list_and_may_empty_it() -> None:
    entries = [entry("0A0A0A0A"), entry("0B0B0B0B", doors=["3-1-main", "3-1-garage"])]
    (body,) = whitelist_snapshot(command_id="1", issued_at=NOW, expires_at=None, version=3, entries=entries[::-1])
    cmd = WhitelistCommandV1.model_validate_json(command_wire(body, command_id="9", issued_at=None, expires_at=None))
    assert cmd.op == "snapshot"
    assert cmd.entries == tuple(entries)  # sorted by uid
    assert (cmd.part, cmd.parts, cmd.digest) == (0, 1, whitelist_digest(entries))
    (empty,) = whitelist_snapshot(command_id="1", issued_at=NOW, expires_at=None, version=4, entries=[])
    assert WhitelistCommandV1.model_validate(empty).entries == ()


def test_a_long_list_goes_in_parts_that_each_fit_the_broker() -> None:
    entries = [entry(f"{i:08X}", valid_until=NOW + timedelta(days=i)) for i in range(5_000)]
    bodies = whitelist_snapshot(command_id="1", issued_at=NOW, expires_at=None, version=7, entries=entries)
    assert 3 <= len(bodies) <= 6
    sizes = [len(command_wire(b, command_id="123456789", issued_at=None, expires_at=None)) for b in bodies]
    assert max(sizes) <= MAX_COMMAND_BYTES
    cmds = [WhitelistCommandV1.model_validate(b) for b in bodies]
    assert [(c.part, c.parts, c.version) for c in cmds] == [(i, len(bodies), 7) for i in range(len(bodies))]
    assert {c.digest for c in cmds} == {whitelist_digest(entries)}
    assert [e for c in cmds for e in c.entries or ()] == entries
    small = whitelist_snapshot(
        command_id="1", issued_at=NOW, expires_at=None, version=7, entries=entries[:50], max_bytes=2_000
    )
    assert len(small) > 1


def test_a_delta_too_big_for_one_message_is_refused() -> None:
    many = [entry(f"{i:08X}") for i in range(3_000)]
    with pytest.raises(ValueError, match="send a snapshot"):
        whitelist_delta(command_id="1", issued_at=NOW, expires_at=None, version=2, base_version=1, upsert=many)


def test_a_report_request_is_the_bare_envelope() -> None:
    body = whitelist_report_command(command_id="5", issued_at=NOW, expires_at=NOW + timedelta(minutes=5))
    assert set(body) == {"v", "command_id", "issued_at", "expires_at"}
    assert WHITELIST_REPORT == "whitelist_report"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"base_version": None}, "needs base_version"),
        ({"version": 7}, "above base_version"),
        ({"upsert": [entry("0A0A0A0A"), entry("0a0a0a0a")]}, "appears twice"),
        ({"upsert": [entry("0A0A0A0A")], "remove": ["0A0A0A0A"]}, "both upserted and removed"),
        ({"entries": []}, "not entries"),
        ({"version": 0, "base_version": -1}, "greater than"),
        ({"remove": ["not-hex"]}, "pattern"),
        ({"parts": 2}, "one message"),
        ({"digest": "0" * 64}, "one message"),
    ],
)
def test_a_delta_a_controller_would_reject_is_never_built(change: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"command_id": "1", "issued_at": NOW, "expires_at": None, "version": 8, "base_version": 7}
    args.update(change)
    body = {**args, "op": "delta", "v": 1, "issued_at": NOW.isoformat()}
    body["upsert"] = [e.model_dump(mode="json") for e in body.pop("upsert", [])]
    with pytest.raises(ValidationError, match=match):
        WhitelistCommandV1.model_validate(body)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"entries": None}, "needs entries"),
        ({"base_version": 3}, "entries only"),
        ({"remove": ["0A0A0A0A"]}, "entries only"),
        ({"entries": [{"uid": "0A0A0A0A", "doors": ["d"]}] * 2}, "appears twice"),
        ({"version": 0}, "greater than 0"),
        ({"part": 2, "parts": 2}, "below parts"),
        ({"digest": "ABC"}, "pattern"),
    ],
)
def test_a_malformed_snapshot_is_refused(change: dict[str, Any], match: str) -> None:
    body = {"v": 1, "command_id": "1", "issued_at": NOW.isoformat(), "op": "snapshot", "version": 3, "entries": []}
    with pytest.raises(ValidationError, match=match):
        WhitelistCommandV1.model_validate({**body, **change})


@pytest.mark.parametrize(
    "bad",
    [
        {"uid": "XYZ12345"},
        {"uid": "0A0"},
        {"doors": []},
        {"doors": ["a b"]},
        {"valid_from": "2026-12-01T00:00:00"},  # naive: whose midnight?
        {"valid_from": "2026-12-02T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
        {"schedule": []},
        {"schedule": [{"days": [0], "start": "08:00", "end": "18:00"}]},
        {"schedule": [{"days": [1], "start": "8:00", "end": "18:00"}]},
        {"schedule": [{"days": [1], "start": "24:00", "end": "06:00"}]},
        {"pin": "1234"},
    ],
)
def test_bad_entries_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WhitelistEntryV1.model_validate({"uid": "0A0B0C0D", "doors": ["3-1-main"], **bad})


def test_controllers_ignore_envelope_fields_they_do_not_know() -> None:
    (body,) = whitelist_snapshot(command_id="1", issued_at=NOW, expires_at=None, version=3, entries=[])
    assert WhitelistCommandV1.model_validate({**body, "chunk": 1}).version == 3


# --- digest ----------------------------------------------------------------------------------------


def test_digest_does_not_depend_on_order_case_offsets_or_sub_seconds() -> None:
    a = [
        entry("0A0A0A0A", doors=["b", "a"], valid_until=datetime(2027, 1, 1, 8, tzinfo=CST)),
        entry(
            "0b0b0b0b",
            schedule=[
                {"days": [5, 1], "start": "07:00", "end": "22:00"},
                {"days": [6], "start": "09:00", "end": "12:00"},
            ],
        ),
    ]
    b = [
        entry(
            "0B0B0B0B",
            schedule=[
                {"days": [6], "start": "09:00", "end": "12:00"},
                {"days": [1, 5, 5], "start": "07:00", "end": "22:00"},
            ],
        ),
        entry("0A0A0A0A", doors=["a", "b", "a"], valid_until=datetime(2027, 1, 1, 0, 0, 0, 400_000, tzinfo=UTC)),
    ]
    assert whitelist_digest(a) == whitelist_digest(b)
    assert len(whitelist_digest(a)) == 64


def test_digest_of_the_empty_list_is_pinned() -> None:
    # Pinned so a controller's firmware can be checked against it without running Python.
    assert whitelist_digest([]) == hashlib.sha256(b"[]").hexdigest()
    one = [entry("0A0A0A0A", valid_from=datetime(2026, 1, 1, tzinfo=UTC))]
    canonical = (
        '[{"doors":["3-1-main"],"schedule":null,"uid":"0A0A0A0A",'
        '"valid_from":"2026-01-01T00:00:00Z","valid_until":null}]'
    )
    assert whitelist_digest(one) == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "other",
    [
        entry("0A0A0A0B"),
        entry(doors=["3-1-main", "3-1-garage"]),
        entry(valid_from=NOW),
        entry(valid_until=NOW),
        entry(schedule=[{"days": [1], "start": "00:00", "end": "24:00"}]),
    ],
)
def test_any_change_to_an_entry_changes_the_digest(other: WhitelistEntryV1) -> None:
    assert whitelist_digest([entry()]) != whitelist_digest([other])


ENTRIES = st.lists(
    st.builds(
        WhitelistEntryV1,
        uid=st.from_regex(r"[0-9A-F]{8}", fullmatch=True),
        doors=st.lists(st.sampled_from(["1-1-main", "1-1-garage", "gate-n"]), min_size=1, max_size=3).map(tuple),
        valid_until=st.none() | st.datetimes(timezones=st.just(UTC), min_value=datetime(2026, 1, 1)),  # noqa: DTZ001
    ),
    unique_by=lambda e: e.uid,
    max_size=20,
)


@settings(max_examples=100)
@given(entries=ENTRIES, seed=st.randoms())
def test_digest_survives_the_wire_and_any_order(entries: list[WhitelistEntryV1], seed: Any) -> None:
    (body,) = whitelist_snapshot(command_id="1", issued_at=NOW, expires_at=None, version=1, entries=entries)
    received = WhitelistCommandV1.model_validate_json(json.dumps(body))
    assert received.entries is not None
    shuffled = list(received.entries)
    seed.shuffle(shuffled)
    assert whitelist_digest(shuffled) == whitelist_digest(entries)


# --- decisions -------------------------------------------------------------------------------------


def at_local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def test_an_entry_opens_its_doors_within_its_validity() -> None:
    e = entry(valid_from=at_local("2026-12-01T00:00"), valid_until=at_local("2026-12-31T00:00"))
    assert e.denial("3-1-main", at_local("2026-12-01T00:00"), SHANGHAI) is None
    assert e.denial("3-1-main", at_local("2026-11-30T23:59"), SHANGHAI) == "not_yet_valid"
    assert e.denial("3-1-main", at_local("2026-12-31T00:00"), SHANGHAI) == "expired"  # until is exclusive
    assert e.denial("3-2-main", at_local("2026-12-15T12:00"), SHANGHAI) == "wrong_door"


def test_weekly_schedule_in_controller_local_time() -> None:
    # Weekdays 07:00–22:00 for a renovation crew.
    e = entry(schedule=[{"days": [1, 2, 3, 4, 5], "start": "07:00", "end": "22:00"}])
    assert e.denial("3-1-main", at_local("2026-12-04T07:00"), SHANGHAI) is None  # Friday
    assert e.denial("3-1-main", at_local("2026-12-04T22:00"), SHANGHAI) == "outside_schedule"
    assert e.denial("3-1-main", at_local("2026-12-05T10:00"), SHANGHAI) == "outside_schedule"  # Saturday
    # 2026-12-03 23:30 UTC is Friday 07:30 in Shanghai.
    assert e.denial("3-1-main", datetime(2026, 12, 3, 23, 30, tzinfo=UTC), SHANGHAI) is None


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    night = WeeklyWindowV1(days=(5,), start="22:00", end="06:00")  # Friday night shift
    assert night.contains(at_local("2026-12-04T23:00"))  # Friday
    assert night.contains(at_local("2026-12-05T05:59"))  # Saturday morning
    assert not night.contains(at_local("2026-12-05T06:00"))
    assert not night.contains(at_local("2026-12-05T23:00"))  # Saturday night
    sunday = WeeklyWindowV1(days=(7,), start="20:00", end="02:00")
    assert sunday.contains(at_local("2026-12-07T01:00"))  # Monday early: wraps the week
    whole = WeeklyWindowV1(days=(1,), start="00:00", end="24:00")
    assert whole.contains(at_local("2026-12-07T00:00"))
    assert whole.contains(at_local("2026-12-07T23:59"))
    assert not whole.contains(at_local("2026-12-08T00:00"))


# --- what the controller reports -------------------------------------------------------------------


def state() -> WhitelistStateV1:
    return WhitelistStateV1(version=8, digest=whitelist_digest([entry()]), entries=1)


def test_the_reconnect_status_carries_the_whitelist_and_old_statuses_still_decode() -> None:
    (s,) = decode_uplink(Channel.status, encode(StatusV1(ts=NOW, online=True, whitelist=state())))
    assert isinstance(s, StatusV1)
    assert s.whitelist == state()
    (old,) = decode_uplink(Channel.status, b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","online":true}')
    assert isinstance(old, StatusV1)
    assert old.whitelist is None


def test_whitelist_acks_round_trip_and_valve_acks_are_unchanged() -> None:
    refused = AckV1(command_id="42", status="rejected", acl_version=5, reason="version_gap", whitelist=state())
    (a,) = decode_uplink(Channel.ack, encode(refused))
    assert a == refused
    wire = json.loads(encode(refused))
    assert wire["reason"] == "version_gap"
    assert wire["whitelist"]["digest"] == state().digest
    (valve,) = decode_uplink(Channel.ack, b'{"v":1,"command_id":"7","status":"applied"}')
    assert isinstance(valve, AckV1)
    assert (valve.reason, valve.whitelist) == (None, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"reason": "Version Gap"},
        {"whitelist": {"version": 1, "digest": "ABC", "entries": 0}},
        {"whitelist": {"version": -1, "digest": "0" * 64, "entries": 0}},
        {"whitelist": {"version": 1, "digest": "0" * 64, "entries": 0, "x": 1}},
    ],
)
def test_malformed_whitelist_acks_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        decode_uplink(Channel.ack, json.dumps({"v": 1, "command_id": "1", "status": "rejected", **bad}).encode())
