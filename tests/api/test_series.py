"""Raw samples (paged by device time) and bucketed series (min/avg/max/last) of a point.

Samples are stored the way ingest stores them (ingest.writer.write_batch, which keeps the hourly rollup on plain
PostgreSQL), across a civil-day boundary in Asia/Shanghai so that daily buckets have to follow local midnight.
Under TimescaleDB the hourly and daily series come from the continuous aggregates instead: the fixture refreshes
them by hand (their policies run on their own schedule, and samples this old fall below the watermark), so the
same expected buckets hold for both engines (tests/storage/test_timescale_series.py compares the two directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from accounts.const import Role
from core import clock
from storage.models import Device, Point
from storage.timescale import has_timescale
from tests.support.world import World, add_samples, bearer

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 22:00 on 1 March to 02:00 on 2 March, Beijing time: four hours, two civil days, a sample every 30 s.
FIRST = datetime(2026, 3, 1, 22, 0, tzinfo=SHANGHAI)
STEP = timedelta(seconds=30)
COUNT = 480
END = FIRST + COUNT * STEP


@dataclass(frozen=True)
class Series:
    point_id: int
    samples: list[tuple[datetime, float]]
    timescale: bool


def value(i: int) -> float:
    # Not monotonic, so min, max and last are three different samples in most buckets.
    return round((i * 7919) % 101 / 4 - 5.5, 3)


@pytest.fixture(scope="module")
def series(api_world: World) -> Series:
    with Session(api_world.engine) as s:
        point_id = s.scalars(
            select(Point.id)
            .join(Device, Point.device_id == Device.id)
            .where(Device.code == "APIA-S0001", Point.metric == "load_pct")
        ).one()
        timescale = has_timescale(s.connection())
    samples = [(FIRST + i * STEP, value(i)) for i in range(COUNT)]
    add_samples(api_world.engine, point_id, samples)  # idempotent: a rerun against the same world adds nothing
    if timescale:
        refresh_aggregates(api_world.engine)
    return Series(point_id, samples, timescale)


def refresh_aggregates(engine: Engine) -> None:
    """Materialise samples_1h and samples_1d now (CALL refresh_continuous_aggregate refuses a transaction)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for view in ("samples_1h", "samples_1d"):
            conn.execute(text(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)"))


@pytest.fixture
def h(api_world: World) -> dict[str, str]:
    return bearer(api_world, Role.engineer)


def iso(t: datetime) -> str:
    return t.isoformat()


def get(client: TestClient, h: dict[str, str], path: str, **params: Any) -> Any:
    r = client.get(path, headers=h, params={k: iso(v) if isinstance(v, datetime) else v for k, v in params.items()})
    assert r.status_code == 200, r.text
    return r.json()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- raw samples --------------------------------------------------------------------------------------------------


def read_all(client: TestClient, h: dict[str, str], point_id: int, limit: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    after: datetime | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"start": FIRST, "end": END, "limit": limit}
        if after is not None:
            params["after"] = after
        page = get(client, h, f"/api/points/{point_id}/samples", **params)
        pages += 1
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_after"] is None:
            return items, pages
        after = at(page["next_after"])
        assert after == at(page["items"][-1]["ts"])


@pytest.mark.parametrize(("limit", "pages"), [(100, 5), (120, 5), (480, 2), (1000, 1)])
def test_samples_page_by_device_time(
    client: TestClient, h: dict[str, str], series: Series, limit: int, pages: int
) -> None:
    """Each page continues after the last one's newest time; a full last page is followed by one empty page."""
    items, n = read_all(client, h, series.point_id, limit)
    assert n == pages
    assert [(at(i["ts"]), i["value"]) for i in items] == series.samples


def test_samples_range_is_half_open(client: TestClient, h: dict[str, str], series: Series) -> None:
    page = get(client, h, f"/api/points/{series.point_id}/samples", start=FIRST + STEP, end=FIRST + 3 * STEP)
    assert [at(i["ts"]) for i in page["items"]] == [FIRST + STEP, FIRST + 2 * STEP]


def test_samples_default_to_the_last_hour(client: TestClient, h: dict[str, str], series: Series) -> None:
    clock.set_clock(lambda: END)
    try:
        page = get(client, h, f"/api/points/{series.point_id}/samples")
    finally:
        clock.reset_clock()
    assert [at(i["ts"]) for i in page["items"]] == [t for t, _ in series.samples if t >= END - timedelta(hours=1)]


# --- bucketed series ----------------------------------------------------------------------------------------------


def expected(
    samples: list[tuple[datetime, float]], bucket_of: Any
) -> list[tuple[datetime, int, float, float, float, float]]:
    groups: dict[datetime, list[tuple[datetime, float]]] = {}
    for ts, v in samples:
        groups.setdefault(bucket_of(ts), []).append((ts, v))
    out = []
    for b in sorted(groups):
        vs = [v for _, v in groups[b]]
        last = max(groups[b])[1]
        out.append((b, len(vs), min(vs), sum(vs) / len(vs), max(vs), last))
    return out


def floor_to(width: timedelta) -> Any:
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    return lambda ts: ts - (ts - origin) % width


def local_midnight(ts: datetime) -> datetime:
    return ts.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)


