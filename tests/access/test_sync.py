"""Controller sync (issue 12 §3) without a broker: which command a card change queues (delta or snapshot, one per
controller, in the card's transaction), how acks and refusals move the applied version (never down), the
unsynced alarm under a pinned clock, and the nightly report request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from access import service, sync
from access.whitelist import whitelist_for
from alarms.access_sync import UNSYNCED_RULE, check_unsynced
from protocol.whitelist import WhitelistCommandV1, WhitelistEntryV1, whitelist_digest
from storage.models import AccessControllerSync, Alarm, AlarmRuleRow, DeviceWhitelistState, Outbox
from tests.support.access_world import CardPlace, make_card_estate, new_uid
from tests.support.clock import SH, FrozenClock, pinned

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=SH)


@pytest.fixture
def clock_at() -> Iterator[FrozenClock]:
    with pinned(T0) as frozen:
        yield frozen


@pytest.fixture
def place(session: Session, clock_at: FrozenClock) -> CardPlace:
    return make_card_estate(session)


def owner(session: Session, place: CardPlace, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "estate_id": place.estate_id,
        "card_type": "owner",
        "uid": new_uid(),
        "holder_name": "张三丰",
        "unit_id": place.unit_id,
        "actor": "card-desk",
        "door_codes": ["gate-n", "1-1-main"],
    }
    args.update(kw)
    return service.issue(session, **args)


def commands(session: Session, controller_id: int) -> list[Outbox]:
    return list(
        session.scalars(
            select(Outbox)
            .where(Outbox.device_id == controller_id, Outbox.topic.like("%/whitelist"))
            .order_by(Outbox.id)
        )
    )


def state(session: Session, controller_id: int) -> AccessControllerSync:
    row = session.get(AccessControllerSync, controller_id, populate_existing=True)
    assert row is not None
    return row


def ack(session: Session, row: Outbox, status: str = "acknowledged", reason: str | None = None) -> None:
    """What ingest does with the controller's answer (ingest/writer.py)."""
    session.execute(
        update(Outbox)
        .where(Outbox.id == row.id)
        .values(status=status, acked_at=row.created_at + timedelta(seconds=1), last_error=reason)
    )


def test_a_new_controller_gets_a_snapshot_then_deltas_with_consecutive_versions(
    session: Session, place: CardPlace, clock_at: FrozenClock
) -> None:
    gate = place.controllers["GATE"]
    first = owner(session, place)
    (snap,) = commands(session, gate)
    cmd = WhitelistCommandV1.model_validate(snap.payload)
    assert (cmd.op, cmd.version, [e.uid for e in cmd.entries or ()]) == ("snapshot", 1, [first.uid])
    assert cmd.digest == whitelist_digest(sync.wire_entries(whitelist_for(session, gate, T0)))
    assert snap.topic.endswith(f"/down/{place.code.upper()}-GATE/whitelist")
    s = state(session, gate)
    assert (s.desired_version, s.applied_version, s.pending_since) == (1, 0, T0)

    clock_at.advance(timedelta(minutes=1))
    second = owner(session, place)
    _, delta = commands(session, gate)
    d = WhitelistCommandV1.model_validate(delta.payload)
    assert (d.op, d.version, d.base_version) == ("delta", 2, 1)
    assert ([e.uid for e in d.upsert], d.remove) == ([second.uid], ())

    service.revoke(session, first.id, actor="card-desk", reason="test")
    *_, revoke = commands(session, gate)
    r = WhitelistCommandV1.model_validate(revoke.payload)
    assert (r.op, r.version, r.base_version, r.upsert, r.remove) == ("delta", 3, 2, (), (first.uid,))
    # Garage and the equipment room are not in these cards' scope: nothing queued there.
    assert commands(session, place.controllers["GARAGE"]) == []


