"""Controller sync: each door controller's versioned whitelist, pushed through the outbox (issue 12 §3).

Per controller one ``access_controller_sync`` row holds what the platform last sent (the desired version, its
digest and its entries) and what the controller has acknowledged applying. The rules:

* `sync_controller` computes `whitelist_for`; when its digest differs from the desired one it bumps the version
  and queues ONE ``whitelist`` command in the caller's transaction: a delta on top of the last desired version,
  or a snapshot (in parts when long) when the controller is new, was refused (``version_gap``,
  ``digest_mismatch``, …), reported a version or digest it should not have, or on request. Then it NOTIFYs the
  outbox dispatcher, which publishes after commit. A card change calls it in the card's own transaction, so a
  revocation commits together with its command.
* `track` (the ``access_sync`` worker job) moves the applied version up — never down — from the controller's
  acknowledged commands (a delta: its version; a snapshot: once every part is acknowledged) and from its own
  reports (``device_whitelist_states``, written by ingest), and asks for a snapshot when a command was refused
  or a report does not match. pending (待同步) = applied < desired, counted from ``pending_since``.
* `request_reports` (the nightly ``access_reconcile`` job) asks every controller for its report
  (``whitelist_report``); its answer lands in ``device_whitelist_states`` and `track` compares the digest.

Retries with backoff are the outbox's (worker/outbox.py); the unsynced alarm is raised by alarms/ from
`unsynced_since` (a domain never imports alarms/).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from access.doors import CONTROLLER_KIND
from access.whitelist import Entry, whitelist_for
from protocol.topics import downlink
from protocol.whitelist import (
    WHITELIST,
    WHITELIST_REPORT,
    WhitelistEntryV1,
    whitelist_delta,
    whitelist_digest,
    whitelist_report_command,
    whitelist_snapshot,
)
from storage.models import (
    AccessCardDoor,
    AccessControllerSync,
    AccessDoor,
    Device,
    DeviceWhitelistState,
    Estate,
    Outbox,
)
from storage.notify import OUTBOX_CHANNEL
from storage.whitelist_states import ReportedWhitelist, reported_whitelists

log = logging.getLogger(__name__)

EMPTY_DIGEST = whitelist_digest([])
# A whitelist command stays useful until a newer one replaces it; the expiry only bounds a forgotten row.
COMMAND_TTL = timedelta(days=1)
REPORT_TTL = timedelta(hours=1)
# Pending with nothing left in flight (the outbox gave up, the command expired): send a snapshot again after this.
RESEND_AFTER = timedelta(minutes=10)
UNSYNCED_AFTER = timedelta(minutes=15)  # issue 12 §3: the unsynced alarm
RECONCILE_EVERY = timedelta(hours=20)  # once a night (the job runs in the small hours, access_reconcile)
RECONCILE_HOURS = range(2, 5)  # estate-local 02:00–04:59
# Refusals that mean the controller does not hold what the platform thinks: repair with a snapshot.
REPAIR_REASONS = frozenset({"version_gap", "digest_mismatch", "stale_version", "invalid"})
# A card handed over at the desk must open the door the resident walks to a minute later, even where the
# controller's clock runs a little behind the platform's (drift between NTP syncs, or none configured): the
# start on the wire is this much earlier than the card's. Ends are not widened: a revoked or expired card
# must stop at once.
CONTROLLER_CLOCK_ALLOWANCE = timedelta(minutes=2)


# --- entries on the wire ---------------------------------------------------------------------------------------


def wire_entries(entries: Iterable[Entry]) -> list[WhitelistEntryV1]:
    """The platform's entries as the wire contract's, one per UID (sorted by UID).

    Two cards with one UID in different formats are one entry on a controller, which reads UIDs only: the
    union of their doors, the later end and the earlier start (both cards are live, so either may open). Each
    start is moved `CONTROLLER_CLOCK_ALLOWANCE` earlier."""
    by_uid: dict[str, WhitelistEntryV1] = {}
    for e in entries:
        w = WhitelistEntryV1.model_validate(
            {
                "uid": e.uid,
                "doors": e.doors,
                "valid_from": e.valid_from - CONTROLLER_CLOCK_ALLOWANCE,
                "valid_until": e.valid_until,
                "schedule": e.schedule,
            }
        )
        prev = by_uid.get(w.uid)
        if prev is not None:
            until = None if prev.valid_until is None or w.valid_until is None else max(prev.valid_until, w.valid_until)
            starts = [t for t in (prev.valid_from, w.valid_from) if t is not None]
            w = WhitelistEntryV1(
                uid=w.uid,
                doors=tuple(sorted(set(prev.doors) | set(w.doors))),
                valid_from=min(starts) if starts else None,
                valid_until=until,
                schedule=None if prev.schedule is None or w.schedule is None else prev.schedule + w.schedule,
            )
        by_uid[w.uid] = w
    return [by_uid[u] for u in sorted(by_uid)]


def _as_json(entries: Sequence[WhitelistEntryV1]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in entries]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send a controller: a delta (upsert/remove on top of base_version) or a snapshot."""

    op: str  # "delta" | "snapshot" | "none"
    upsert: tuple[WhitelistEntryV1, ...] = ()
    remove: tuple[str, ...] = ()


