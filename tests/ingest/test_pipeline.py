"""The ingest pipeline without a broker: RawMessages in, committed rows out, acks only after the commit.

Each test has an estate of its own (``estate`` fixture) in the shared session database and a Pipeline
prepared after that estate was imported, with a fake ``ack`` that records acknowledged message ids.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from core import clock
from ingest.decode import DEAD_LETTER_KEEP_BYTES, Reason
from ingest.messages import RawMessage
from tests.ingest.conftest import Estate, FakeAck, Harness, frame, make_harness, raw
from tests.support.estate import METRICS

NOW = clock.now().replace(microsecond=0)
N = len(METRICS)


def tel(est: Estate, i: int, ts: datetime | str, seq: int | None = None, base: float = 20.0, **kw: Any) -> RawMessage:
    return raw(est.topic(est.sensor(i), "telemetry"), frame(ts, seq=seq, base=base), **kw)


def meter_msg(est: Estate, i: int, ts: datetime, register: str, **extra: Any) -> RawMessage:
    body = {"v": 1, "ts": ts.isoformat(), "register": register, "unit": "m3", **extra}
    return raw(est.topic(est.meter(i), "meter"), body)


def swipe_msg(est: Estate, ts: datetime, card: str = "04a1b2c3", **extra: Any) -> RawMessage:
    body = {"v": 1, "ts": ts.isoformat(), "door": "1-1-main", "card": card, "granted": True, **extra}
    return raw(est.topic(est.controller, "swipe"), body)


def status_msg(est: Estate, ts: datetime, online: bool, battery: float | None = None) -> RawMessage:
    body: dict[str, Any] = {"v": 1, "ts": ts.isoformat(), "online": online}
    if battery is not None:
        body["battery_v"] = battery
    return raw(est.topic(est.controller, "status"), body)


# --- storage by device time, duplicates, late data (M9, M10) -------------------------------------


def test_rows_are_stored_at_device_time(harness: Harness, estate: Estate) -> None:
    device_ts = NOW - timedelta(hours=2, seconds=17)
    msg = tel(estate, 0, device_ts, seq=1, base=50.0)
    assert harness.commit([msg])
    assert estate.samples(estate.sensor(0)) == sorted((device_ts, m, 50.0 + i) for i, m in enumerate(METRICS))
    state = estate.device_state(estate.sensor(0))
    assert state.last_ts == device_ts
    assert state.last_seen_at >= msg.received_at  # arrival time is separate from device time
    assert harness.ack.mids == [msg.mid]
    c = harness.health.counters
    assert (c.stored, c.duplicate, c.batches, c.dead_lettered, c.quarantined) == (N, 0, 1, 0, 0)


@pytest.mark.parametrize("copies", [2, 3, 4, 5])
def test_same_message_several_times_in_one_batch_is_one_row(harness: Harness, estate: Estate, copies: int) -> None:
    ts = NOW - timedelta(minutes=1)
    original = tel(estate, 0, ts, seq=1)
    repeats = [raw(original.topic, original.payload) for _ in range(copies - 1)]  # redeliveries: new mids
    other = tel(estate, 1, ts, seq=1)
    batch = [original, *repeats[: copies // 2], other, *repeats[copies // 2 :]]
    assert harness.commit(batch)
    assert len(estate.samples(estate.sensor(0))) == N
    assert len(estate.samples(estate.sensor(1))) == N
    c = harness.health.counters
    assert c.stored == 2 * N
    assert c.duplicate == (copies - 1) * N
    assert harness.ack.mids == [m.mid for m in batch]
    assert estate.seq_gaps(estate.sensor(0)) == []


@pytest.mark.parametrize("copies", [2, 5])
def test_same_message_in_later_batches_is_a_counted_no_op(harness: Harness, estate: Estate, copies: int) -> None:
    msg = tel(estate, 2, NOW - timedelta(minutes=2), seq=9, base=1.5)
    for _ in range(copies):
        assert harness.commit([raw(msg.topic, msg.payload)])
    assert estate.samples(estate.sensor(2)) == sorted(
        (NOW - timedelta(minutes=2), m, 1.5 + i) for i, m in enumerate(METRICS)
    )
    assert (harness.health.counters.stored, harness.health.counters.duplicate) == (N, (copies - 1) * N)
    assert harness.health.counters.batches == copies


def test_fast_insert_falls_back_to_dedup_and_switches_back(harness: Harness, estate: Estate) -> None:
    """Samples go in without ON CONFLICT after a clean batch (ingest/writer.py); a batch holding a
    redelivery is written again with it, new rows included, then the fast path resumes."""
    p = harness.pipeline
    first = tel(estate, 3, NOW - timedelta(minutes=5), seq=1)
    assert harness.commit([first])
    assert p._expect_duplicates is False
    fresh = tel(estate, 3, NOW - timedelta(minutes=4), seq=2)
    assert harness.commit([raw(first.topic, first.payload), fresh])
    assert len(estate.samples(estate.sensor(3))) == 2 * N
    c = harness.health.counters
    assert (c.stored, c.duplicate, c.batches) == (2 * N, N, 2)
    assert p._expect_duplicates is True
    assert harness.commit([tel(estate, 3, NOW - timedelta(minutes=3), seq=3)])
    assert p._expect_duplicates is False
    assert (c.stored, c.duplicate, c.batches) == (3 * N, N, 3)
    assert estate.seq_gaps(estate.sensor(3)) == []


def test_redelivery_with_other_values_keeps_the_first_row(harness: Harness, estate: Estate) -> None:
    ts = NOW - timedelta(minutes=3)
    assert harness.commit([tel(estate, 0, ts, base=10.0)])
    assert harness.commit([tel(estate, 0, ts, base=99.0)])  # same device time: an edit is never applied
    assert {v for _, _, v in estate.samples(estate.sensor(0))} == {10.0 + i for i in range(N)}
    assert harness.health.counters.duplicate == N


def test_out_of_order_and_late_data_are_stored_by_device_time(harness: Harness, estate: Estate) -> None:
    t = [NOW - timedelta(minutes=30) + timedelta(seconds=10 * i) for i in range(4)]
    assert harness.commit([tel(estate, 0, t[3], base=3), tel(estate, 0, t[1], base=1), tel(estate, 0, t[2], base=2)])
    late = NOW - timedelta(hours=7)
    older = NOW - timedelta(days=29)
    assert harness.commit([tel(estate, 0, t[0], base=0), tel(estate, 0, late, base=-1)])
    assert harness.commit([tel(estate, 0, older, base=-2)])
    rows = estate.samples(estate.sensor(0))
    by_ts = {ts: v for ts, metric, v in rows if metric == METRICS[0]}
    assert by_ts == {older: -2.0, late: -1.0, t[0]: 0.0, t[1]: 1.0, t[2]: 2.0, t[3]: 3.0}
    assert [ts for ts, _, _ in rows] == sorted(ts for ts, _, _ in rows)
    assert estate.device_state(estate.sensor(0)).last_ts == t[3]  # late data never moves last_ts back
    assert harness.health.counters.quarantined == 0


# --- meters, swipes, status ----------------------------------------------------------------------


def test_meter_readings_keep_exact_decimal_registers(harness: Harness, estate: Estate) -> None:
    regs = ["0.1", "1234.500", "12345678901234.123456", "0", "99999.999"]
    msgs = [
        meter_msg(
            estate,
            0,
            NOW - timedelta(minutes=10 - i),
            r,
            seq=i,
            reverse_register="0.001",
            valve="open",
            flags=["reverse_flow"] if i == 1 else [],
        )
        for i, r in enumerate(regs)
    ]
    dup = raw(msgs[2].topic, msgs[2].payload)
    assert harness.commit([*msgs, dup])
    rows = estate.rows(
        "SELECT ts, register, reverse_register, valve, flags, seq, received_at FROM meter_readings "
        "WHERE device_id = :d ORDER BY ts",
        d=estate.device_id(estate.meter(0)),
    )
    assert [r.register for r in rows] == [Decimal(r) for r in regs]
    assert [str(r.register) for r in rows] == regs  # digits and scale, exactly as sent
    assert all(isinstance(r.register, Decimal) for r in rows)
    assert [r.ts for r in rows] == [NOW - timedelta(minutes=10 - i) for i in range(len(regs))]
    assert [r.flags for r in rows] == [[], ["reverse_flow"], [], [], []]
    assert {(r.reverse_register, r.valve) for r in rows} == {(Decimal("0.001"), "open")}
    assert [r.seq for r in rows] == list(range(len(regs)))
    assert rows[0].received_at == msgs[0].received_at
    c = harness.health.counters
    assert (c.stored, c.duplicate) == (len(regs), 1)


def test_door_events_land_in_access_events_without_a_card(harness: Harness, estate: Estate) -> None:
    held, forced = NOW - timedelta(minutes=3), NOW - timedelta(minutes=2)
    topic = estate.topic(estate.controller, "door")
    msgs = [
        raw(topic, {"v": 1, "ts": held.isoformat(), "door": "1-1-main", "event": "held_open", "open_s": 90}),
        raw(topic, {"v": 1, "ts": forced.isoformat(), "door": "1-1-main", "event": "forced_open"}),
        swipe_msg(estate, forced),  # a card at the same instant is another row
    ]
    assert harness.commit([*msgs, raw(topic, msgs[0].payload)])
    rows = estate.rows(
        "SELECT ts, card_uid, granted, reason FROM access_events WHERE controller_id = :d ORDER BY ts, card_uid",
        d=estate.device_id(estate.controller),
    )
    assert [tuple(r) for r in rows] == [
        (held, "", False, "held_open"),
        (forced, "", False, "forced_open"),
        (forced, "04A1B2C3", True, None),
    ]
    assert (harness.health.counters.stored, harness.health.counters.duplicate) == (3, 1)


def test_late_status_does_not_overwrite_a_newer_one(harness: Harness, estate: Estate) -> None:
    assert harness.commit([status_msg(estate, NOW - timedelta(minutes=1), False, 3.1)])
    assert harness.commit([status_msg(estate, NOW - timedelta(minutes=9), True, 3.9)])
    state = estate.device_state(estate.controller)
    assert (state.online, state.battery_v) == (False, 3.1)


def _command(estate: Estate, device: str, channel: str = "acl") -> int:
    with estate.engine.begin() as conn:
        return int(
            conn.execute(
                text("INSERT INTO outbox (device_id, topic, payload, attempts) VALUES (:d, :t, '{}', 1) RETURNING id"),
                {"d": estate.device_id(device), "t": f"steward/{estate.code}/down/{device}/{channel}"},
            ).scalar_one()
        )


def _acked_at(estate: Estate, cid: int) -> Any:
    return estate.rows("SELECT acked_at FROM outbox WHERE id = :i", i=cid)[0].acked_at


def test_ack_marks_the_outbox_row(harness: Harness, estate: Estate) -> None:
    cid = _command(estate, estate.controller)
    msg = raw(estate.topic(estate.controller, "ack"), {"v": 1, "command_id": str(cid), "status": "applied"})
    assert harness.commit([msg])
    assert _acked_at(estate, cid) is not None
    row = estate.rows("SELECT status, next_attempt_at FROM outbox WHERE id = :i", i=cid)[0]
    assert (row.status, row.next_attempt_at) == ("acknowledged", None)


def test_an_ack_marks_only_its_own_devices_command(harness: Harness, estate: Estate) -> None:
    """Issue 9 #6: an ack on one device's topic naming another device's command leaves that command unacked."""
    valve = _command(estate, estate.meter(0), "valve")
    other = estate.sensor(0)
    forged = raw(estate.topic(other, "ack"), {"v": 1, "command_id": str(valve), "status": "applied"})
    # A command id no outbox row can have must not fail the batch either.
    huge = raw(estate.topic(other, "ack"), {"v": 1, "command_id": "9" * 30, "status": "applied"})
    assert harness.commit([forged, huge])
    assert _acked_at(estate, valve) is None
    own = raw(estate.topic(estate.meter(0), "ack"), {"v": 1, "command_id": str(valve), "status": "applied"})
    assert harness.commit([own])
    assert _acked_at(estate, valve) is not None


