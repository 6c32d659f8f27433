"""Build keyed test traffic and judge it: each acked publish must be stored exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from core import clock
from devkit.estate import METRICS, sensor_code
from protocol.topics import uplink


def frame_key(device: str, ts: datetime) -> str:
    return f"{device}|{int(ts.timestamp() * 1000)}"


def telemetry_traffic(
    estate: str, *, devices: int, frames: int, start: datetime | None = None, step: timedelta = timedelta(seconds=1)
) -> Iterator[tuple[str, str, bytes]]:
    """``frames`` telemetry frames round-robin over ``devices`` devices, each with a unique device time."""
    start = start or clock.now().replace(microsecond=0) - timedelta(hours=1)
    for n in range(frames):
        device = sensor_code(estate, n % devices)
        ts = start + step * (n // devices)
        payload = {
            "v": 1,
            "ts": ts.isoformat(),
            "seq": n // devices,
            "values": {m: round(20 + (n % 97) * 0.5 + i, 2) for i, m in enumerate(METRICS)},
        }
        yield frame_key(device, ts), uplink(estate, device, "telemetry"), json.dumps(payload).encode()


@dataclass(frozen=True)
class Verdict:
    acked: int
    ok: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    stored_frames: int

    def __str__(self) -> str:
        return (
            f"acked={self.acked} ok={self.ok} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"unexpected={len(self.unexpected)} stored_frames={self.stored_frames}"
        )


def stored_frames(engine: Engine) -> dict[str, int]:
    """key -> number of sample rows for that device frame (a complete frame has len(METRICS) rows)."""
    sql = text(
        "SELECT d.code, (extract(epoch FROM s.ts) * 1000)::bigint, count(*) "
        "FROM samples s JOIN points p ON p.id = s.point_id JOIN devices d ON d.id = p.device_id GROUP BY 1, 2"
    )
    with engine.connect() as conn:
        return {f"{code}|{ms}": n for code, ms, n in conn.execute(sql)}


def judge(engine: Engine, acked: set[str], sent: set[str]) -> Verdict:
    frames = stored_frames(engine)
    per_frame = len(METRICS)
    lost = sorted(k for k in acked if frames.get(k, 0) < per_frame)
    duplicated = sorted(k for k, n in frames.items() if n > per_frame)
    unexpected = sorted(k for k in frames if k not in sent)
    ok = sum(1 for k in acked if frames.get(k) == per_frame)
    return Verdict(len(acked), ok, lost, duplicated, unexpected, len(frames))


def wait_quiescent(engine: Engine, *, acked: set[str], timeout: float = 60, settle: float = 8) -> int:
    """Wait until every acked frame is stored, or nothing has changed for ``settle`` seconds.

    Counting rows is not enough: frames whose PUBACK the publisher never saw (in flight during a
    broker restart) may be stored too, so a row count can reach len(acked) with acked frames missing.
    """
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        frames = stored_frames(engine)
        if all(frames.get(k, 0) >= len(METRICS) for k in acked):
            return len(frames)
        if len(frames) != last:
            last, last_change = len(frames), time.monotonic()
        elif time.monotonic() - last_change > settle:
            return last
        time.sleep(0.25)
    return last