def plan(sent: Sequence[dict[str, Any]], wanted: Sequence[WhitelistEntryV1], *, full: bool) -> Plan:
    """Delta or snapshot (pure): ``sent`` is the last desired list (wire JSON), ``wanted`` the new one."""
    if full:
        return Plan("snapshot")
    before = {e.uid: e for e in (WhitelistEntryV1.model_validate(d) for d in sent)}
    after = {e.uid: e for e in wanted}
    upsert = tuple(e for uid, e in after.items() if before.get(uid) != e)
    remove = tuple(sorted(uid for uid in before if uid not in after))
    if not upsert and not remove:
        return Plan("none")
    return Plan("delta", upsert, remove)


# --- the sync row -----------------------------------------------------------------------------------------------


def _locked_rows(session: Session, controller_ids: Sequence[int], now: datetime) -> dict[int, AccessControllerSync]:
    """The sync rows of these controllers, created (for a new controller: a snapshot first) and locked in id order,
    so two transactions syncing overlapping controllers never deadlock."""
    ids = sorted(set(controller_ids))
    if not ids:
        return {}
    session.execute(
        insert(AccessControllerSync)
        .values(
            [
                {
                    "controller_id": i,
                    "desired_version": 0,
                    "desired_digest": EMPTY_DIGEST,
                    "entries": [],
                    "applied_version": 0,
                    # What a new controller holds is unknown (a made-up list at version 0): replace it whole.
                    "full_requested": True,
                    "full_reason": "new",
                    "updated_at": now,
                }
                for i in ids
            ]
        )
        .on_conflict_do_nothing(index_elements=[AccessControllerSync.controller_id])
    )
    rows = session.scalars(
        select(AccessControllerSync)
        .where(AccessControllerSync.controller_id.in_(ids))
        .order_by(AccessControllerSync.controller_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {r.controller_id: r for r in rows}


@dataclass(frozen=True, slots=True)
class Queued:
    controller_id: int
    version: int
    op: str  # "delta" | "snapshot"
    outbox_ids: tuple[int, ...]


def _queue(
    session: Session,
    device: Device,
    estate_code: str,
    bodies: Sequence[dict[str, Any]],
    now: datetime,
    ttl: timedelta,
    command: str = WHITELIST,
) -> list[int]:
    rows = [
        Outbox(
            device_id=device.id,
            topic=downlink(estate_code, device.code, command),
            payload=body,
            created_at=now,
            expires_at=now + ttl,
            attempts=0,
        )
        for body in bodies
    ]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def _wake_dispatcher(session: Session) -> None:
    # Delivered at commit (and once per transaction): the dispatcher publishes at once instead of at its next poll.
    session.execute(text("SELECT pg_notify(:c, '')"), {"c": OUTBOX_CHANNEL})


def _supersede(session: Session, controller_id: int, version: int, now: datetime) -> None:
    """Older whitelist commands still in flight are moot once a snapshot replaces the whole list: close them
    (a controller would refuse them as stale anyway) so the outbox does not resend them."""
    session.execute(
        update(Outbox)
        .where(
            Outbox.device_id == controller_id,
            Outbox.status.in_(("pending", "sent")),
            Outbox.acked_at.is_(None),
            Outbox.topic.like(f"%/{WHITELIST}"),
            Outbox.payload["version"].as_integer() < version,
        )
        .values(status="expired", expired_at=now, next_attempt_at=None, last_error=f"superseded by version {version}")
    )


def _sync_locked(
    session: Session, row: AccessControllerSync, device: Device, estate: Estate, now: datetime
) -> Queued | None:
    wanted = wire_entries(whitelist_for(session, device.id, now))
    digest = whitelist_digest(wanted)
    if digest == row.desired_digest and not row.full_requested:
        return None
    p = plan(row.entries, wanted, full=row.full_requested)
    version = row.desired_version + 1
    bodies: list[dict[str, Any]] = []
    if p.op == "delta":
        try:
            bodies = [
                whitelist_delta(
                    command_id="0",  # replaced by the outbox id on the wire (protocol.payloads.command_wire)
                    issued_at=now,
                    expires_at=now + COMMAND_TTL,
                    version=version,
                    base_version=row.desired_version,
                    upsert=p.upsert,
                    remove=p.remove,
                )
            ]
        except ValueError:
            p = Plan("snapshot")  # too big for one message: the whole list, in parts
    if p.op in ("snapshot", "none"):  # "none" with a request: the same list again, whole
        p = Plan("snapshot")
        bodies = whitelist_snapshot(
            command_id="0", issued_at=now, expires_at=now + COMMAND_TTL, version=version, entries=wanted
        )
        _supersede(session, device.id, version, now)
        row.last_full_at, row.last_full_version = now, version
        log.info("access sync: controller %s snapshot v%d (%s)", device.code, version, row.full_reason or "request")
    ids = _queue(session, device, estate.code, bodies, now, COMMAND_TTL)
    row.desired_version, row.desired_digest, row.entries = version, digest, _as_json(wanted)
    row.full_requested, row.full_reason = False, None
    row.last_queued_at, row.updated_at = now, now
    if row.applied_version < version and row.pending_since is None:
        row.pending_since = now
    return Queued(device.id, version, p.op, tuple(ids))


def sync_controllers(
    session: Session, controller_ids: Iterable[int], now: datetime, *, full: bool = False, reason: str | None = None
) -> list[Queued]:
    """Bring each controller's desired whitelist up to date, queueing at most one change (a delta, or a snapshot
    in parts) per controller in the caller's transaction; ``full``: a snapshot even if nothing changed."""
    rows = _locked_rows(session, list(controller_ids), now)
    if not rows:
        return []
    devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(rows)))}
    estates = {
        e.id: e for e in session.scalars(select(Estate).where(Estate.id.in_({d.estate_id for d in devices.values()})))
    }
    queued = []
    for cid, row in rows.items():
        device = devices[cid]
        if full and not row.full_requested:
            row.full_requested, row.full_reason = True, reason or "request"
        q = _sync_locked(session, row, device, estates[device.estate_id], now)
        if q is not None:
            queued.append(q)
    session.flush()
    if queued:
        _wake_dispatcher(session)
    return queued