# --- seq gaps ------------------------------------------------------------------------------------


def test_seq_gaps_are_recorded(harness: Harness, estate: Estate) -> None:
    s = estate.sensor(0)
    t0 = NOW - timedelta(minutes=20)
    assert harness.commit([tel(estate, 0, t0 + timedelta(seconds=i), seq=i) for i in (1, 2, 3)])
    assert harness.commit([tel(estate, 0, t0 + timedelta(seconds=i), seq=i) for i in (7, 8)])
    assert estate.seq_gaps(s) == [(4, 6)]
    assert estate.device_state(s).last_seq == 8
    assert harness.health.counters.seq_gaps == 1


def test_reordering_within_a_batch_is_no_gap(harness: Harness, estate: Estate) -> None:
    t0 = NOW - timedelta(minutes=20)
    assert harness.commit([tel(estate, 1, t0, seq=10)])
    assert harness.commit([tel(estate, 1, t0 + timedelta(seconds=i), seq=i) for i in (14, 12, 11, 13)])
    assert estate.seq_gaps(estate.sensor(1)) == []
    assert estate.device_state(estate.sensor(1)).last_seq == 14


def test_device_restart_is_no_gap(harness: Harness, estate: Estate) -> None:
    t0 = NOW - timedelta(minutes=20)
    assert harness.commit([tel(estate, 2, t0, seq=5_000)])
    assert harness.commit([tel(estate, 2, t0 + timedelta(seconds=i + 1), seq=i) for i in (0, 1)])
    assert estate.seq_gaps(estate.sensor(2)) == []
    assert estate.device_state(estate.sensor(2)).last_seq == 1