def test_no_change_queues_nothing_and_a_lost_card_with_replacement_is_one_delta(
    session: Session, place: CardPlace
) -> None:
    gate = place.controllers["GATE"]
    card = owner(session, place)
    assert sync.sync_controller(session, gate, T0) is None  # same digest: nothing to send
    n = len(commands(session, gate))
    new = new_uid()
    service.report_lost(session, card.id, actor="card-desk", replacement_uid=new)
    added = commands(session, gate)[n:]
    assert len(added) == 1
    d = WhitelistCommandV1.model_validate(added[0].payload)
    assert ([e.uid for e in d.upsert], d.remove) == ([new], (card.uid,))


def test_acks_move_the_applied_version_up_never_down(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    a = owner(session, place)
    owner(session, place)
    snap, delta = commands(session, gate)
    ack(session, delta)  # v2 acked before v1: v2 applies on top of v1, so the controller holds v2
    sync.track(session, T0 + timedelta(seconds=5), estate_id=place.estate_id)
    s = state(session, gate)
    assert (s.applied_version, s.pending_since) == (2, None)
    ack(session, snap)  # the late ack of v1 never moves it back
    sync.track(session, T0 + timedelta(seconds=6), estate_id=place.estate_id)
    assert state(session, gate).applied_version == 2

    service.revoke(session, a.id, actor="card-desk", reason="test")
    s = state(session, gate)
    assert (s.desired_version, s.applied_version) == (3, 2)
    assert s.pending_since is not None  # 待同步 until v3 is acknowledged


def test_a_snapshot_in_parts_applies_once_every_part_is_acknowledged(
    session: Session, place: CardPlace, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = place.controllers["GATE"]
    for _ in range(3):
        owner(session, place)
    small = sync.whitelist_snapshot

    def tiny(**kw: Any) -> list[dict[str, Any]]:
        return small(**kw, max_bytes=500)

    monkeypatch.setattr(sync, "whitelist_snapshot", tiny)
    (q,) = sync.sync_controllers(session, [gate], T0, full=True)
    assert q.op == "snapshot"
    assert len(q.outbox_ids) >= 2
    parts = [session.get(Outbox, i) for i in q.outbox_ids]
    for p in parts[:-1]:
        assert p is not None
        ack(session, p)
    sync.track(session, T0, estate_id=place.estate_id)
    assert state(session, gate).applied_version < q.version
    assert parts[-1] is not None
    ack(session, parts[-1])
    sync.track(session, T0, estate_id=place.estate_id)
    assert state(session, gate).applied_version == q.version


def test_a_snapshot_supersedes_commands_still_in_flight(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)
    owner(session, place)
    (q,) = sync.sync_controllers(session, [gate], T0, full=True, reason="request")
    rows = commands(session, gate)
    assert [(r.status, r.payload["version"]) for r in rows] == [
        ("expired", 1),
        ("expired", 2),
        ("pending", q.version),
    ]
    assert rows[0].last_error == f"superseded by version {q.version}"


@pytest.mark.parametrize("reason", ["version_gap", "digest_mismatch"])
def test_a_refusal_is_repaired_with_a_snapshot(session: Session, place: CardPlace, reason: str) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)
    owner(session, place)
    snap, delta = commands(session, gate)
    ack(session, snap)
    ack(session, delta, status="refused", reason=reason)
    result = sync.track(session, T0 + timedelta(seconds=5), estate_id=place.estate_id)
    (repair,) = [q for q in result.repairs if q.controller_id == gate]
    assert (repair.op, repair.version) == ("snapshot", 3)
    cmd = WhitelistCommandV1.model_validate(commands(session, gate)[-1].payload)
    assert cmd.op == "snapshot"
    assert cmd.digest == state(session, gate).desired_digest
    # Tracked again: the refusal is behind the snapshot now, nothing more is queued.
    again = sync.track(session, T0 + timedelta(seconds=6), estate_id=place.estate_id)
    assert [q for q in again.repairs if q.controller_id == gate] == []


def test_a_stalled_controller_gets_a_snapshot_again(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)
    (snap,) = commands(session, gate)
    session.execute(update(Outbox).where(Outbox.id == snap.id).values(status="failed"))  # the outbox gave up
    early = sync.track(session, T0 + timedelta(minutes=5), estate_id=place.estate_id)
    assert [q for q in early.repairs if q.controller_id == gate] == []
    later = sync.track(session, T0 + sync.RESEND_AFTER, estate_id=place.estate_id)
    (again,) = [q for q in later.repairs if q.controller_id == gate]
    assert (again.op, again.version) == ("snapshot", 2)


def test_the_unsynced_alarm_fires_after_15_minutes_and_clears_when_synced(
    session: Session, place: CardPlace, clock_at: FrozenClock
) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)  # pending from T0

    def open_alarm() -> Alarm | None:
        return session.scalars(
            select(Alarm)
            .join(AlarmRuleRow, AlarmRuleRow.id == Alarm.rule_id)
            .where(AlarmRuleRow.code == UNSYNCED_RULE, Alarm.device_id == gate, Alarm.state != "cleared")
        ).one_or_none()

    check_unsynced(session, T0 + timedelta(minutes=14, seconds=59))
    assert open_alarm() is None
    check_unsynced(session, T0 + timedelta(minutes=15))
    alarm = open_alarm()
    assert alarm is not None
    assert (alarm.detail["desired_version"], alarm.detail["applied_version"]) == (1, 0)
    check_unsynced(session, T0 + timedelta(minutes=16))  # still one alarm
    still = open_alarm()
    assert still is not None
    assert still.id == alarm.id

    (snap,) = commands(session, gate)
    ack(session, snap)
    sync.track(session, T0 + timedelta(minutes=17), estate_id=place.estate_id)
    check_unsynced(session, T0 + timedelta(minutes=17))
    assert open_alarm() is None
    session.refresh(alarm)
    assert alarm.state == "cleared"