def assert_buckets(got: list[dict[str, Any]], want: list[tuple[datetime, int, float, float, float, float]]) -> None:
    assert [at(b["bucket"]) for b in got] == [w[0] for w in want]
    for b, (_, n, lo, avg, hi, last) in zip(got, want, strict=True):
        assert (b["n"], b["min"], b["max"], b["last"]) == (n, lo, hi, last)
        assert b["avg"] == pytest.approx(avg, rel=1e-9)


@pytest.mark.parametrize(
    ("bucket", "width"),
    [("1m", timedelta(minutes=1)), ("5m", timedelta(minutes=5)), ("15m", timedelta(minutes=15))],
)
def test_minute_buckets_from_raw_samples(
    client: TestClient, h: dict[str, str], series: Series, bucket: str, width: timedelta
) -> None:
    out = get(client, h, f"/api/points/{series.point_id}/series", start=FIRST, end=END, bucket=bucket)
    assert (out["bucket"], out["source"]) == (bucket, "samples")
    assert_buckets(out["items"], expected(series.samples, floor_to(width)))


def test_hourly_buckets(client: TestClient, h: dict[str, str], series: Series) -> None:
    out = get(client, h, f"/api/points/{series.point_id}/series", start=FIRST, end=END, bucket="1h")
    assert out["source"] == ("samples_1h" if series.timescale else "samples_hourly")
    want = expected(series.samples, floor_to(timedelta(hours=1)))
    assert len(want) == 4
    assert_buckets(out["items"], want)


def test_daily_buckets_follow_shanghai_midnight(client: TestClient, h: dict[str, str], series: Series) -> None:
    start, end = datetime(2026, 3, 1, tzinfo=SHANGHAI), datetime(2026, 3, 3, tzinfo=SHANGHAI)
    out = get(client, h, f"/api/points/{series.point_id}/series", start=start, end=end, bucket="1d")
    assert out["source"] == ("samples_1d" if series.timescale else "samples_hourly")
    want = expected(series.samples, local_midnight)
    # 22:00–24:00 on the 1st and 00:00–02:00 on the 2nd, Beijing time: two days, not one UTC day.
    assert [w[0] for w in want] == [datetime(2026, 3, 1, tzinfo=SHANGHAI), datetime(2026, 3, 2, tzinfo=SHANGHAI)]
    assert [w[1] for w in want] == [240, 240]
    assert_buckets(out["items"], want)


def test_series_defaults_to_the_last_day_by_hour(client: TestClient, h: dict[str, str], series: Series) -> None:
    clock.set_clock(lambda: END + timedelta(minutes=30))
    try:
        out = get(client, h, f"/api/points/{series.point_id}/series")
    finally:
        clock.reset_clock()
    assert out["bucket"] == "1h"
    assert len(out["items"]) == 4


def test_rewriting_the_same_samples_changes_nothing(
    client: TestClient, api_world: World, h: dict[str, str], series: Series
) -> None:
    """A redelivered batch is a no-op for the samples and for the hourly rollup the series reads."""
    before = get(client, h, f"/api/points/{series.point_id}/series", start=FIRST, end=END, bucket="1h")
    assert add_samples(api_world.engine, series.point_id, series.samples[:200]) == 0
    after = get(client, h, f"/api/points/{series.point_id}/series", start=FIRST, end=END, bucket="1h")
    assert after == before


def test_an_empty_range_has_no_buckets(client: TestClient, h: dict[str, str], series: Series) -> None:
    start = FIRST - timedelta(days=3)
    for bucket in ("5m", "1h", "1d"):
        out = get(client, h, f"/api/points/{series.point_id}/series", start=start, end=FIRST, bucket=bucket)
        assert out["items"] == []


# --- limits and malformed ranges ----------------------------------------------------------------------------------


@pytest.fixture
def path(series: Series) -> str:
    return f"/api/points/{series.point_id}"