def test_seq_state_survives_an_ingest_restart(engine: Any, harness: Harness, estate: Estate) -> None:
    t0 = NOW - timedelta(minutes=20)
    assert harness.commit([tel(estate, 3, t0, seq=100)])
    restarted = make_harness(engine)  # a new process loads last_seq from device_state
    assert restarted.commit([tel(estate, 3, t0 + timedelta(seconds=1), seq=103)])
    assert estate.seq_gaps(estate.sensor(3)) == [(101, 102)]
    # A redelivered old message after the restart is neither a gap nor a step back.
    assert restarted.commit([tel(estate, 3, t0, seq=100)])
    assert estate.seq_gaps(estate.sensor(3)) == [(101, 102)]
    assert estate.device_state(estate.sensor(3)).last_seq == 103


def test_rolled_back_batch_does_not_advance_seq_state(harness: Harness, estate: Estate) -> None:
    t0 = NOW - timedelta(minutes=20)
    assert harness.commit([tel(estate, 0, t0, seq=1)])
    device = estate.device_id(estate.sensor(0))
    gaps, updates = harness.pipeline.seq.scan(harness.pipeline.decoder.decode([tel(estate, 0, t0, seq=5)]))
    assert (gaps, updates) == ([(device, 2, 4)], {device: 5})
    assert harness.pipeline.seq.last[device] == 1  # scanned, never committed