def test_expiry_takes_the_card_off_the_list(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    visitor = owner(session, place, card_type="visitor", valid_until=T0 + timedelta(hours=2))
    n = len(commands(session, gate))
    service.expire_due(session, T0 + timedelta(hours=3))
    (d,) = commands(session, gate)[n:]
    cmd = WhitelistCommandV1.model_validate(d.payload)
    assert cmd.remove == (visitor.uid,)


def test_the_nightly_reconciliation_asks_in_the_small_hours_once_a_night(session: Session, place: CardPlace) -> None:
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=SH)
    night = datetime(2026, 12, 2, 3, 0, tzinfo=SH)
    mine = set(place.controllers.values())

    def asked(at: datetime) -> set[int]:
        ids = sync.request_reports(session, at, estate_id=place.estate_id)
        return {r.device_id for r in session.scalars(select(Outbox).where(Outbox.id.in_(ids))) if r.device_id}

    assert asked(noon) == set()
    assert asked(night) == mine
    assert asked(night + timedelta(minutes=15)) == set()
    reports = session.scalars(select(Outbox).where(Outbox.topic.like("%/whitelist_report"), Outbox.device_id.in_(mine)))
    assert {r.payload.get("op") for r in reports} == {None}


def test_wire_entries_merge_one_uid_in_two_formats() -> None:
    from access.whitelist import Entry

    t = T0
    both = sync.wire_entries(
        [
            Entry("0A0B0C0D", "mifare4", t, t + timedelta(days=1), None, ("a",)),
            Entry("0A0B0C0D", "em4100", t - timedelta(days=1), None, None, ("b",)),
        ]
    )
    early = sync.CONTROLLER_CLOCK_ALLOWANCE
    assert both == [WhitelistEntryV1(uid="0A0B0C0D", doors=("a", "b"), valid_from=t - timedelta(days=1) - early)]


def test_a_card_issued_now_opens_at_a_controller_whose_clock_is_a_minute_behind() -> None:
    from access.whitelist import Entry

    (entry,) = sync.wire_entries([Entry("0A0B0C0D", "mifare4", T0, None, None, ("a",))])
    assert entry.denial("a", T0 - timedelta(minutes=1), UTC) is None
    assert entry.denial("a", T0 - timedelta(minutes=3), UTC) == "not_yet_valid"


