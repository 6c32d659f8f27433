"""Write one decoded batch inside the caller's transaction, idempotently.

Arrays travel in PostgreSQL's binary format (``%(x)b``): psycopg's text conversion of three
10,000-element arrays was half of the batch thread's time.

Every insert is ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` on the device-time key:
one round trip per table, and a redelivered message (QoS 1 is at-least-once) becomes a counted no-op.

Samples, the bulk, may go in without ON CONFLICT (``expect_duplicates=False``): PostgreSQL's
speculative insertion made the statement about 40 % slower (650 → 360-460 ms per 47,500 rows with the
rollup, side by side), and duplicates are rare (redeliveries after a reconnect or a crash). A
duplicate then raises UniqueViolation and the caller writes the batch again with ON CONFLICT
(ingest/pipeline.py). Not a savepoint: rows inserted in a subtransaction carry the subtransaction's
xid, and the alarm evaluators tell this batch's rows by ``xmin = pg_current_xact_id()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from ingest.decode import DecodedBatch, WhitelistReport
from storage.notify import DEVICE_REPORTS_CHANNEL, INGEST_CHANNEL
from storage.pg_arrays import float8_array, int4_array, timestamptz_array

NOTIFY_CHANNEL = INGEST_CHANNEL  # named in storage/notify.py, where the dashboards listen

SAMPLES_SQL = """
INSERT INTO samples (ts, point_id, value)
SELECT * FROM unnest(%(ts)b::timestamptz[], %(point)b::int[], %(value)b::float8[])
ON CONFLICT DO NOTHING
"""
ON_CONFLICT = "ON CONFLICT DO NOTHING"

# Without TimescaleDB the hourly rollup is ours to keep: fold in exactly the rows that were new.
SAMPLES_WITH_ROLLUP_SQL = """
WITH ins AS (
  INSERT INTO samples (ts, point_id, value)
  SELECT * FROM unnest(%(ts)b::timestamptz[], %(point)b::int[], %(value)b::float8[])
  ON CONFLICT DO NOTHING
  RETURNING ts, point_id, value
), agg AS (
  SELECT point_id, date_trunc('hour', ts, 'UTC') AS bucket, count(*) AS n, sum(value) AS total,
         min(value) AS min, max(value) AS max, max(ts) AS last_ts,
         (array_agg(value ORDER BY ts DESC))[1] AS last
  FROM ins GROUP BY 1, 2 ORDER BY 1, 2
), roll AS (
  INSERT INTO samples_hourly AS h (point_id, bucket, n, total, min, max, last_ts, last)
  SELECT * FROM agg
  ON CONFLICT (point_id, bucket) DO UPDATE SET
    n = h.n + excluded.n, total = h.total + excluded.total,
    min = least(h.min, excluded.min), max = greatest(h.max, excluded.max),
    last = CASE WHEN excluded.last_ts >= h.last_ts THEN excluded.last ELSE h.last END,
    last_ts = greatest(h.last_ts, excluded.last_ts)
)
SELECT count(*) FROM ins
"""

# The fast statements: no speculative insertion; a duplicate raises UniqueViolation.
SAMPLES_NO_DEDUP_SQL = SAMPLES_SQL.replace(ON_CONFLICT, "")
SAMPLES_WITH_ROLLUP_NO_DEDUP_SQL = SAMPLES_WITH_ROLLUP_SQL.replace(ON_CONFLICT, "", 1)

METERS_SQL = """
INSERT INTO meter_readings (ts, device_id, register, reverse_register, valve, flags, seq, received_at)
SELECT ts, device_id, register, reverse_register, valve,
       coalesce(string_to_array(nullif(flags, ''), ','), '{}'), seq, received_at
FROM unnest(%(ts)b::timestamptz[], %(device)b::int[], %(register)b::numeric[], %(reverse)b::numeric[],
            %(valve)b::text[], %(flags)b::text[], %(seq)b::bigint[], %(received)b::timestamptz[])
     AS t(ts, device_id, register, reverse_register, valve, flags, seq, received_at)
ON CONFLICT DO NOTHING
"""

SWIPES_SQL = """
INSERT INTO access_events (ts, controller_id, door, card_uid, granted, reason, seq, received_at)
SELECT * FROM unnest(%(ts)b::timestamptz[], %(device)b::int[], %(door)b::text[], %(card)b::text[],
                     %(granted)b::bool[], %(reason)b::text[], %(seq)b::bigint[], %(received)b::timestamptz[])