# --- dead letters and quarantine (M11, M12, M13, M14) --------------------------------------------


def test_dead_letters_keep_raw_bytes_and_reason(harness: Harness, estate: Estate) -> None:
    topic = estate.topic(estate.sensor(0), "telemetry")
    bad = {
        b"{not json": "Invalid JSON",
        b"\xff\xfe\xfd\x00": "Invalid JSON",
        b"[" * 600 + b"]" * 600: "recursion limit",
        b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{"load_pct":NaN}}': "finite",
        b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{"load_pct":[1]}}': "values.load_pct",
        b'{"v":1,"ts":1e3,"values":{"load_pct":1}}': "ts",
        b'{"v":1,"ts":100000000000000000000,"values":{"load_pct":1}}': "epoch milliseconds out of range",
    }
    msgs = [raw(topic, p) for p in bad]
    good = tel(estate, 1, NOW - timedelta(seconds=5))
    assert harness.commit([*msgs[:3], good, *msgs[3:]])
    rows = estate.dead_letters()
    assert [(r.topic, bytes(r.payload)) for r in rows] == [(topic, p) for p in bad]
    for r, reason in zip(rows, bad.values(), strict=True):
        assert reason in r.error
    assert [r.received_at for r in rows] == [m.received_at for m in msgs]
    assert len(estate.samples(estate.sensor(1))) == N
    c = harness.health.counters
    assert (c.dead_lettered, c.stored, c.quarantined) == (len(bad), N, 0)
    assert harness.ack.mids == [m.mid for m in [*msgs[:3], good, *msgs[3:]]]