def status(client: TestClient, h: dict[str, str], url: str, **params: Any) -> int:
    return client.get(url, headers=h, params=params).status_code


def test_raw_samples_span_at_most_seven_days(client: TestClient, h: dict[str, str], path: str) -> None:
    assert status(client, h, f"{path}/samples", start=iso(END - timedelta(days=7)), end=iso(END)) == 200
    too_long = {"start": iso(END - timedelta(days=7, seconds=1)), "end": iso(END)}
    r = client.get(f"{path}/samples", headers=h, params=too_long)
    assert r.status_code == 422
    assert "7 days" in r.json()["detail"]


def test_too_many_buckets_is_422(client: TestClient, h: dict[str, str], path: str) -> None:
    four_days = {"start": iso(END - timedelta(days=4)), "end": iso(END)}
    assert status(client, h, f"{path}/series", bucket="1m", **four_days) == 422
    assert status(client, h, f"{path}/series", bucket="1h", **four_days) == 200


@pytest.mark.parametrize("route", ["samples", "series"])
@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-03-01T22:00:00", "end": "2026-03-02T02:00:00+08:00"},  # naive start
        {"start": "2026-03-01T22:00:00+08:00", "end": "2026-03-02T02:00:00"},  # naive end
        {"end": "2026-03-02T02:00:00"},  # naive end, default start
        {"start": "2026-03-02T02:00:00+08:00", "end": "2026-03-02T02:00:00+08:00"},  # end == start
        {"start": "2026-03-02T02:00:00+08:00", "end": "2026-03-01T22:00:00+08:00"},  # end < start
        {"start": "2026-03-01"},  # a date is not a time
        {"start": "1772373600"},  # nor is a Unix time
        {"start": "0.5"},
        {"start": "yesterday"},
        {"start": "2026-02-30T00:00:00Z"},
        {"start": "0001-01-01T00:00:00+14:00"},
        {"end": "9999-12-31T23:59:59-14:00"},
        {"start": "2026-03-01T22:00:00+25:00"},
    ],
)
def test_malformed_ranges_are_422(
    client: TestClient, h: dict[str, str], path: str, route: str, params: dict[str, str]
) -> None:
    r = client.get(f"{path}/{route}", headers=h, params=params)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("route", ["samples", "series"])
def test_the_earliest_end_is_fine(client: TestClient, h: dict[str, str], path: str, route: str) -> None:
    """The default start then falls before 1970; that is the server's arithmetic, not the caller's error."""
    assert status(client, h, f"{path}/{route}", end="1970-01-01T00:00:00Z") == 200


def test_naive_after_is_422(client: TestClient, h: dict[str, str], path: str) -> None:
    params = {"start": iso(FIRST), "end": iso(END), "after": "2026-03-01T23:00:00"}
    assert status(client, h, f"{path}/samples", **params) == 422


def test_after_outside_the_range(client: TestClient, h: dict[str, str], path: str) -> None:
    after_end = {"start": iso(FIRST), "end": iso(END), "after": iso(END + timedelta(hours=1))}
    assert client.get(f"{path}/samples", headers=h, params=after_end).json()["items"] == []
    before_start = {"start": iso(FIRST), "end": iso(FIRST + 2 * STEP), "after": iso(FIRST - timedelta(hours=1))}
    items = client.get(f"{path}/samples", headers=h, params=before_start).json()["items"]
    assert [at(i["ts"]) for i in items] == [FIRST, FIRST + STEP]


def test_an_unencoded_plus_in_the_offset_still_means_plus(client: TestClient, h: dict[str, str], path: str) -> None:
    """``?start=…T22:00:00+08:00`` typed into a browser arrives as ``…T22:00:00 08:00``."""
    r = client.get(f"{path}/samples?start=2026-03-01T22:00:00+08:00&end=2026-03-01T22:01:00+08:00", headers=h)
    assert r.status_code == 200, r.text
    assert [at(i["ts"]) for i in r.json()["items"]] == [FIRST, FIRST + STEP]


@pytest.mark.parametrize("bucket", ["2m", "1w", "", "1H", "1h; DROP TABLE samples"])
def test_unknown_buckets_are_422(client: TestClient, h: dict[str, str], path: str, bucket: str) -> None:
    assert status(client, h, f"{path}/series", bucket=bucket) == 422


@pytest.mark.parametrize("limit", [0, -1, 10_001, "ten"])
def test_page_size_is_bounded(client: TestClient, h: dict[str, str], path: str, limit: object) -> None:
    assert status(client, h, f"{path}/samples", limit=limit) == 422