def sync_controller(session: Session, controller_id: int, now: datetime, *, full: bool = False) -> Queued | None:
    """`sync_controllers` for one controller."""
    got = sync_controllers(session, [controller_id], now, full=full)
    return got[0] if got else None


def controllers_of_cards(session: Session, card_ids: Iterable[int]) -> list[int]:
    """The controllers whose whitelists hold (or held) these cards: those of the cards' doors."""
    ids = list(set(card_ids))
    if not ids:
        return []
    return sorted(
        set(
            session.scalars(
                select(AccessDoor.controller_id)
                .join(AccessCardDoor, AccessCardDoor.door_id == AccessDoor.id)
                .where(AccessCardDoor.card_id.in_(ids))
            )
        )
    )


def sync_cards(session: Session, card_ids: Iterable[int], now: datetime) -> list[Queued]:
    """After a card change (issue, lost, return, revoke, move-out, expiry): sync the controllers of its doors."""
    return sync_controllers(session, controllers_of_cards(session, card_ids), now)


def controller_ids(session: Session, estate_id: int | None = None) -> list[int]:
    """Every door controller (of one estate)."""
    stmt = select(Device.id).where(Device.kind == CONTROLLER_KIND)
    if estate_id is not None:
        stmt = stmt.where(Device.estate_id == estate_id)
    return list(session.scalars(stmt.order_by(Device.id)))


