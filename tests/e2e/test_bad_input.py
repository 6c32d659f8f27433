"""Bad input through a real broker and an ingest process (M9–M14): good frames stored exactly once, every
bad message accounted for with its reason, nothing silently dropped, and ingest still running after it.

Mix published through one throwaway Mosquitto to one ``steward run ingest`` (own payload limit 4096 B):

- good telemetry (the oracle judges it), partly out of order, plus late frames (hours to days old);
- M9 duplicates: some good frames 2–5 times;
- M11 timestamps far in the future, far in the past and without a timezone → quarantined;
- M12 malformed payloads (bad JSON, wrong types, NaN, non-UTF-8, deep nesting, an out-of-range epoch,
  a NUL the database refuses) → dead letters with the raw bytes and a reason;
- M13 a 10 KB payload (over ingest's limit) → dead letter, truncated; a 300 KB packet (over the
  broker's max_packet_size) → refused by the broker: never delivered, stored or dead-lettered;
- M14 unknown devices → quarantined, never created.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from ingest.decode import DEAD_LETTER_KEEP_BYTES, Reason
from protocol.topics import uplink
from steward.broker import MosquittoProcess
from tests.support.estate import METRICS, load_small_estate, meter_code, sensor_code
from tests.support.ingest_process import IngestProcess
from tests.support.oracle import frame_key, judge, telemetry_traffic
from tests.support.publisher import OraclePublisher

pytestmark = pytest.mark.broker

ESTATE = "bad"
SENSORS, METERS = 10, 3
INGEST_LIMIT = 4096
BROKER_LIMIT = 262_144  # MosquittoProcess's max_packet_size


@dataclass(frozen=True)
class Bad:
    key: str
    topic: str
    payload: bytes
    expect: str  # dead letter: a substring of the error; quarantine: the reason


def _frame(ts: Any, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "ts": ts, "values": dict.fromkeys(METRICS, 21.5), **kw}


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def bad_traffic(now: datetime) -> tuple[list[Bad], list[Bad]]:
    """(dead letters, quarantined): each payload unique, so stored rows can be matched to what was sent."""
    s = [sensor_code(ESTATE, i) for i in range(SENSORS)]
    tel = [uplink(ESTATE, d, "telemetry") for d in s]
    meter_topic = uplink(ESTATE, meter_code(ESTATE, 0), "meter")
    swipe_topic = uplink(ESTATE, f"{ESTATE.upper()}-AC1", "swipe")
    ok_ts = _iso(now - timedelta(minutes=5))
    oversized = _frame(ok_ts, pad="y" * 10_000)
    dead = [
        Bad("dl-json", tel[0], b'{"v":1,"ts":"' + ok_ts.encode() + b'","values":{"load_pct":', "Invalid JSON"),
        Bad("dl-json2", tel[1], b"{'v': 1}", "Invalid JSON"),
        Bad("dl-type-values", tel[2], _dumps(_frame(ok_ts) | {"values": {"load_pct": "hot"}}), "values.load_pct"),
        Bad("dl-type-seq", tel[3], _dumps(_frame(ok_ts, seq="abc")), "seq"),
        Bad("dl-type-ts", tel[4], _dumps(_frame(True)), "ts"),
        Bad(
            "dl-type-register",
            meter_topic,
            _dumps({"v": 1, "ts": ok_ts, "register": 1234.567, "unit": "m3"}),
            "register must be a decimal string",
        ),
        Bad("dl-extra", tel[5], _dumps(_frame(ok_ts, price="0.01")), "Extra inputs are not permitted"),
        Bad("dl-version", tel[6], _dumps(_frame(ok_ts, v=2)), "v: Input should be 1"),
        Bad("dl-nan", tel[7], b'{"v":1,"ts":"%s","values":{"load_pct":NaN}}' % ok_ts.encode(), "finite"),
        Bad("dl-inf", tel[8], b'{"v":1,"ts":"%s","values":{"load_pct":-Infinity}}' % ok_ts.encode(), "finite"),
        Bad("dl-utf8", tel[9], b"\xff\xfe\xfd not utf-8 \x80\x81", "Invalid JSON"),
        Bad("dl-deep", tel[0], b"[" * 1_000 + b"]" * 1_000, "recursion limit"),
        Bad("dl-deep-obj", tel[1], b'{"v":' * 300 + b"1" + b"}" * 300, "recursion limit"),
        Bad("dl-epoch", tel[2], _dumps(_frame(10**20)), "epoch milliseconds out of range"),
        Bad("dl-channel", f"steward/{ESTATE}/up/{s[3]}/firmware", _dumps(_frame(ok_ts)), "unknown channel"),
        Bad(
            "dl-nul",
            swipe_topic,
            _dumps({"v": 1, "ts": ok_ts, "door": "1-1-main", "card": "ABCD", "granted": True, "reason": "a\u0000b"}),
            "database rejected the payload",
        ),
        Bad(
            "dl-oversized",
            tel[4],
            _dumps(oversized),
            f"payload too large: {len(_dumps(oversized))} bytes > limit {INGEST_LIMIT}",
        ),
    ]
    quarantined = [
        Bad("q-future", tel[5], _dumps(_frame(_iso(now + timedelta(days=2)))), Reason.ts_in_future),
        Bad(
            "q-future-ms",
            tel[6],
            _dumps(_frame(int((now + timedelta(days=400)).timestamp() * 1000))),
            Reason.ts_in_future,
        ),
        Bad("q-past", tel[7], _dumps(_frame(_iso(now - timedelta(days=60)))), Reason.ts_too_old),
        Bad("q-past-epoch0", tel[8], _dumps(_frame(0)), Reason.ts_too_old),
        Bad(
            "q-naive",
            tel[9],
            _dumps(_frame((now - timedelta(minutes=1)).replace(tzinfo=None).isoformat())),
            Reason.ts_without_timezone,
        ),
        Bad("q-ghost", uplink(ESTATE, "GHOST-1", "telemetry"), _dumps(_frame(ok_ts)), Reason.unknown_device),
        Bad(
            "q-ghost-meter",
            uplink(ESTATE, "GHOST-2", "meter"),
            _dumps({"v": 1, "ts": ok_ts, "register": "1.000", "unit": "m3"}),
            Reason.unknown_device,
        ),
        Bad("q-mismatch", uplink("other", s[1], "telemetry"), _dumps(_frame(ok_ts, seq=1)), Reason.estate_mismatch),
        Bad("q-metric", tel[2], _dumps({"v": 1, "ts": ok_ts, "values": {"humidity_pct": 40.0}}), Reason.unknown_metric),
    ]
    return dead, quarantined


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s16(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def raw_qos1_publish(port: int, topic: str, payload: bytes) -> tuple[bool, bool]:
    """Publish once over a bare MQTT 3.1.1 connection (no client library to refuse or retry it).
    Returns (PUBACK received, connection closed by the broker)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        connect = _s16(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 30) + _s16(b"bad-input-raw")
        sock.sendall(b"\x10" + _varint(len(connect)) + connect)
        connack = sock.recv(4)
        assert connack[:1] == b"\x20", connack
        assert connack[3:4] == b"\x00", connack
        header = _s16(topic.encode()) + struct.pack("!H", 1)
        got, closed = b"", False
        try:
            sock.sendall(b"\x32" + _varint(len(header) + len(payload)) + header + payload)
            sock.settimeout(3)
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    closed = True
                    break
                got += chunk
                if got[:1] == b"\x40":
                    break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except TimeoutError:
            pass
    return got[:1] == b"\x40", closed


