"""Dashboard fixtures: the sample world of tests/support/world.py (the sample estate examples/estate.yaml, a
second estate nobody but head office sees, one account per role) with 24 h of history, device contact and
ingest rejects for the ingest page.

The world lives in a database of its own because the browser tests' server is another process that
must see committed rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from core import clock
from core.settings import Settings
from steward.app import create_app
from tests.dashboards.support import InProcessIngest, telemetry
from tests.support.world import PASSWORD, SAMPLE_ESTATE, SAMPLE_OTHER, SampleWorld, build_sample_world

ESTATE = SAMPLE_ESTATE
OTHER = SAMPLE_OTHER
# TR2 went quiet 12 minutes ago: its tiles must say so ("已 12 分钟未上报").
SILENT_DEVICE = "TR2"
SILENT_FOR = timedelta(minutes=12)


# The dashboards' world is the sample world of tests/support/world.py; what the pages show is seeded below.
DashWorld = SampleWorld


def _seed_history(engine: Engine, point_ids: dict[tuple[str, str], int], nominal: dict, now: datetime) -> None:
    """24 h of 5-minute samples with a daily swing (warmer, busier afternoons), then the hourly rollup."""
    rng = random.Random(42)
    ts_col: list[datetime] = []
    pid_col: list[int] = []
    val_col: list[float] = []
    for (device, metric), pid in point_ids.items():
        base, noise = nominal[device][metric]
        is_state = noise == 0 and base in (0.0, 1.0)
        end = now - (SILENT_FOR if device == SILENT_DEVICE else timedelta(seconds=20))
        t = now - timedelta(hours=24)
        while t <= end:
            hour = t.astimezone(UTC).hour + 8  # Asia/Shanghai
            swing = 0.0 if is_state else 0.04 * base * math.sin((hour - 8) / 24 * 2 * math.pi)
            value = base if is_state else base + swing + rng.gauss(0, noise)
            ts_col.append(t)
            pid_col.append(pid)
            val_col.append(round(value, 4))
            t += timedelta(minutes=5)
        ts_col.append(end)
        pid_col.append(pid)
        val_col.append(base if is_state else round(base + rng.gauss(0, noise), 4))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO samples (ts, point_id, value) "
                "SELECT * FROM unnest(CAST(:ts AS timestamptz[]), CAST(:p AS int[]), CAST(:v AS float8[])) "
                "ON CONFLICT DO NOTHING"
            ),
            {"ts": ts_col, "p": pid_col, "v": val_col},
        )
        conn.execute(
            text(
                "INSERT INTO samples_hourly (point_id, bucket, n, total, min, max, last_ts, last) "
                "SELECT point_id, date_trunc('hour', ts, 'UTC'), count(*), sum(value), min(value), max(value), "
                "max(ts), (array_agg(value ORDER BY ts DESC))[1] FROM samples GROUP BY 1, 2 ON CONFLICT DO NOTHING"
            )
        )


def _seed_device_state(engine: Engine, now: datetime) -> None:
    """Room devices and most unit meters reported recently; a few meters went silent; three never reported."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO device_state (device_id, last_seen_at, last_ts, online) "
                "SELECT d.id, CASE WHEN d.code = :silent THEN :silent_at "
                "  WHEN d.code IN ('HW-3-1-502', 'CW-4-2-1101', 'E-2-1-1702', 'HW-5-1-602') THEN :hours_ago "
                "  ELSE :recent END, :recent, true "
                "FROM devices d JOIN estates e ON e.id = d.estate_id "
                "WHERE e.code = :estate AND d.code NOT IN ('E-1-2-1801', 'CW-1-2-1801', 'HW-1-2-1801') "
                "ON CONFLICT (device_id) DO NOTHING"
            ),
            {
                "silent": SILENT_DEVICE,
                "silent_at": now - SILENT_FOR,
                "hours_ago": now - timedelta(hours=3, minutes=20),
                "recent": now - timedelta(seconds=20),
                "estate": ESTATE,
            },
        )


def _seed_rejects_and_meters(ingest: InProcessIngest, now: datetime) -> None:
    """Dead letters and quarantined messages the way ingest makes them, and a hot-water meter's readings."""
    old = now - timedelta(days=45)
    ingest.send(
        [
            (f"steward/{ESTATE}/up/TR1/telemetry", b'{"v":1,"ts":"2026-11-26T08:00:00+08:00","values":{'),
            (f"steward/{ESTATE}/up/LV1/telemetry", b'{"v":2,"values":{"voltage_a_v":"high"}}'),
            (f"steward/{ESTATE}/up/PUMP1-VFD/telemetry", "出水压力=0.45MPa".encode()),
            telemetry(ESTATE, "GHOST-7", {"winding_temp_a_c": 80.0}),
            telemetry(ESTATE, "GHOST-7", {"winding_temp_a_c": 80.5}),
            telemetry(ESTATE, "GHOST-9", {"room_temp_c": 25.0}),
            telemetry(ESTATE, "TR1", {"winding_temp_a_c": 79.0}, ts=old),
            telemetry(OTHER, "DASHB-S0000", {"room_temp_c": 21.0}, ts=old),
        ]
    )
    register = 1520.125
    msgs = []
    for i in range(12):
        ts = now - timedelta(minutes=15 * (12 - i))
        register += 0.031 + 0.004 * (i % 3)
        msgs.append(
            (
                f"steward/{ESTATE}/up/HW-3-1-1201/meter",
                {
                    "v": 1,
                    "ts": ts.isoformat(),
                    "seq": i + 1,
                    "register": f"{register:.3f}",
                    "unit": "m3",
                    "valve": "open",
                },
            )
        )
    ingest.send(msgs)


@pytest.fixture(scope="session")
def dash_world(pg_server_url: str) -> Iterator[DashWorld]:
    with build_sample_world(pg_server_url, prefix="steward_dash") as world:
        now = clock.now()
        _seed_history(world.engine, world.point_ids, world.nominal, now)
        _seed_device_state(world.engine, now)
        _seed_rejects_and_meters(InProcessIngest(world.engine), now)
        yield world


@pytest.fixture(scope="session")
def dash_app(dash_world: DashWorld) -> FastAPI:
    return create_app(Settings(), engine=dash_world.engine)


@pytest.fixture
def dash_client(dash_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(dash_app, follow_redirects=False) as c:
        yield c


def login(client: TestClient, username: str = "engineer-user") -> None:
    r = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text