# --- acks and reports ------------------------------------------------------------------------------------------


_ACKED_VERSIONS = text(
    """
    SELECT (payload->>'version')::bigint AS version, payload->>'op' AS op,
           coalesce((payload->>'parts')::int, 1) AS parts,
           count(*) FILTER (WHERE status = 'acknowledged') AS acked,
           max(acked_at) AS acked_at,
           array_agg(last_error) FILTER (WHERE status = 'refused') AS refusals
    FROM outbox
    WHERE device_id = :d AND topic LIKE :t AND (payload->>'version')::bigint > :applied AND acked_at IS NOT NULL
    GROUP BY 1, 2, 3
    ORDER BY 1
    """
)


@dataclass(frozen=True, slots=True)
class TrackResult:
    applied: list[int]  # controllers whose applied version moved
    repairs: list[Queued]  # snapshots queued


def _from_acks(session: Session, row: AccessControllerSync, now: datetime) -> None:
    """Move the applied version up from the acknowledged commands above it; a refusal asks for a snapshot."""
    found = session.execute(
        _ACKED_VERSIONS, {"d": row.controller_id, "t": f"%/{WHITELIST}", "applied": row.applied_version}
    ).all()
    for r in found:
        complete = r.acked >= (r.parts if r.op == "snapshot" else 1)
        if complete and r.version > row.applied_version and r.version <= row.desired_version:
            row.applied_version, row.applied_at = r.version, r.acked_at or now
        # A refusal of a command no snapshot has replaced yet: the controller does not hold what we think.
        reasons = [x for x in (r.refusals or []) if x in REPAIR_REASONS]
        if reasons and r.version >= row.last_full_version and not row.full_requested:
            row.full_requested, row.full_reason = True, reasons[0]


def _from_report(row: AccessControllerSync, rep: ReportedWhitelist | None) -> None:
    """Compare what the controller says it holds (its (re)connect status, or its answer to a command or to the
    nightly report request) with the desired list; each report is looked at once."""
    if rep is None or (row.report_checked_at is not None and rep.reported_at <= row.report_checked_at):
        return
    row.report_checked_at = rep.reported_at
    if rep.version == row.desired_version:
        if rep.digest == row.desired_digest:
            if rep.version > row.applied_version:  # the ack went missing, the report shows it applied
                row.applied_version, row.applied_at = rep.version, rep.received_at
            return
        reason = "digest"  # the right version but not the right list: changed behind the platform's back
    elif rep.version > row.desired_version:
        # A version the platform never sent (a controller from another installation, a restored database): the
        # snapshot must go above it, or the controller would refuse it as stale.
        reason = "ahead"
        row.desired_version = rep.version
    elif rep.via == "status":
        reason = "reconnect"  # back online behind: whatever it missed goes whole, at once
    else:
        return  # an answer to an older command while newer ones are on their way
    if not row.full_requested:
        row.full_requested, row.full_reason = True, reason


def _mark(row: AccessControllerSync, now: datetime) -> None:
    if row.applied_version >= row.desired_version:
        row.pending_since = None
    elif row.pending_since is None:
        row.pending_since = now
    row.updated_at = now


def track(session: Session, now: datetime, *, estate_id: int | None = None) -> TrackResult:
    """The ``access_sync`` job: new controllers get their first list; applied versions follow the acks and
    reports; refusals, reports that do not match and stalled controllers get a snapshot."""
    new = session.scalars(
        select(Device.id)
        .outerjoin(AccessControllerSync, AccessControllerSync.controller_id == Device.id)
        .where(Device.kind == CONTROLLER_KIND, AccessControllerSync.controller_id.is_(None))
        .where(*([Device.estate_id == estate_id] if estate_id is not None else []))
    ).all()
    repairs = sync_controllers(session, new, now) if new else []
    newer_report = (
        select(DeviceWhitelistState.device_id)
        .where(
            DeviceWhitelistState.device_id == AccessControllerSync.controller_id,
            (AccessControllerSync.report_checked_at.is_(None))
            | (DeviceWhitelistState.reported_at > AccessControllerSync.report_checked_at),
        )
        .exists()
    )
    stmt = (
        select(AccessControllerSync)
        .where(
            (AccessControllerSync.applied_version < AccessControllerSync.desired_version)
            | AccessControllerSync.full_requested
            | newer_report
        )
        .order_by(AccessControllerSync.controller_id)
        # Lock only the sync rows (not the joined devices); a row a card change holds is taken next pass.
        .with_for_update(skip_locked=True, of=AccessControllerSync)
    )
    if estate_id is not None:
        stmt = stmt.join(Device, Device.id == AccessControllerSync.controller_id).where(Device.estate_id == estate_id)
    rows = list(session.scalars(stmt))
    reports = reported_whitelists(session, device_ids=[r.controller_id for r in rows]) if rows else {}
    moved: list[int] = []
    again: list[int] = []
    for row in rows:
        before = row.applied_version
        _from_acks(session, row, now)
        _from_report(row, reports.get(row.controller_id))
        _mark(row, now)
        if row.applied_version != before:
            moved.append(row.controller_id)
        if row.full_requested:
            again.append(row.controller_id)
        elif row.pending_since is not None and _stalled(session, row, now):
            row.full_requested, row.full_reason = True, "stalled"
            again.append(row.controller_id)
    session.flush()
    if again:
        repairs += sync_controllers(session, again, now)
    return TrackResult(moved, repairs)