ON CONFLICT DO NOTHING
"""

DEVICE_SEEN_SQL = """
INSERT INTO device_state AS s (device_id, last_seen_at, last_ts, last_seq)
SELECT device_id, %(now)s, last_ts, last_seq
FROM unnest(%(device)b::int[], %(last_ts)b::timestamptz[], %(last_seq)b::bigint[]) AS t(device_id, last_ts, last_seq)
ORDER BY device_id
ON CONFLICT (device_id) DO UPDATE SET
  last_seen_at = excluded.last_seen_at,
  last_ts = greatest(s.last_ts, excluded.last_ts),
  last_seq = coalesce(excluded.last_seq, s.last_seq)
"""

# Only a newer status (by device time) replaces the stored one: a late status must not win.
DEVICE_STATUS_SQL = """
UPDATE device_state s SET online = t.online, battery_v = t.battery_v, status_ts = t.ts
FROM unnest(%(device)b::int[], %(ts)b::timestamptz[], %(online)b::bool[], %(battery)b::float8[])
     AS t(device_id, ts, online, battery_v)
WHERE s.device_id = t.device_id AND (s.status_ts IS NULL OR t.ts >= s.status_ts)
"""

SEQ_GAPS_SQL = """
INSERT INTO seq_gaps (device_id, first_missing, last_missing)
SELECT * FROM unnest(%(device)b::int[], %(first)b::bigint[], %(last)b::bigint[])
"""

DEAD_LETTERS_SQL = """
INSERT INTO dead_letters (received_at, topic, payload, error)
SELECT * FROM unnest(%(received)b::timestamptz[], %(topic)b::text[], %(payload)b::bytea[], %(error)b::text[])
"""

QUARANTINE_SQL = """
INSERT INTO quarantined_messages (received_at, topic, device_code, payload, reason, detail)
SELECT * FROM unnest(%(received)b::timestamptz[], %(topic)b::text[], %(device)b::text[], %(payload)b::bytea[],
                     %(reason)b::text[], %(detail)b::text[])
"""

# An ack names its command by id, and counts only on the topic of the device the command was for: one device
# cannot acknowledge another's command (issue 9 #6). "applied" closes the row 'acknowledged'; any other answer
# (a whitelist refusal, a valve command rejected or dropped as expired) closes it 'refused' with the reason, so
# the dispatcher never resends it. The first answer wins (``acked_at IS NULL``): a device answers a repeated
# command id with its first answer anyway, and a redelivered ack changes nothing. A late answer still counts
# (even after 'failed' or 'expired'): the device did see the command, and the page should say what it did.
# Except that a row the outbox already marked 'expired' stays 'expired' when the device also dropped it as
# expired (a stale command replayed after a reconnect, matrix M18): both sides agree it was never applied.
OUTBOX_ACK_SQL = """
UPDATE outbox SET acked_at = %(at)s, next_attempt_at = NULL,
  status = CASE WHEN a.status = 'applied' THEN 'acknowledged'
                WHEN a.status = 'expired' AND outbox.status = 'expired' THEN 'expired' ELSE 'refused' END,
  last_error = CASE WHEN a.status = 'applied' THEN outbox.last_error ELSE coalesce(a.reason, a.status) END
FROM unnest(%(ids)b::bigint[], %(devices)b::integer[], %(statuses)b::text[], %(reasons)b::text[])
     AS a(id, device, status, reason)
WHERE outbox.id = a.id AND outbox.device_id = a.device AND outbox.acked_at IS NULL
RETURNING outbox.id, outbox.device_id, outbox.status
"""

# What a controller says it holds: a newer report (by reported_at, module decode.WhitelistReport) replaces the
# stored one; an older or redelivered one (same reported_at) changes nothing. Returns the devices whose version,
# digest or entry count changed (or that reported for the first time), for the NOTIFY. ``old`` reads the
# statement's snapshot, i.e. the state before this upsert.
WHITELIST_STATES_SQL = """
WITH old AS (
  SELECT device_id, version, digest, entries FROM device_whitelist_states WHERE device_id = ANY(%(device)b::int[])
), up AS (
  INSERT INTO device_whitelist_states AS w (device_id, version, digest, entries, reported_at, received_at, via)
  SELECT * FROM unnest(%(device)b::int[], %(version)b::bigint[], %(digest)b::text[], %(entries)b::int[],
                       %(reported)b::timestamptz[], %(received)b::timestamptz[], %(via)b::text[])
  ORDER BY 1
  ON CONFLICT (device_id) DO UPDATE SET
    version = excluded.version, digest = excluded.digest, entries = excluded.entries,
    reported_at = excluded.reported_at, received_at = excluded.received_at, via = excluded.via
  WHERE excluded.reported_at > w.reported_at
  RETURNING w.device_id, w.version, w.digest, w.entries
)
SELECT up.device_id FROM up LEFT JOIN old ON old.device_id = up.device_id
WHERE old.device_id IS NULL
   OR (old.version, old.digest, old.entries) IS DISTINCT FROM (up.version, up.digest, up.entries)
