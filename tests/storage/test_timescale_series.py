"""The hourly and daily series from TimescaleDB's continuous aggregates equal the plain-PostgreSQL rollup.

``facility.series.bucketed`` reads ``samples_1h`` / ``samples_1d`` under TimescaleDB and the ``samples_hourly``
rollup ingest maintains on plain PostgreSQL. The same 480 samples (22:00–02:00 Shanghai time, across a civil-day
boundary, not monotonic so min, max and last differ) go into both, and both answers must be the same buckets with
the same count, min, max, last and average. timescale-lite: one connection at a time, one multi-VALUES insert,
aggregates refreshed by hand (its background jobs never run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from facility.series import Bucket, BucketRow, bucketed
from ingest.decode import DecodedBatch
from ingest.writer import write_batch
from storage.migrate import upgrade
from storage.models import Sample

pytestmark = pytest.mark.timescale

TZ = "Asia/Shanghai"
FIRST = datetime(2026, 3, 1, 22, 0, tzinfo=ZoneInfo(TZ))
STEP = timedelta(seconds=30)
COUNT = 480
POINT = 93001
SAMPLES = [(FIRST + i * STEP, round((i * 7919) % 101 / 4 - 5.5, 3)) for i in range(COUNT)]
RANGES = {
    Bucket.h1: (FIRST, FIRST + COUNT * STEP),
    Bucket.d1: (datetime(2026, 3, 1, tzinfo=ZoneInfo(TZ)), datetime(2026, 3, 3, tzinfo=ZoneInfo(TZ))),
}


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[Connection]:
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_engine(url, poolclass=NullPool, **options)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def timescale_series(timescale_url: str) -> dict[Bucket, tuple[str, list[BucketRow]]]:
    upgrade(timescale_url)
    rows = [{"point_id": POINT, "ts": ts, "value": v} for ts, v in SAMPLES]
    with connect(timescale_url) as conn:
        conn.execute(pg_insert(Sample).values(rows).on_conflict_do_nothing())
        conn.commit()
    with connect(timescale_url, autocommit=True) as conn:
        for view in ("samples_1h", "samples_1d"):
            conn.execute(text(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)"))
    with connect(timescale_url) as conn:
        session = Session(bind=conn)
        return {b: bucketed(session, POINT, *RANGES[b], b, tz=TZ) for b in RANGES}


def plain_series(session: Session) -> dict[Bucket, tuple[str, list[BucketRow]]]:
    batch = DecodedBatch(
        sample_ts=[ts for ts, _ in SAMPLES], sample_point=[POINT] * COUNT, sample_value=[v for _, v in SAMPLES]
    )
    write_batch(session.connection(), batch, now=FIRST + COUNT * STEP, gaps=[], last_seq={}, keep_rollup=True)
    return {b: bucketed(session, POINT, *RANGES[b], b, tz=TZ) for b in RANGES}


@pytest.mark.parametrize("bucket", [Bucket.h1, Bucket.d1], ids=str)
def test_continuous_aggregates_equal_the_plain_rollup(
    timescale_series: dict[Bucket, tuple[str, list[BucketRow]]], session: Session, bucket: Bucket
) -> None:
    ts_source, ts_rows = timescale_series[bucket]
    plain_source, plain_rows = plain_series(session)[bucket]
    assert (ts_source, plain_source) == ({Bucket.h1: "samples_1h", Bucket.d1: "samples_1d"}[bucket], "samples_hourly")
    assert len(plain_rows) == (4 if bucket is Bucket.h1 else 2)
    assert [(r.bucket, r.n, r.min, r.max, r.last) for r in ts_rows] == [
        (r.bucket, r.n, r.min, r.max, r.last) for r in plain_rows
    ]
    for t, p in zip(ts_rows, plain_rows, strict=True):
        assert t.avg == pytest.approx(p.avg, rel=1e-9)
    assert sum(r.n for r in plain_rows) == COUNT