def _stalled(session: Session, row: AccessControllerSync, now: datetime) -> bool:
    """Behind, nothing of it left in flight (acknowledged, refused, given up or expired) and quiet a while."""
    if row.last_queued_at is not None and now - row.last_queued_at < RESEND_AFTER:
        return False
    open_rows = session.scalar(
        select(func.count())
        .select_from(Outbox)
        .where(
            Outbox.device_id == row.controller_id,
            Outbox.topic.like(f"%/{WHITELIST}"),
            Outbox.status.in_(("pending", "sent")),
        )
    )
    return not open_rows


# --- the unsynced alarm's input, and the nightly reconciliation ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unsynced:
    controller_id: int
    desired_version: int
    applied_version: int
    pending_since: datetime


def unsynced_since(session: Session, before: datetime) -> list[Unsynced]:
    """Controllers behind since `before` or earlier (the alarm engine raises for them, alarms/access_sync.py)."""
    rows = session.execute(
        select(
            AccessControllerSync.controller_id,
            AccessControllerSync.desired_version,
            AccessControllerSync.applied_version,
            AccessControllerSync.pending_since,
        )
        .where(AccessControllerSync.pending_since.is_not(None), AccessControllerSync.pending_since <= before)
        .order_by(AccessControllerSync.controller_id)
    ).all()
    return [Unsynced(r[0], r[1], r[2], r[3]) for r in rows if r[3] is not None]


def request_reports(session: Session, now: datetime, *, force: bool = False, estate_id: int | None = None) -> list[int]:
    """The nightly reconciliation: ask each controller for its whitelist report (in its estate's small hours,
    once a night; ``force``: every controller now). Its answer is compared by `track`. Returns outbox ids."""
    from zoneinfo import ZoneInfo

    ids = controller_ids(session, estate_id)
    rows = _locked_rows(session, ids, now)
    devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(rows)))}
    estates = {
        e.id: e for e in session.scalars(select(Estate).where(Estate.id.in_({d.estate_id for d in devices.values()})))
    }
    queued: list[int] = []
    for cid, row in rows.items():
        device = devices[cid]
        estate = estates[device.estate_id]
        if not force:
            if now.astimezone(ZoneInfo(estate.timezone)).hour not in RECONCILE_HOURS:
                continue
            if row.reconcile_requested_at is not None and now - row.reconcile_requested_at < RECONCILE_EVERY:
                continue
        body = whitelist_report_command(command_id="0", issued_at=now, expires_at=now + REPORT_TTL)
        queued += _queue(session, device, estate.code, [body], now, REPORT_TTL, WHITELIST_REPORT)
        row.reconcile_requested_at = now
    session.flush()
    if queued:
        _wake_dispatcher(session)
    return queued


__all__ = [
    "COMMAND_TTL",
    "EMPTY_DIGEST",
    "UNSYNCED_AFTER",
    "Plan",
    "Queued",
    "TrackResult",
    "Unsynced",
    "controller_ids",
    "controllers_of_cards",
    "plan",
    "request_reports",
    "sync_cards",
    "sync_controller",
    "sync_controllers",
    "track",
    "unsynced_since",
    "wire_entries",
]