def test_plan_is_a_delta_of_changes_only() -> None:
    a = WhitelistEntryV1(uid="0A0A0A0A", doors=("x",))
    b = WhitelistEntryV1(uid="0B0B0B0B", doors=("x",))
    b2 = WhitelistEntryV1(uid="0B0B0B0B", doors=("x", "y"))
    sent = [a.model_dump(mode="json"), b.model_dump(mode="json")]
    assert sync.plan(sent, [a, b], full=False).op == "none"
    p = sync.plan(sent, [b2], full=False)
    assert (p.op, p.upsert, p.remove) == ("delta", (b2,), ("0A0A0A0A",))
    assert sync.plan(sent, [a, b], full=True).op == "snapshot"


def report(session: Session, controller_id: int, version: int, digest: str, at: datetime, via: str = "status") -> None:
    """What ingest stores from a controller's status or ack (ingest/writer.py, device_whitelist_states)."""
    session.execute(
        pg_insert(DeviceWhitelistState)
        .values(
            device_id=controller_id, version=version, digest=digest, entries=0, reported_at=at, received_at=at, via=via
        )
        .on_conflict_do_update(
            index_elements=[DeviceWhitelistState.device_id],
            set_={"version": version, "digest": digest, "reported_at": at, "received_at": at, "via": via},
        )
    )


def test_a_controller_reconnecting_behind_gets_a_snapshot_at_once(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    a = owner(session, place)
    (snap,) = commands(session, gate)
    ack(session, snap)
    sync.track(session, T0 + timedelta(seconds=1), estate_id=place.estate_id)
    held = state(session, gate).desired_digest  # v1, with the card on it
    service.revoke(session, a.id, actor="card-desk", reason="test")  # v2, missed while offline
    report(session, gate, 1, held, T0 + timedelta(seconds=30))  # back online, still at v1
    result = sync.track(session, T0 + timedelta(seconds=31), estate_id=place.estate_id)
    (repair,) = [q for q in result.repairs if q.controller_id == gate]
    assert (repair.op, repair.version) == ("snapshot", 3)
    statuses = [(r.payload["version"], r.status) for r in commands(session, gate)]
    assert statuses == [(1, "acknowledged"), (2, "expired"), (3, "pending")]  # the missed delta is superseded
    # The same report looked at again queues nothing more.
    again = sync.track(session, T0 + timedelta(seconds=32), estate_id=place.estate_id)
    assert [q for q in again.repairs if q.controller_id == gate] == []


def test_a_report_of_the_desired_list_marks_it_applied_and_a_tampered_list_is_repaired(
    session: Session, place: CardPlace
) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)
    s = state(session, gate)
    report(session, gate, 1, s.desired_digest, T0 + timedelta(seconds=2), via="ack")  # the ack row went missing
    sync.track(session, T0 + timedelta(seconds=3), estate_id=place.estate_id)
    s = state(session, gate)
    assert (s.applied_version, s.pending_since) == (1, None)

    # The nightly report: same version, another digest (changed behind the platform's back).
    report(session, gate, 1, "0" * 64, T0 + timedelta(hours=17), via="ack")
    result = sync.track(session, T0 + timedelta(hours=17, seconds=1), estate_id=place.estate_id)
    (repair,) = [q for q in result.repairs if q.controller_id == gate]
    assert (repair.op, repair.version) == ("snapshot", 2)
    cmd = WhitelistCommandV1.model_validate(commands(session, gate)[-1].payload)
    assert cmd.digest == s.desired_digest  # the same list, whole, at a new version


def test_a_report_of_a_version_never_sent_is_repaired(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    owner(session, place)
    report(session, gate, 7, whitelist_digest([]), T0 + timedelta(seconds=2))
    result = sync.track(session, T0 + timedelta(seconds=3), estate_id=place.estate_id)
    # Above the version it holds, or it would refuse the snapshot as stale.
    assert [(q.op, q.version) for q in result.repairs if q.controller_id == gate] == [("snapshot", 8)]