def _wait_for(ingest: IngestProcess, want: dict[str, int], timeout: float = 20) -> dict[str, Any]:
    """Wait until the health counters reach ``want`` (and then a little more, to catch any excess)."""
    deadline = time.monotonic() + timeout
    counters: dict[str, Any] = {}
    while time.monotonic() < deadline:
        h = ingest.health()
        counters = dict(h["counters"]) if h else {}  # type: ignore[call-overload]
        if counters and all(counters.get(k, 0) >= v for k, v in want.items()):
            time.sleep(0.5)
            h = ingest.health()
            return dict(h["counters"]) if h else counters  # type: ignore[call-overload]
        time.sleep(0.1)
    return counters


def _count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_bad_input_is_accounted_for(fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    started = datetime.now(UTC)
    rng = random.Random(20261126)
    engine = create_engine(fresh_database)
    load_small_estate(engine, ESTATE, sensors=SENSORS, meters=METERS)
    devices_before = _count(engine, "SELECT count(*) FROM devices")
    ingest = IngestProcess(
        fresh_database, mosquitto.url, tmp_path / "logs", STEWARD_MAX_PAYLOAD_BYTES=str(INGEST_LIMIT)
    )
    pub = OraclePublisher("127.0.0.1", mosquitto.port)
    try:
        ingest.start()
        now = datetime.now(UTC).replace(microsecond=0)

        # Good telemetry: the second half out of order, then late frames (hours to days old).
        good = list(telemetry_traffic(ESTATE, devices=SENSORS, frames=400, start=now - timedelta(hours=1)))
        half = len(good) // 2
        good[half:] = reversed(good[half:])
        for i, age in enumerate([timedelta(hours=6), timedelta(hours=30), timedelta(days=3), timedelta(days=20)] * 5):
            device = sensor_code(ESTATE, i % SENSORS)
            ts = now - age - timedelta(seconds=i)
            body = _frame(_iso(ts)) | {"values": dict.fromkeys(METRICS, 10.0 + i)}
            good.append((frame_key(device, ts), uplink(ESTATE, device, "telemetry"), _dumps(body)))

        # M9: 30 good frames sent 2–5 times in all, the copies scattered.
        traffic = list(good)
        dup_copies = 0
        for n, item in enumerate(rng.sample(good, 30)):
            for _ in range(1 + n % 4):
                traffic.insert(rng.randrange(traffic.index(item) + 1, len(traffic) + 1), item)
                dup_copies += 1

        # Good meter readings with exact registers; one sent twice.
        registers = ["1234.567", "0.001", "99999.999"]
        meters = [
            (
                f"meter-{i}",
                uplink(ESTATE, meter_code(ESTATE, i), "meter"),
                _dumps({"v": 1, "ts": _iso(now - timedelta(minutes=3)), "seq": 1, "register": r, "unit": "m3"}),
            )
            for i, r in enumerate(registers)
        ]
        traffic[100:100] = meters[:2]
        traffic[250:250] = [meters[2], meters[2]]

        dead, quarantined = bad_traffic(now)
        for b in dead + quarantined:
            traffic.insert(rng.randrange(len(traffic) + 1), (b.key, b.topic, b.payload))

        pub.publish_all(traffic[: len(traffic) // 2])
        # M13 at the broker: one packet over max_packet_size, on a bare connection of its own.
        huge_topic = uplink(ESTATE, sensor_code(ESTATE, 0), "telemetry")
        huge = b'{"v":1,"pad":"' + b"Z" * (BROKER_LIMIT + 40_000) + b'"}'
        puback, closed = raw_qos1_publish(mosquitto.port, huge_topic, huge)
        pub.publish_all(traffic[len(traffic) // 2 :])
        pub.drain()

        # A last good frame after all the bad input: ingest must still be storing.
        sentinel_ts = now - timedelta(seconds=30)
        sentinel = (
            frame_key(sensor_code(ESTATE, 0), sentinel_ts),
            uplink(ESTATE, sensor_code(ESTATE, 0), "telemetry"),
            _dumps(_frame(_iso(sentinel_ts))),
        )
        pub.publish_all([sentinel])
        pub.drain()
        good.append(sentinel)
        traffic.append(sentinel)

        n = len(METRICS)
        stored_expected = len(good) * n + len(meters)
        dup_expected = dup_copies * n + 1
        counters = _wait_for(
            ingest,
            {
                "stored": stored_expected,
                "dead_lettered": len(dead),
                "quarantined": len(quarantined),
                "received": len(traffic),
            },
        )
        health = ingest.health()
        alive = ingest.proc is not None and ingest.proc.poll() is None
    finally:
        pub.close()

    try:
        # Every publish was acknowledged by the broker (bad ones too: the broker does not read payloads).
        assert pub.log.acked == {k for k, _, _ in traffic}, "publisher: some PUBLISH not acked"
        good_keys = {k for k, _, _ in good}

        # Good frames: each stored exactly once, at its device time (the oracle).
        verdict = judge(engine, pub.log.acked & good_keys, good_keys)
        assert (verdict.lost, verdict.duplicated, verdict.unexpected) == ([], [], []), verdict
        assert verdict.ok == len(good_keys), verdict

        # Meter registers exact; the repeated reading stored once.
        with engine.connect() as conn:
            regs = conn.execute(
                text("SELECT d.code, m.register FROM meter_readings m JOIN devices d ON d.id = m.device_id")
            ).all()
        assert sorted((c, str(r)) for c, r in regs) == sorted(
            (meter_code(ESTATE, i), r) for i, r in enumerate(registers)
        )
        assert all(isinstance(r, Decimal) for _, r in regs)

        # Dead letters: exactly what was sent, raw bytes (truncated only when oversized) and reason.
        with engine.connect() as conn:
            dl_rows = conn.execute(text("SELECT topic, payload, error, received_at FROM dead_letters")).all()
            q_rows = conn.execute(
                text("SELECT topic, device_code, payload, reason, detail, received_at FROM quarantined_messages")
            ).all()
        stored_dl = Counter((t, bytes(p)) for t, p, _, _ in dl_rows)
        sent_dl = Counter(
            (b.topic, b.payload[:DEAD_LETTER_KEEP_BYTES] if b.key == "dl-oversized" else b.payload) for b in dead
        )
        assert stored_dl == sent_dl
        errors = {(t, bytes(p)): e for t, p, e, _ in dl_rows}
        for b in dead:
            stored_payload = b.payload[:DEAD_LETTER_KEEP_BYTES] if b.key == "dl-oversized" else b.payload
            assert b.expect in errors[(b.topic, stored_payload)], (b.key, errors[(b.topic, stored_payload)])

        # Quarantine: every message with its reason; received_at stored (M11).
        assert Counter((t, bytes(p), r) for t, _, p, r, _, _ in q_rows) == Counter(
            (b.topic, b.payload, b.expect) for b in quarantined
        )
        assert all(d for _, _, _, _, d, _ in q_rows)
        window_end = datetime.now(UTC)
        for rows in (dl_rows, q_rows):
            assert all(started <= r.received_at <= window_end for r in rows)

        # M14: unknown devices never created.
        assert _count(engine, "SELECT count(*) FROM devices") == devices_before
        assert _count(engine, "SELECT count(*) FROM devices WHERE code LIKE 'GHOST%'") == 0
        assert {r.device_code for r in q_rows if r.reason == Reason.unknown_device} == {"GHOST-1", "GHOST-2"}

        # M13 at the broker: refused (no PUBACK, connection dropped) and never reached ingest.
        assert (puback, closed) == (False, True)
        assert not any(bytes(p).startswith(b'{"v":1,"pad":"ZZZ') for _, p, _, _ in dl_rows)
        log = (mosquitto.data_dir / "mosquitto.log").read_text(errors="replace")
        assert "oversize packet" in log

        # Health counters agree with what was sent and what the database holds.
        assert counters["received"] == len(traffic)  # the oversized packet never arrived
        assert counters["stored"] == stored_expected
        assert counters["duplicate"] == dup_expected
        assert counters["dead_lettered"] == len(dead) == len(dl_rows)
        assert counters["quarantined"] == len(quarantined) == len(q_rows)
        assert counters["seq_gaps"] == _count(engine, "SELECT count(*) FROM seq_gaps")
        assert counters["queue_overflow"] == 0
        assert _count(engine, "SELECT count(*) FROM samples") == len(good) * n

        # Ingest kept running and healthy through all of it.
        assert alive
        assert health is not None
        assert health["status"] == "ok", health
    finally:
        ingest.stop()
        engine.dispose()
