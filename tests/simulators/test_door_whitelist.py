"""Simulated door controllers hold a versioned whitelist, obey whitelist commands and decide every swipe from it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core import clock
from protocol.payloads import AckV1, StatusV1, decode_uplink
from protocol.topics import Channel
from protocol.whitelist import (
    WHITELIST,
    WHITELIST_REPORT,
    WhitelistCommandV1,
    WhitelistEntryV1,
    whitelist_delta,
    whitelist_digest,
    whitelist_report_command,
    whitelist_snapshot,
)
from simulators import Fleet, Frame
from simulators.commands import CommandCounts, CommandInbox, DoorCommands, Inbound
from simulators.controls import DoorControls
from simulators.doors import DoorController, Whitelist
from tests.simulators.conftest import START

# 2026-11-26 00:00 in Shanghai is START (a Thursday).
TINY_DOORS = """\
estate: {code: doors, name: Doors, timezone: Asia/Shanghai}
buildings:
  - {code: "1", name: B1, floors: 2, entrances: 1, units_per_floor: 2, vacant: [1-1-101]}
devices:
  - {code: AC-1-1, kind: door_controller, name: gate, building: "1", expected_interval_s: 300,
     attrs: {doors: [1-1-main, 1-1-garage], entrance: 1}}
  - {code: CW-1, kind: cold_water_meter, name: plant, expected_interval_s: 900, register_max: "99999.999",
     resolution: "0.001"}