def test_dead_letter_for_a_bad_topic(harness: Harness, estate: Estate) -> None:
    topic = f"steward/{estate.code}/up/{estate.sensor(0)}/firmware"
    msg = raw(topic, frame(NOW))
    assert harness.commit([msg])
    rows = estate.dead_letters()
    assert [(r.topic, bytes(r.payload), r.error) for r in rows] == [(topic, msg.payload, "unknown channel 'firmware'")]


def test_oversized_payload_is_dead_lettered(harness: Harness, estate: Estate) -> None:
    body = frame(NOW)
    body["pad"] = "x" * 10_000
    payload = json.dumps(body).encode()
    msg = raw(estate.topic(estate.sensor(0), "telemetry"), payload)
    assert harness.commit([msg])
    rows = estate.dead_letters()
    assert len(rows) == 1
    assert bytes(rows[0].payload) == payload[:DEAD_LETTER_KEEP_BYTES]
    assert rows[0].error.startswith(f"payload too large: {len(payload)} bytes > limit 4096")
    assert estate.samples(estate.sensor(0)) == []
    assert harness.ack.mids == [msg.mid]


def test_quarantine_reasons(harness: Harness, estate: Estate, engine: Any) -> None:
    ghost = f"{estate.code.upper()}-GHOST"
    other_estate = f"{estate.code}-x"
    unknown_metric = frame(NOW - timedelta(seconds=1))
    unknown_metric["values"]["humidity_pct"] = 55.0
    cases = [
        (raw(estate.topic(ghost, "telemetry"), frame(NOW)), ghost, Reason.unknown_device),
        (
            raw(f"steward/{other_estate}/up/{estate.sensor(0)}/telemetry", frame(NOW)),
            estate.sensor(0),
            Reason.estate_mismatch,
        ),
        (raw(estate.topic(estate.sensor(1), "telemetry"), unknown_metric), estate.sensor(1), Reason.unknown_metric),
        (tel(estate, 2, "2026-11-26T08:00:00"), estate.sensor(2), Reason.ts_without_timezone),
        (tel(estate, 2, NOW - timedelta(days=31)), estate.sensor(2), Reason.ts_too_old),
        (tel(estate, 2, NOW + timedelta(hours=1)), estate.sensor(2), Reason.ts_in_future),
    ]
    assert harness.commit([m for m, _, _ in cases])
    rows = estate.rows(
        "SELECT topic, device_code, payload, reason, detail, received_at FROM quarantined_messages "
        "WHERE topic LIKE :like OR topic LIKE :other ORDER BY id",
        other=f"steward/{other_estate}/%",
    )
    assert [(r.topic, r.device_code, bytes(r.payload), r.reason) for r in rows] == [
        (m.topic, code, m.payload, reason) for m, code, reason in cases
    ]
    assert [r.received_at for r in rows] == [m.received_at for m, _, _ in cases]
    assert all(r.detail for r in rows)
    # The known metrics of the unknown-metric frame are stored; nothing else is.
    assert len(estate.samples(estate.sensor(1))) == N
    assert estate.samples(estate.sensor(0)) == estate.samples(estate.sensor(2)) == []
    # Never auto-created (M14), and no device_state for it either.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM devices WHERE code = :c"), {"c": ghost}).scalar_one() == 0
    c = harness.health.counters
    assert (c.quarantined, c.dead_lettered, c.stored) == (len(cases), 0, N)


