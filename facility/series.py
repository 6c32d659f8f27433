"""Reading time series: raw samples, bucketed series and latest values of points.

Bucketed reads pick the cheapest source that can answer exactly: TimescaleDB's continuous aggregates
(samples_1h / samples_1d), else the hourly rollup ingest maintains, else raw samples with date_bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from storage.timescale import has_timescale

MAX_RAW_RANGE = timedelta(days=7)
IN_RANGE = "point_id = :p AND bucket >= :lo AND bucket < :hi"
MAX_BUCKETS = 5_000


class Bucket(StrEnum):
    m1 = "1m"
    m5 = "5m"
    m15 = "15m"
    h1 = "1h"
    d1 = "1d"

    @property
    def width(self) -> timedelta:
        return _WIDTHS[self.value]


_WIDTHS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


# The bucket a history chart or export uses for a span: the finest that keeps a chart near a few hundred
# points (a day by 5 minutes, a week or a month by the hour from the rollup, a year by the day).
SPAN_BUCKETS: tuple[tuple[timedelta, Bucket], ...] = (
    (timedelta(days=2), Bucket.m5),
    (timedelta(days=4), Bucket.m15),
    (timedelta(days=45), Bucket.h1),
)


def bucket_for_span(span: timedelta) -> Bucket:
    for longest, bucket in SPAN_BUCKETS:
        if span <= longest:
            return bucket
    return Bucket.d1


@dataclass(frozen=True, slots=True)
class BucketRow:
    bucket: datetime
    n: int
    min: float
    avg: float
    max: float
    last: float


@dataclass(frozen=True, slots=True)
class LatestValue:
    point_id: int
    ts: datetime | None
    value: float | None


def _check_range(start: datetime, end: datetime, limit: timedelta | None = None) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end need a timezone offset, e.g. 2026-11-26T08:00:00+08:00")
    if end <= start:
        raise InvalidInput("end must be after start")
    if limit is not None and end - start > limit:
        raise InvalidInput(f"range longer than {limit.days} days; use a bucketed series")


def raw_samples(
    session: Session, point_id: int, start: datetime, end: datetime, *, after: datetime | None, limit: int
) -> list[tuple[datetime, float]]:
    _check_range(start, end, MAX_RAW_RANGE)
    if after is not None and after.tzinfo is None:
        raise InvalidInput("after needs a timezone offset, e.g. 2026-11-26T08:00:00+08:00")
    # Continue strictly after `after`, but never drop the sample at `start` itself when `after` lies before it.
    lower, op = (after, ">") if after is not None and after >= start else (start, ">=")
    rows = session.execute(
        text(f"SELECT ts, value FROM samples WHERE point_id = :p AND ts {op} :lo AND ts < :hi ORDER BY ts LIMIT :n"),
        {"p": point_id, "lo": lower, "hi": end, "n": limit},
    )
    return [(r[0], r[1]) for r in rows]


def bucketed(
    session: Session, point_id: int, start: datetime, end: datetime, bucket: Bucket, *, tz: str
) -> tuple[str, list[BucketRow]]:
    """(source, rows) of min/avg/max/last per bucket; daily buckets follow the estate's civil day."""
    _check_range(start, end)
    if (end - start) / bucket.width > MAX_BUCKETS:
        raise InvalidInput(f"more than {MAX_BUCKETS} buckets; choose a wider bucket")
    params = {"p": point_id, "lo": start, "hi": end, "tz": tz}
    timescale = _has_timescale(session)
    if bucket is Bucket.h1 and timescale:
        source = "samples_1h"
        sql = f"SELECT bucket, n, min, avg, max, last FROM {source} WHERE {IN_RANGE}"
    elif bucket is Bucket.d1 and timescale:
        source = "samples_1d"
        sql = f"SELECT bucket, n, min, avg, max, last FROM {source} WHERE {IN_RANGE}"
    elif bucket is Bucket.h1:
        source = "samples_hourly"
        sql = (
            "SELECT bucket, n, min, total / n AS avg, max, last FROM samples_hourly "
            "WHERE point_id = :p AND bucket >= :lo AND bucket < :hi"
        )
    elif bucket is Bucket.d1:
        source = "samples_hourly"
        sql = (
            "SELECT date_trunc('day', bucket, :tz) AS b, sum(n)::int, min(min), sum(total) / sum(n), max(max), "
            "(array_agg(last ORDER BY last_ts DESC))[1] FROM samples_hourly "
            "WHERE point_id = :p AND bucket >= :lo AND bucket < :hi GROUP BY b"
        )
    else:
        source = "samples"
        params["w"] = bucket.width
        sql = (
            "SELECT date_bin(:w, ts, TIMESTAMPTZ '2000-01-01 00:00+00') AS b, count(*)::int, min(value), avg(value), "
            "max(value), (array_agg(value ORDER BY ts DESC))[1] FROM samples "
            "WHERE point_id = :p AND ts >= :lo AND ts < :hi GROUP BY b"
        )
    rows = session.execute(text(f"SELECT * FROM ({sql}) q ORDER BY 1"), params)
    return source, [BucketRow(r[0], int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in rows]


def _has_timescale(session: Session) -> bool:
    # The extension does not come and go under a running server: ask once per pooled connection
    # (Connection.info lives as long as the DBAPI connection), not once per request.
    conn = session.connection()
    cached = conn.info.get("steward_timescale")
    if cached is None:
        cached = conn.info["steward_timescale"] = has_timescale(conn)
    return bool(cached)


def latest_values(session: Session, point_ids: list[int]) -> dict[int, LatestValue]:
    """The newest sample of each point (one index probe per point, whatever the table size)."""
    if not point_ids:
        return {}
    rows = session.execute(
        text(
            "SELECT p.id, s.ts, s.value FROM unnest(CAST(:ids AS int[])) AS p(id) "
            "LEFT JOIN LATERAL (SELECT ts, value FROM samples WHERE point_id = p.id ORDER BY ts DESC LIMIT 1) s ON true"
        ),
        {"ids": point_ids},
    )
    return {r[0]: LatestValue(r[0], r[1], r[2]) for r in rows}