"""
CTL = "AC-1-1"
A, B, C = "0A0A0A0A", "0B0B0B0B", "0C0C0C0C"


@pytest.fixture
def estate_file(tmp_path: Path) -> Path:
    path = tmp_path / "doors.yaml"
    path.write_text(TINY_DOORS)
    return path


@pytest.fixture
def fleet(estate_file: Path) -> Fleet:
    return Fleet.from_file(estate_file, seed=1, start=START, initial_cards=False)


def entry(uid: str, **kw: Any) -> WhitelistEntryV1:
    return WhitelistEntryV1.model_validate({"uid": uid, "doors": ["1-1-main"], **kw})


def delta(
    version: int, base: int, upsert: Iterable[WhitelistEntryV1] = (), remove: Iterable[str] = ()
) -> WhitelistCommandV1:
    body = whitelist_delta(
        command_id="1",
        issued_at=START,
        expires_at=None,
        version=version,
        base_version=base,
        upsert=upsert,
        remove=remove,
    )
    return WhitelistCommandV1.model_validate(body)


def snapshot(version: int, entries: Iterable[WhitelistEntryV1]) -> WhitelistCommandV1:
    (body,) = whitelist_snapshot(command_id="1", issued_at=START, expires_at=None, version=version, entries=entries)
    return WhitelistCommandV1.model_validate(body)


def advance(fleet: Fleet, by: timedelta) -> list[Frame]:
    """The frames of the next ``by`` of simulated time (``Fleet.frames`` counts from the start)."""
    return list(fleet.frames(fleet.now - fleet.start + by))


def swipes(frames: list[Frame]) -> list[dict[str, Any]]:
    return [json.loads(f.payload) for f in frames if f.channel == "swipe" and "presented" in f.tags]


# --- the list --------------------------------------------------------------------------------------


def test_deltas_apply_in_order_and_a_gap_is_refused() -> None:
    wl = Whitelist()
    assert wl.apply(delta(1, 0, [entry(A), entry(B)])) == "applied"
    assert wl.apply(delta(2, 1, [entry(C)], remove=[A, "FFFFFFFF"])) == "applied"  # absent uid: a no-op
    assert (wl.version, sorted(wl.entries)) == (2, [B, C])
    before = wl.state()
    assert wl.apply(delta(4, 3, remove=[B])) == "version_gap"  # v3 never arrived
    assert wl.apply(delta(2, 1, remove=[B])) == "stale_version"  # a late re-delivery of an old version
    assert wl.state() == before  # neither touched the list
    assert before.digest == whitelist_digest([entry(B), entry(C)])
    assert before.entries == 2


def test_a_snapshot_replaces_everything_and_repairs_a_gap() -> None:
    wl = Whitelist(3, {A: entry(A), B: entry(B)})
    assert wl.apply(delta(5, 4, [entry(C)])) == "version_gap"
    assert wl.apply(snapshot(5, [entry(C, doors=["1-1-garage"])])) == "applied"
    assert (wl.version, list(wl.entries)) == (5, [C])
    assert wl.apply(snapshot(5, [])) == "stale_version"
    assert wl.apply(snapshot(6, [])) == "applied"
    assert wl.entries == {}


def parts(version: int, entries: list[WhitelistEntryV1], max_bytes: int = 400) -> list[WhitelistCommandV1]:
    bodies = whitelist_snapshot(
        command_id="1", issued_at=START, expires_at=None, version=version, entries=entries, max_bytes=max_bytes
    )
    return [WhitelistCommandV1.model_validate(b) for b in bodies]


def test_a_snapshot_in_parts_applies_only_when_complete() -> None:
    wl = Whitelist(2, {A: entry(A)})
    new = [entry(f"1000000{i}") for i in range(6)]
    p = parts(3, new)
    assert len(p) >= 3
    assert [wl.apply(x) for x in reversed(p)] == ["staged"] * (len(p) - 1) + ["applied"]  # any order
    assert (wl.version, sorted(wl.entries)) == (3, sorted(e.uid for e in new))

    # Parts of an older version are dropped when a newer one starts; a wrong digest changes nothing.
    old, newer = parts(4, new[:3]), parts(5, new[3:])
    assert wl.apply(old[0]) == "staged"
    assert wl.apply(newer[0]) == "staged"
    assert [wl.apply(x) for x in newer[1:]][-1] == "applied"
    assert (wl.version, sorted(wl.entries)) == (5, sorted(e.uid for e in new[3:]))
    assert wl.apply(old[1]) == "stale_version"
    forged = [x.model_copy(update={"digest": whitelist_digest([])}) for x in parts(6, new)]
    assert [wl.apply(x) for x in forged][-1] == "digest_mismatch"
    assert wl.version == 5


def test_a_staged_snapshot_does_not_open_doors_before_it_is_complete(fleet: Fleet) -> None:
    door = fleet.door(CTL)
    first = parts(1, [entry(f"2000000{i}") for i in range(6)])[0]
    assert first.entries
    assert door.whitelist.apply(first) == "staged"
    door.present(first.entries[0].uid, START + timedelta(minutes=1))
    assert [s["granted"] for s in swipes(advance(fleet, timedelta(minutes=2)))] == [False]


def test_tampering_changes_the_digest_but_not_the_version() -> None:
    wl = Whitelist()
    wl.apply(snapshot(1, [entry(A)]))
    honest = wl.state()
    wl.tamper(upsert=[entry(B)], remove=["0a0a0a0a"])
    assert wl.version == 1
    assert list(wl.entries) == [B]
    assert wl.state().digest != honest.digest


# --- swipes -----------------------------------------------------------------------------------------


def test_every_swipe_is_decided_from_the_controllers_own_list(fleet: Fleet) -> None:
    door = fleet.door(CTL)
    assert door.whitelist.entries == {}  # initial_cards=False: the platform issues every card
    normal = [json.loads(f.payload) for f in advance(fleet, timedelta(hours=24)) if f.channel == "swipe"]
    assert normal
    assert not any(s["granted"] for s in normal)
    assert {s["reason"] for s in normal} == {"unknown"}

    resident = door.cards[0].uid
    t = fleet.now
    door.whitelist.apply(
        snapshot(
            1,
            [
                entry(resident, doors=["1-1-main", "1-1-garage"]),
                entry(A, valid_until=t + timedelta(minutes=30)),
                entry(B, valid_from=t + timedelta(hours=2)),
                entry(C, doors=["1-1-garage"]),
            ],
        )
    )
    for i, (uid, at) in enumerate(
        [(resident, None), (A, None), (B, None), (C, None), (C, "1-1-garage"), ("DEADBEEF", None)]
    ):
        door.present(uid, t + timedelta(minutes=1, seconds=i), at)
    door.present(A, t + timedelta(hours=1))
    door.present(B, t + timedelta(hours=3))
    got = [(s["card"], s["door"], s["granted"], s.get("reason")) for s in swipes(advance(fleet, timedelta(hours=4)))]
    assert got == [
        (resident, "1-1-main", True, None),
        (A, "1-1-main", True, None),
        (B, "1-1-main", False, "not_yet_valid"),
        (C, "1-1-main", False, "wrong_door"),
        (C, "1-1-garage", True, None),
        ("DEADBEEF", "1-1-main", False, "unknown"),
        (A, "1-1-main", False, "expired"),
        (B, "1-1-main", True, None),
    ]
    random = [json.loads(f.payload) for f in advance(fleet, timedelta(hours=24)) if f.channel == "swipe"]
    assert any(s["card"] == resident and s["granted"] for s in random)  # the resident's own swipes now open


def test_a_weekly_profile_is_checked_in_local_time(fleet: Fleet) -> None:
    door = fleet.door(CTL)
    # Weekdays 08:00–18:00 (a renovation crew); START is Thursday 00:00 in Shanghai.
    crew = entry(A, schedule=[{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}])
    door.whitelist.apply(snapshot(1, [crew]))
    for hours in (7.99, 8, 17.99, 18, 24 + 10, 48 + 10):  # Thu 07:59, 08:00, 17:59, 18:00, Fri 10:00, Sat 10:00
        door.present(A, START + timedelta(hours=hours))
    got = [(s["granted"], s.get("reason")) for s in swipes(list(fleet.frames(timedelta(days=3))))]
    assert got == [
        (False, "outside_schedule"),
        (True, None),
        (True, None),
        (False, "outside_schedule"),
        (True, None),
        (False, "outside_schedule"),
    ]


def test_a_revocation_applies_to_swipes_after_it_not_before(fleet: Fleet) -> None:
    door = fleet.door(CTL)
    door.whitelist.apply(snapshot(1, [entry(A)]))
    advance(fleet, timedelta(minutes=10))
    t = fleet.now
    door.present(A, t + timedelta(seconds=30))
    door.present(A, t + timedelta(seconds=90))
    list(fleet.tick(t + timedelta(minutes=1)))  # the first swipe happens
    door.whitelist.apply(delta(2, 1, remove=[A]))  # revoked at t + 1 min
    frames = list(fleet.tick(t + timedelta(minutes=2)))
    assert [s["granted"] for s in swipes(frames)] == [False]  # only the swipe after the revocation
    assert swipes(frames)[0]["reason"] == "unknown"


def test_the_made_up_list_keeps_the_old_demo_behaviour(estate_file: Path) -> None:
    fleet = Fleet.from_file(estate_file, seed=1, start=START)  # initial_cards defaults to True
    door = fleet.door(CTL)
    assert door.whitelist.version == 0
    assert {c.uid for c in door.cards} <= set(door.whitelist.entries)
    former = door.former[0].uid
    assert door.whitelist.entries[former].valid_until is not None
    door.present(former, START + timedelta(minutes=1))
    door.present(door.cards[0].uid, START + timedelta(minutes=2), "1-1-garage")
    got = [(s["granted"], s.get("reason")) for s in swipes(list(fleet.frames(timedelta(minutes=5))))]
    assert got == [(False, "expired"), (True, None)]


# --- link: offline, reconnect, restart ----------------------------------------------------------------


def reports(frames: list[Frame]) -> list[StatusV1]:
    out = []
    for f in frames:
        if f.channel == "status" and "report" in f.tags:
            (s,) = decode_uplink(Channel.status, f.payload)
            assert isinstance(s, StatusV1)
            out.append(s)
    return out


def test_a_run_starts_with_a_report_and_a_reconnect_reports_again(fleet: Fleet) -> None:
    first = list(fleet.frames(timedelta(minutes=10)))
    assert first[0].channel == "status"
    assert first[0].at == START
    (start_report,) = reports(first)
    assert start_report.whitelist is not None
    assert start_report.whitelist.version == 0
    assert start_report.whitelist.digest == whitelist_digest([])

    door = fleet.door(CTL)
    t = fleet.now
    door.disconnect(t)
    door.present(A, t + timedelta(minutes=1))  # decided offline, from the list it has
    door.door_event("forced_open", t + timedelta(minutes=2))
    offline = advance(fleet, timedelta(minutes=30))
    assert [f for f in offline if f.device == CTL] == []  # no heartbeat, nothing sent
    door.whitelist.apply(snapshot(7, [entry(A)]))  # the platform cannot reach it: only for the report below
    back = fleet.now
    door.reconnect(back)
    frames = [f for f in advance(fleet, timedelta(minutes=1)) if f.device == CTL]
    (report,) = reports(frames)
    assert report.whitelist is not None
    assert (report.whitelist.version, report.whitelist.entries) == (7, 1)
    assert report.whitelist.digest == whitelist_digest([entry(A)])
    backlog = [f for f in frames if "backlog" in f.tags]
    assert [(f.channel, f.at) for f in backlog] == [("swipe", back), ("door", back)]  # uploaded on reconnect
    assert json.loads(backlog[0].payload)["reason"] == "unknown"  # decided when it happened
    report_frame = next(f for f in frames if "report" in f.tags)
    assert json.loads(backlog[0].payload)["ts"] < json.loads(report_frame.payload)["ts"]
    assert json.loads(backlog[1].payload)["event"] == "forced_open"
    seqs = [json.loads(f.payload)["seq"] for f in frames]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_the_list_survives_a_kill_and_restart(estate_file: Path) -> None:
    kept: dict[str, Whitelist] = {}
    first = Fleet.from_file(estate_file, seed=1, start=START, initial_cards=False, whitelists=kept)
    first.door(CTL).whitelist.apply(snapshot(3, [entry(A)]))
    list(first.frames(timedelta(hours=1)))
    restarted = Fleet.from_file(estate_file, seed=1, start=START + timedelta(hours=2), whitelists=kept)
    assert restarted.door(CTL).whitelist is kept[CTL]  # initial_cards only matters for a controller never seen
    (report,) = reports(list(restarted.frames(timedelta(minutes=1))))
    assert report.whitelist is not None
    assert report.whitelist.version == 3


# --- commands ------------------------------------------------------------------------------------------


def wire(body: dict[str, Any], command_id: str) -> bytes:
    return json.dumps({**body, "command_id": command_id}).encode()


def test_whitelist_commands_are_applied_and_acked(fleet: Fleet) -> None:
    counts = CommandCounts()
    handler = DoorCommands(fleet, counts)
    door = fleet.door(CTL)
    now = clock.now()

    def send(command: str, body: dict[str, Any], command_id: str, device: str = CTL) -> AckV1 | None:
        _, frame = handler.handle(Inbound(device, wire(body, command_id), command), START)
        if frame is None:
            return None
        assert frame.topic == f"steward/doors/up/{device}/ack"
        (ack,) = decode_uplink(Channel.ack, frame.payload)  # what ingest will accept
        assert isinstance(ack, AckV1)
        return ack

    def d(version: int, base: int, **kw: Any) -> dict[str, Any]:
        return whitelist_delta(command_id="x", issued_at=now, expires_at=None, version=version, base_version=base, **kw)

    applied = send(WHITELIST, d(1, 0, upsert=[entry(A), entry(B)]), "11")
    assert applied is not None
    assert (applied.status, applied.acl_version, applied.reason) == ("applied", 1, None)
    assert applied.whitelist is not None
    assert applied.whitelist.digest == whitelist_digest([entry(A), entry(B)])

    gap = send(WHITELIST, d(3, 2, remove=[A]), "12")
    assert gap is not None
    assert (gap.status, gap.reason, gap.acl_version) == ("rejected", "version_gap", 1)
    assert A in door.whitelist.entries

    (snap,) = whitelist_snapshot(command_id="x", issued_at=now, expires_at=None, version=3, entries=[entry(B)])
    repaired = send(WHITELIST, snap, "13")
    assert repaired is not None
    assert (repaired.status, repaired.acl_version) == ("applied", 3)

    again = send(WHITELIST, d(1, 0, upsert=[entry(A)]), "11")  # QoS 1 re-delivery of an earlier command
    assert again == applied
    assert list(door.whitelist.entries) == [B]

    stale = send(WHITELIST, d(2, 1, upsert=[entry(A)]), "14")
    assert stale is not None
    assert (stale.status, stale.reason, stale.acl_version) == ("rejected", "stale_version", 3)

    expired = whitelist_delta(
        command_id="x", issued_at=now, expires_at=now - timedelta(seconds=1), version=4, base_version=3, remove=[B]
    )
    late = send(WHITELIST, expired, "15")
    assert late is not None
    assert (late.status, late.acl_version) == ("expired", 3)

    invalid = send(WHITELIST, {"v": 1, "issued_at": now.isoformat(), "op": "delta", "version": 4}, "16")
    assert invalid is not None
    assert (invalid.status, invalid.reason) == ("rejected", "invalid")

    report = send(WHITELIST_REPORT, whitelist_report_command(command_id="x", issued_at=now, expires_at=None), "17")
    assert report is not None
    assert report.status == "applied"
    assert report.whitelist == door.whitelist.state()
    assert report.acl_version == 3

    meter = send(WHITELIST, d(1, 0), "18", device="CW-1")
    assert meter is not None
    assert (meter.status, meter.reason) == ("rejected", "unsupported")
    assert send(WHITELIST, d(1, 0), "19", device="NOT-OURS") is None
    assert send(WHITELIST, {"v": 1}, "", device=CTL) is None

    door.disconnect(START)
    list(fleet.tick(START + timedelta(seconds=1)))
    assert send(WHITELIST, d(4, 3, remove=[B]), "20") is None  # offline: it never heard it
    assert door.whitelist.version == 3
    assert counts == CommandCounts(
        received=12, applied=3, rejected=4, expired=1, duplicates=1, ignored=2, acks=9, unheard=1
    )


def test_controls_reach_the_controllers_on_the_run_loop(fleet: Fleet) -> None:
    controls = DoorControls()
    controls.tamper(CTL, upsert=[entry(A)])
    controls.present(CTL, A.lower())
    controls.door_event(CTL, "held_open", open_s=120)
    controls.present("NOT-A-DOOR", A)
    t = START + timedelta(minutes=1)
    assert controls.apply(fleet, t) == 3
    frames = list(fleet.tick(t))
    assert [s["granted"] for s in swipes(frames)] == [True]
    (event,) = [json.loads(f.payload) for f in frames if f.channel == "door"]
    assert (event["door"], event["event"], event["open_s"]) == ("1-1-main", "held_open", 120)
    assert fleet.door(CTL).whitelist.version == 0  # tampering leaves the version
    controls.disconnect(CTL)
    controls.apply(fleet, t)
    list(fleet.tick(t + timedelta(seconds=1)))
    assert not fleet.door(CTL).online


def test_no_command_no_change_same_frames(estate_file: Path) -> None:
    def frames(start: datetime) -> list[bytes]:
        fleet = Fleet.from_file(estate_file, seed=4, start=start, initial_cards=False)
        return [f.payload for f in fleet.frames(timedelta(hours=6), step=timedelta(seconds=13))]

    assert frames(START) == frames(START)
    assert isinstance(Fleet.from_file(estate_file, seed=4, start=START).door(CTL), DoorController)
    assert START.tzinfo is UTC


def test_a_command_or_a_control_wakes_a_waiting_run() -> None:
    """A realtime run sleeps until its next tick; whitelist commands and controls must not wait for it."""
    wake = threading.Event()
    inbox = CommandInbox("doors", CommandCounts(), wake=wake)
    message = type("Message", (), {"topic": f"steward/doors/down/{CTL}/whitelist", "payload": b"{}"})()
    inbox._on_message(None, None, message)
    assert wake.is_set()
    assert [(m.device, m.command) for m in inbox.drain()] == [(CTL, WHITELIST)]
    wake.clear()
    other = type("Message", (), {"topic": f"steward/doors/down/{CTL}/firmware", "payload": b"{}"})()
    inbox._on_message(None, None, other)
    assert not wake.is_set()
    assert inbox.drain() == []
    controls = DoorControls()
    assert not controls.wake.is_set()
    controls.present(CTL, A)
    assert controls.wake.is_set()