def test_unknown_device_is_not_resolved_by_reloading_forever(harness: Harness, estate: Estate) -> None:
    # Registry reloads for unknown codes are rate limited; the message is still quarantined every time.
    ghost = f"{estate.code.upper()}-GHOST2"
    for _ in range(3):
        assert harness.commit(
            [raw(estate.topic(ghost, "meter"), {"v": 1, "ts": NOW.isoformat(), "register": "1", "unit": "m3"})]
        )
    assert [r.reason for r in estate.quarantined()] == [Reason.unknown_device] * 3


def test_long_unknown_device_code_is_quarantined(harness: Harness, estate: Estate) -> None:
    # An MQTT topic level can be 65535 bytes; quarantined_messages.device_code is varchar(128).
    # BUG (fixed in ingest/decode.py): the insert failed, poison isolation dead-lettered the message
    # as "database rejected the payload" instead of quarantining it as unknown_device (M14).
    ghost = "G" * 300
    msg = raw(estate.topic(ghost, "telemetry"), frame(NOW))
    good = tel(estate, 0, NOW - timedelta(seconds=1))
    assert harness.commit([good, msg])
    rows = estate.quarantined()
    assert [(r.topic, bytes(r.payload), r.reason) for r in rows] == [(msg.topic, msg.payload, Reason.unknown_device)]
    assert ghost.startswith(rows[0].device_code)
    assert estate.dead_letters() == []
    assert len(estate.samples(estate.sensor(0))) == N


# --- poison isolation ----------------------------------------------------------------------------


def test_a_value_the_database_rejects_is_isolated(harness: Harness, estate: Estate) -> None:
    # pydantic accepts U+0000 in a string; PostgreSQL text cannot hold it. The batch is halved until the
    # one poisoned message is found; it is dead-lettered, everything else is stored, the batch is acked.
    poison = swipe_msg(estate, NOW - timedelta(seconds=3), reason="jam\u0000med")
    good = [tel(estate, i % 4, NOW - timedelta(seconds=10 + i), seq=i) for i in range(7)]
    batch = [*good[:3], poison, *good[3:]]
    assert harness.commit(batch)
    rows = estate.dead_letters()
    assert [(r.topic, bytes(r.payload)) for r in rows] == [(poison.topic, poison.payload)]
    assert rows[0].error.startswith("database rejected the payload: ")
    assert sum(len(estate.samples(estate.sensor(i))) for i in range(4)) == 7 * N
    assert (
        estate.rows("SELECT 1 FROM access_events WHERE controller_id = :d", d=estate.device_id(estate.controller)) == []
    )
    assert harness.ack.mids == [m.mid for m in batch]
    c = harness.health.counters
    assert (c.stored, c.dead_lettered) == (7 * N, 1)
    assert harness.health.database_ok


def test_poison_alone_in_its_batch(harness: Harness, estate: Estate) -> None:
    poison = meter_msg(estate, 0, NOW, "1.000", flags=["bad\u0000flag"])
    assert harness.commit([poison])
    assert [bytes(r.payload) for r in estate.dead_letters()] == [poison.payload]
    assert harness.ack.mids == [poison.mid]


# --- acknowledgement after commit ----------------------------------------------------------------


def test_run_acks_exactly_each_batch_after_its_commit(engine: Any, estate: Estate) -> None:
    h = make_harness(engine, batch_size=10, batch_latency_ms=30)
    seen_at_ack: list[bool] = []

    def committed(messages: Any) -> None:
        stored = {ts for ts, _, _ in estate.samples(estate.sensor(0))}  # another connection: committed rows only
        seen_at_ack.append(all(datetime.fromisoformat(json.loads(m.payload)["ts"]) in stored for m in messages))

    h.ack.on_ack = committed
    q: queue.Queue[RawMessage] = queue.Queue()
    msgs = [tel(estate, 0, NOW - timedelta(seconds=100 - i), seq=i) for i in range(35)]
    runner = threading.Thread(target=h.pipeline.run, args=(q, h.stop), daemon=True)
    runner.start()
    try:
        for m in msgs:
            q.put(m)
        deadline = time.monotonic() + 20
        while len(h.ack.mids) < len(msgs) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        h.stop.set()
        runner.join(10)
    assert h.ack.mids == [m.mid for m in msgs]  # each message once, in receipt order
    assert all(1 <= len(call) <= 10 for call in h.ack.calls)
    assert seen_at_ack == [True] * len(h.ack.calls)
    assert h.health.counters.batches == len(h.ack.calls)