"""

DEVICE_REPORTS_NOTIFY_SQL = "SELECT pg_notify(%(channel)s, d::text) FROM unnest(%(device)b::int[]) AS d"


@dataclass(frozen=True, slots=True)
class WriteResult:
    samples_stored: int
    meters_stored: int
    swipes_stored: int
    readings_offered: int

    @property
    def stored(self) -> int:
        return self.samples_stored + self.meters_stored + self.swipes_stored

    @property
    def duplicates(self) -> int:
        return self.readings_offered - self.stored


def _scalar(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    return int(conn.exec_driver_sql(sql, params).scalar_one())


def _rowcount(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    return int(conn.exec_driver_sql(sql, params).rowcount)


def _insert_samples(conn: Connection, batch: DecodedBatch, *, keep_rollup: bool, expect_duplicates: bool) -> int:
    params = {
        "ts": timestamptz_array(batch.sample_ts),
        "point": int4_array(batch.sample_point),
        "value": float8_array(batch.sample_value),
    }
    if keep_rollup:
        return _scalar(conn, SAMPLES_WITH_ROLLUP_SQL if expect_duplicates else SAMPLES_WITH_ROLLUP_NO_DEDUP_SQL, params)
    return _rowcount(conn, SAMPLES_SQL if expect_duplicates else SAMPLES_NO_DEDUP_SQL, params)


def _outbox_id(command_id: str) -> int | None:
    # A command id that is no outbox id (a uuid, a forged 30-digit number) matches nothing: skip it here
    # rather than let a bigint overflow fail the batch.
    if command_id.isascii() and command_id.isdigit() and len(command_id) <= 18:
        return int(command_id)
    return None


def _close_answered_commands(conn: Connection, batch: DecodedBatch, now: datetime) -> list[tuple[int, int, str]]:
    """Close each command the batch answers (OUTBOX_ACK_SQL); (outbox id, device id, new status) of those closed."""
    first: dict[tuple[int, int], tuple[str, str | None]] = {}
    for ack in batch.acks:
        oid = _outbox_id(ack.command_id)
        if oid is not None:
            # Several answers in one batch (a redelivery): the first one, as across batches.
            first.setdefault((oid, ack.device_id), (ack.status, ack.reason))
    if not first:
        return []
    keys = sorted(first)
    rows = conn.exec_driver_sql(
        OUTBOX_ACK_SQL,
        {
            "at": now,
            "ids": [k[0] for k in keys],
            "devices": [k[1] for k in keys],
            "statuses": [first[k][0] for k in keys],
            "reasons": [first[k][1] for k in keys],
        },
    ).all()
    return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]


def _store_whitelist_states(conn: Connection, batch: DecodedBatch, closed: list[tuple[int, int, str]]) -> set[int]:
    """Upsert each controller's newest whitelist report of the batch; the devices whose state changed.

    An ack's state counts only when that ack closed its command just now (its first answer): a redelivered
    ack arrives later than the reports after it and would otherwise move the state back."""
    answered = {(oid, device) for oid, device, _ in closed}
    latest: dict[int, WhitelistReport] = {}
    for r in batch.whitelists:
        if r.via == "ack":
            oid = _outbox_id(r.command_id or "")
            if oid is None or (oid, r.device_id) not in answered:
                continue
        prev = latest.get(r.device_id)
        if prev is None or r.reported_at >= prev.reported_at:  # a tie: the later message
            latest[r.device_id] = r
    if not latest:
        return set()
    reports = [latest[d] for d in sorted(latest)]
    rows = conn.exec_driver_sql(
        WHITELIST_STATES_SQL,
        {
            "device": [r.device_id for r in reports],
            "version": [r.version for r in reports],
            "digest": [r.digest for r in reports],
            "entries": [r.entries for r in reports],
            "reported": [r.reported_at for r in reports],
            "received": [r.received_at for r in reports],
            "via": [r.via for r in reports],
        },
    ).all()
    return {int(r[0]) for r in rows}


def write_batch(
    conn: Connection,
    batch: DecodedBatch,
    *,
    now: datetime,
    gaps: list[tuple[int, int, int]],
    last_seq: dict[int, int],
    keep_rollup: bool,
    expect_duplicates: bool = True,
) -> WriteResult:
    """Insert everything in ``batch``, the detected seq ``gaps`` (device, first, last missing) and each
    device's ``last_seq`` as the seq tracker now sees it. ``expect_duplicates=False``: samples without
    ON CONFLICT, so a duplicate raises UniqueViolation (module doc)."""
    samples = meters = swipes = 0
    if batch.sample_ts:
        samples = _insert_samples(conn, batch, keep_rollup=keep_rollup, expect_duplicates=expect_duplicates)
    if batch.meters:
        cols = list(zip(*batch.meters, strict=True))
        meters = _rowcount(
            conn,
            METERS_SQL,
            {
                "ts": list(cols[0]),
                "device": list(cols[1]),
                "register": list(cols[2]),
                "reverse": list(cols[3]),
                "valve": list(cols[4]),
                "flags": [",".join(f) for f in cols[5]],
                "seq": list(cols[6]),
                "received": list(cols[7]),
            },
        )
    if batch.swipes:
        cols = list(zip(*batch.swipes, strict=True))
        keys = ("ts", "device", "door", "card", "granted", "reason", "seq", "received")
        swipes = _rowcount(conn, SWIPES_SQL, {k: list(c) for k, c in zip(keys, cols, strict=True)})
    if batch.seen:
        devices = sorted(batch.seen)
        conn.exec_driver_sql(
            DEVICE_SEEN_SQL,
            {
                "now": now,
                "device": devices,
                "last_ts": [batch.seen[d][0] for d in devices],
                "last_seq": [last_seq.get(d) for d in devices],
            },
        )
    if batch.statuses:
        latest: dict[int, tuple[datetime, bool, float | None]] = {}
        for device_id, ts, online, battery in batch.statuses:
            if device_id not in latest or ts >= latest[device_id][0]:
                latest[device_id] = (ts, online, battery)
        devices = sorted(latest)
        conn.exec_driver_sql(
            DEVICE_STATUS_SQL,
            {
                "device": devices,
                "ts": [latest[d][0] for d in devices],
                "online": [latest[d][1] for d in devices],
                "battery": [latest[d][2] for d in devices],
            },
        )
    if gaps:
        conn.exec_driver_sql(
            SEQ_GAPS_SQL, {"device": [g[0] for g in gaps], "first": [g[1] for g in gaps], "last": [g[2] for g in gaps]}
        )
    if batch.dead_letters:
        dl = batch.dead_letters
        conn.exec_driver_sql(
            DEAD_LETTERS_SQL,
            {
                "received": [d.received_at for d in dl],
                "topic": [d.topic for d in dl],
                "payload": [d.payload for d in dl],
                "error": [d.error for d in dl],
            },
        )
    if batch.quarantined:
        q = batch.quarantined
        conn.exec_driver_sql(
            QUARANTINE_SQL,
            {
                "received": [r.received_at for r in q],
                "topic": [r.topic for r in q],
                "device": [r.device_code for r in q],
                "payload": [r.payload for r in q],
                "reason": [r.reason for r in q],
                "detail": [r.detail for r in q],
            },
        )
    closed = _close_answered_commands(conn, batch, now)
    changed = _store_whitelist_states(conn, batch, closed)
    refused = {device for _, device, status in closed if status == "refused"}
    if refused or changed:
        # Payload: a device id (access/ re-reads what it needs). Delivered on commit, deduplicated per transaction.
        conn.exec_driver_sql(
            DEVICE_REPORTS_NOTIFY_SQL, {"channel": DEVICE_REPORTS_CHANNEL, "device": sorted(refused | changed)}
        )
    result = WriteResult(samples, meters, swipes, batch.readings)
    notify = {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "dead_letters": len(batch.dead_letters),
        "quarantined": len(batch.quarantined),
        "devices": len(batch.seen),
    }
    # Delivered to listeners only when this transaction commits, so live views never see rolled-back rows.
    conn.exec_driver_sql(
        "SELECT pg_notify(%(channel)s, %(payload)s)", {"channel": NOTIFY_CHANNEL, "payload": json.dumps(notify)}
    )
    return result