def test_no_ack_while_the_database_is_down(estate: Estate) -> None:
    dead = create_engine("postgresql+psycopg://steward@127.0.0.1:9/steward", connect_args={"connect_timeout": 1})
    from core.settings import Settings
    from ingest.health import Health
    from ingest.pipeline import Pipeline

    ack, health, stop = FakeAck(), Health(), threading.Event()
    pipeline = Pipeline(Settings(env="testing"), dead, health, ack)
    q: queue.Queue[RawMessage] = queue.Queue()
    q.put(tel(estate, 0, NOW))
    runner = threading.Thread(target=pipeline.run, args=(q, stop), daemon=True)
    runner.start()
    time.sleep(1.5)
    status = health.status
    stop.set()
    runner.join(10)
    dead.dispose()
    assert ack.calls == []
    assert status == "degraded"
    assert health.counters.commit_failures >= 1
    assert health.counters.batches == 0


# --- the hourly rollup (plain PostgreSQL) --------------------------------------------------------

ROLLUP_SQL = """
SELECT point_id, bucket, n, total, min, max, last_ts, last FROM samples_hourly
WHERE point_id = ANY(:points) ORDER BY 1, 2
"""
RAW_SQL = """
SELECT point_id, date_trunc('hour', ts) AS bucket, count(*) AS n, sum(value) AS total, min(value) AS min,
       max(value) AS max, max(ts) AS last_ts, (array_agg(value ORDER BY ts DESC))[1] AS last
FROM samples WHERE point_id = ANY(:points) GROUP BY 1, 2 ORDER BY 1, 2
"""


def test_hourly_rollup_matches_raw_samples_with_duplicates(harness: Harness, estate: Estate) -> None:
    if not harness.pipeline.keep_rollup:
        pytest.skip("TimescaleDB keeps the rollup as a continuous aggregate")
    hour = (NOW - timedelta(hours=3)).replace(minute=0, second=0)
    ts = [hour + timedelta(minutes=m) for m in (5, 20, 40, 65, 80)]  # two buckets
    a = tel(estate, 0, ts[1], base=2.5)
    b = tel(estate, 0, ts[3], base=-4.5)
    batch1 = [
        a,
        raw(a.topic, a.payload),
        tel(estate, 0, ts[2], base=7.25),
        raw(a.topic, a.payload),
        b,
        tel(estate, 0, ts[3], base=100.0),
    ]  # same device time, other values: one row, one rollup entry
    assert harness.commit(batch1)
    # Later batches: redeliveries, late data into the first bucket (older than its last), newer data.
    assert harness.commit([raw(a.topic, a.payload), tel(estate, 0, ts[0], base=50.0), raw(b.topic, b.payload)])
    assert harness.commit([tel(estate, 0, ts[4], base=1.0), tel(estate, 0, ts[0], base=-50.0)])
    by_metric = harness.pipeline.registry.get(estate.sensor(0)).points  # type: ignore[union-attr]
    points = list(by_metric.values())
    rollup = estate.rows(ROLLUP_SQL, points=points)
    raw_rows = estate.rows(RAW_SQL, points=points)
    assert len(rollup) == 2 * N
    assert [tuple(r) for r in rollup] == [tuple(r) for r in raw_rows]
    first = next(r for r in rollup if r.bucket == hour and r.point_id == by_metric[METRICS[0]])
    assert (first.n, first.min, first.max, first.last, first.last_ts) == (3, 2.5, 50.0, 7.25, ts[2])
    c = harness.health.counters
    assert c.stored == 5 * N
    assert c.duplicate == (2 + 1 + 2 + 1) * N
