"""The TimescaleDB branch of migration 0002, run against timescale-lite (TimescaleDB on PGlite).

timescale-lite serves one connection at a time, so every engine here is a ``NullPool`` engine that is
disposed before the next one connects, and rows go in with plain ``execute`` (one row, or one
multi-VALUES statement): no COPY, no ``executemany`` (psycopg pipeline mode). Background jobs are
registered there but never run, so policies are checked as catalogue entries. The plain-PostgreSQL
branch of 0002 is tested elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.pool import NullPool

from core.settings import get_settings
from ingest.writer import METERS_SQL, SAMPLES_SQL, SWIPES_SQL
from storage import timescale
from storage.base import Base
from storage.migrate import alembic_config, downgrade, upgrade
from storage.models import Sample

pytestmark = pytest.mark.timescale

SERIES = {
    # table: (segment-by column, chunk interval), as migration 0002 sets them up
    "samples": ("point_id", timedelta(days=1)),
    "meter_readings": ("device_id", timedelta(days=7)),
    "access_events": ("controller_id", timedelta(days=7)),
}
ACCESS_EVENTS_RETENTION = timedelta(days=180)  # PIPL: swipe logs 180 days online
AGGREGATES = {
    # view: (bucket width, refresh start_offset, end_offset, schedule_interval)
    "samples_1h": (timedelta(hours=1), timedelta(days=3), timedelta(hours=1), timedelta(minutes=15)),
    "samples_1d": (timedelta(days=1), timedelta(days=35), timedelta(days=1), timedelta(hours=1)),
}
POLICY_PROCS = (
    "policy_compression",
    "policy_retention",
    "policy_refresh_continuous_aggregate",
)


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator[Connection]:
    """The only open connection to timescale-lite while the block runs."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_engine(url, poolclass=NullPool, **options)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def at(hour: int, minute: int, day: int = 1) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC)


def hypertables(conn: Connection) -> dict[str, bool]:
    rows = conn.execute(
        text(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'public'"
        )
    )
    return dict(rows.all())


def policy_jobs(conn: Connection) -> dict[tuple[str, str], dict[str, Any]]:
    """(proc_name, table or view) → the job's schedule and its config intervals, as timedeltas."""
    rows = conn.execute(
        text(
            "SELECT proc_name, hypertable_name, schedule_interval, "
            "(config->>'compress_after')::interval AS compress_after, "
            "(config->>'drop_after')::interval AS drop_after, "
            "(config->>'start_offset')::interval AS start_offset, "
            "(config->>'end_offset')::interval AS end_offset "
            "FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = 'public' AND proc_name = ANY(:procs)"
        ),
        {"procs": list(POLICY_PROCS)},
    ).mappings()
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["proc_name"], row["hypertable_name"])
        assert key not in jobs, f"duplicate job {key}"  # if_not_exists must hold on a re-run
        jobs[key] = dict(row)
    return jobs


def continuous_aggregates(conn: Connection) -> dict[str, str]:
    rows = conn.execute(
        text(
            "SELECT view_name, hypertable_name FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = 'public'"
        )
    )
    return dict(rows.all())


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()


def assert_time_series_engine(conn: Connection) -> None:
    """Everything the TimescaleDB branch of 0002 promises, read back from the catalogue."""
    settings = get_settings()
    assert timescale.has_timescale(conn)
    assert hypertables(conn) == dict.fromkeys(SERIES, True)
    jobs = policy_jobs(conn)
    for table in SERIES:
        assert jobs[("policy_compression", table)]["compress_after"] == timedelta(days=settings.compress_after_days)
    retention = {table: job["drop_after"] for (proc, table), job in jobs.items() if proc == "policy_retention"}
    # meter_readings are billing evidence: no retention policy drops them.
    assert retention == {
        "samples": timedelta(days=settings.retention_days),
        "access_events": ACCESS_EVENTS_RETENTION,
    }
    assert continuous_aggregates(conn) == dict.fromkeys(AGGREGATES, "samples")
    for view, (_, start, end, every) in AGGREGATES.items():
        job = jobs[("policy_refresh_continuous_aggregate", view)]
        assert (job["start_offset"], job["end_offset"], job["schedule_interval"]) == (start, end, every)
    assert len(jobs) == len(SERIES) + len(retention) + len(AGGREGATES)  # nothing else, nothing twice


@pytest.fixture
def migrated(timescale_url: str) -> str:
    """timescale-lite at head (a no-op when an earlier test already upgraded it)."""
    upgrade(timescale_url)
    return timescale_url


def test_extension_is_installed(migrated: str) -> None:
    with connect(migrated) as conn:
        version = conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))
        assert version
        assert int(version.split(".")[0]) >= 2
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()


def test_series_tables_are_compressed_hypertables(migrated: str) -> None:
    with connect(migrated) as conn:
        assert hypertables(conn) == dict.fromkeys(SERIES, True)
        dimensions = conn.execute(
            text(
                "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions "
                "WHERE hypertable_schema = 'public' AND hypertable_name = ANY(:t)"
            ),
            {"t": list(SERIES)},
        ).all()
        assert {name: (column, chunk) for name, column, chunk in dimensions} == {
            table: ("ts", chunk) for table, (_, chunk) in SERIES.items()
        }
        settings = conn.execute(
            text(
                "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index, orderby_asc "
                "FROM timescaledb_information.compression_settings "
                "WHERE hypertable_schema = 'public' AND hypertable_name = ANY(:t)"
            ),
            {"t": list(SERIES)},
        ).all()
    segment_by = {table: column for table, column, segment, _, _ in settings if segment is not None}
    order_by = {table: (column, asc) for table, column, _, order, asc in settings if order is not None}
    assert segment_by == {table: column for table, (column, _) in SERIES.items()}
    assert order_by == dict.fromkeys(SERIES, ("ts", False))  # newest first within a segment


def test_policies_and_continuous_aggregates(migrated: str) -> None:
    with connect(migrated) as conn:
        assert_time_series_engine(conn)
        # The daily buckets follow the estates' civil day.
        definition = conn.scalar(
            text(
                "SELECT view_definition FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name = 'samples_1d'"
            )
        )
    assert timescale.DAILY_BUCKET_TZ in definition


def test_upsert_deduplicates_and_hourly_aggregate_refreshes(migrated: str) -> None:
    point, other = 91001, 91002
    first = {"point_id": point, "ts": at(10, 5), "value": 1.0}
    with connect(migrated) as conn:
        insert = pg_insert(Sample).on_conflict_do_nothing(index_elements=["point_id", "ts"])
        insert = insert.returning(Sample.point_id, Sample.ts)  # RETURNING yields only the rows stored
        assert len(conn.execute(insert.values(first)).all()) == 1
        assert conn.execute(insert.values({**first, "value": 99.0})).all() == []  # redelivered reading
        batch = [
            {"point_id": point, "ts": at(10, 20), "value": 4.0},
            {"point_id": point, "ts": at(10, 50), "value": 2.5},
            {"point_id": point, "ts": at(10, 5), "value": 98.0},  # duplicate inside a later batch
            {"point_id": point, "ts": at(11, 10), "value": 7.0},
            {"point_id": other, "ts": at(10, 30), "value": -3.0},
        ]
        stored_now = conn.execute(insert.values(batch)).all()  # one multi-VALUES statement
        assert len(stored_now) == 4
        assert (point, at(10, 5)) not in stored_now
        conn.commit()
        stored = conn.execute(text("SELECT ts, value FROM samples WHERE point_id = :p ORDER BY ts"), {"p": point}).all()
    assert [(ts, value) for ts, value in stored] == [
        (at(10, 5), 1.0),  # the first copy wins
        (at(10, 20), 4.0),
        (at(10, 50), 2.5),
        (at(11, 10), 7.0),
    ]

    # Materialized-only aggregates are empty until refreshed; refreshing needs autocommit.
    with connect(migrated, autocommit=True) as conn:
        conn.execute(text("CALL refresh_continuous_aggregate('samples_1h', NULL, NULL)"))
        rows = conn.execute(
            text(
                "SELECT point_id, bucket, n, avg, min, max, last FROM samples_1h "
                "WHERE point_id = ANY(:p) ORDER BY point_id, bucket"
            ),
            {"p": [point, other]},
        ).all()
    assert [tuple(row) for row in rows] == [
        (point, at(10, 0), 3, 2.5, 1.0, 4.0, 2.5),  # last by ts, not by value or arrival
        (point, at(11, 0), 1, 7.0, 7.0, 7.0, 7.0),
        (other, at(10, 0), 1, -3.0, -3.0, -3.0, -3.0),
    ]


def test_ingest_statements_deduplicate_on_hypertables_even_in_compressed_chunks(migrated: str) -> None:
    """ingest.writer's unnest … ON CONFLICT DO NOTHING statements, one execute each, on the hypertables."""
    day = datetime(2025, 5, 10, tzinfo=UTC)
    received = day + timedelta(days=1)
    samples = {
        "ts": [day + timedelta(hours=h) for h in (1, 2, 3)],
        "point": [92001, 92001, 92002],
        "value": [1.5, 2.5, 3.5],
    }
    meters = {
        "ts": [day, day + timedelta(hours=1)],
        "device": [92001, 92001],
        "register": [Decimal("10.125"), Decimal("10.250")],
        "reverse": [None, None],
        "valve": ["open", "open"],
        "flags": ["", "low_battery"],
        "seq": [1, 2],
        "received": [received, received],
    }
    swipes = {
        "ts": [day, day + timedelta(minutes=1)],
        "device": [92001, 92001],
        "door": ["B1-east", "B1-east"],
        "card": ["04A1B2C3", "04A1B2C3"],
        "granted": [True, False],
        "reason": [None, "expired"],
        "seq": [7, 8],
        "received": [received, received],
    }

    def write() -> tuple[int, int, int]:
        with connect(migrated) as conn, conn.begin():
            return (
                conn.exec_driver_sql(SAMPLES_SQL, samples).rowcount,
                conn.exec_driver_sql(METERS_SQL, meters).rowcount,
                conn.exec_driver_sql(SWIPES_SQL, swipes).rowcount,
            )

    assert write() == (3, 2, 2)
    assert write() == (0, 0, 0)  # a redelivered batch is a no-op

    # A late batch reaching chunks that compression already reached still deduplicates.
    with connect(migrated) as conn, conn.begin():
        for table in SERIES:  # chunks of 1 or 7 days: this window holds the ones with `day` in them
            conn.execute(
                text(
                    "SELECT compress_chunk(c, if_not_compressed => TRUE) "
                    "FROM show_chunks(:t, newer_than => :lo, older_than => :hi) c"
                ),
                {"t": table, "lo": day - timedelta(days=7), "hi": day + timedelta(days=8)},
            )
        holding_day = conn.execute(
            text(
                "SELECT hypertable_name, is_compressed FROM timescaledb_information.chunks "
                "WHERE hypertable_name = ANY(:t) AND range_start <= :day AND range_end > :day"
            ),
            {"t": list(SERIES), "day": day},
        ).all()
        assert dict(holding_day) == dict.fromkeys(SERIES, True)
    assert write() == (0, 0, 0)
    samples["ts"].append(day + timedelta(hours=4))
    samples["point"].append(92001)
    samples["value"].append(4.5)
    assert write() == (1, 0, 0)
    with connect(migrated) as conn:
        stored = conn.execute(
            text("SELECT point_id, value FROM samples WHERE point_id IN (92001, 92002) ORDER BY ts")
        ).all()
        assert [tuple(row) for row in stored] == [(92001, 1.5), (92001, 2.5), (92002, 3.5), (92001, 4.5)]
        flags = conn.scalars(text("SELECT flags FROM meter_readings WHERE device_id = 92001 ORDER BY ts")).all()
        assert flags == [[], ["low_battery"]]


def test_daily_aggregate_buckets_on_the_shanghai_civil_day(migrated: str) -> None:
    point = 91003
    rows = [
        {"point_id": point, "ts": at(15, 30), "value": 1.0},  # 23:30 on 1 June in Shanghai
        {"point_id": point, "ts": at(16, 30), "value": 5.0},  # 00:30 on 2 June in Shanghai
        {"point_id": point, "ts": at(2, 0, day=2), "value": 3.0},  # 10:00 on 2 June in Shanghai
    ]
    with connect(migrated) as conn:
        conn.execute(pg_insert(Sample).values(rows).on_conflict_do_nothing())
        conn.commit()
    with connect(migrated, autocommit=True) as conn:
        conn.execute(text("CALL refresh_continuous_aggregate('samples_1d', NULL, NULL)"))
        daily = conn.execute(
            text("SELECT bucket, n, min, max, last FROM samples_1d WHERE point_id = :p ORDER BY bucket"),
            {"p": point},
        ).all()
    # Shanghai midnight is 16:00 UTC the evening before.
    assert [tuple(row) for row in daily] == [
        (datetime(2025, 5, 31, 16, tzinfo=UTC), 1, 1.0, 1.0, 1.0),
        (datetime(2025, 6, 1, 16, tzinfo=UTC), 2, 3.0, 5.0, 3.0),
    ]


def test_time_bucket_queries(migrated: str) -> None:
    point = 91004
    rows = [
        {"point_id": point, "ts": at(8, 1), "value": 10.0},
        {"point_id": point, "ts": at(8, 14), "value": 20.0},
        {"point_id": point, "ts": at(8, 50), "value": 40.0},
    ]
    with connect(migrated) as conn:
        conn.execute(pg_insert(Sample).values(rows).on_conflict_do_nothing())
        conn.commit()
        window = {"p": point, "start": at(8, 0), "end": at(9, 0)}
        buckets = conn.execute(
            text(
                "SELECT time_bucket(INTERVAL '15 minutes', ts) AS bucket, count(*), avg(value), "
                "first(value, ts), last(value, ts) FROM samples "
                "WHERE point_id = :p AND ts >= :start AND ts < :end GROUP BY bucket ORDER BY bucket"
            ),
            window,
        ).all()
        assert [tuple(row) for row in buckets] == [
            (at(8, 0), 2, 15.0, 10.0, 20.0),
            (at(8, 45), 1, 40.0, 40.0, 40.0),
        ]
        # Chart series: empty buckets filled with the last known value.
        filled = conn.execute(
            text(
                "SELECT time_bucket_gapfill(INTERVAL '15 minutes', ts) AS bucket, locf(avg(value)) "
                "FROM samples WHERE point_id = :p AND ts >= :start AND ts < :end "
                "GROUP BY bucket ORDER BY bucket"
            ),
            window,
        ).all()
        assert [tuple(row) for row in filled] == [
            (at(8, 0), 15.0),
            (at(8, 15), 15.0),
            (at(8, 30), 15.0),
            (at(8, 45), 40.0),
        ]


def test_no_schema_drift_from_the_models(migrated: str) -> None:
    """Autogenerate sees the models' schema; TimescaleDB adds only its default time indexes."""

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # Mirrors storage/migrations/env.py.
        return not (type_ == "index" and name and name.endswith("_ts_brin"))

    with connect(migrated) as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        diffs = compare_metadata(context, Base.metadata)
    # create_hypertable adds "<table>_ts_idx" (ts DESC) to each hypertable; env.py's include_object
    # does not know them yet, so they are the only tolerated difference.
    unexpected = [
        diff
        for diff in diffs
        if not (
            isinstance(diff, tuple)
            and diff[0] == "remove_index"
            and diff[1].name in {f"{table}_ts_idx" for table in SERIES}
        )
    ]
    assert unexpected == []


def test_downgrade_and_upgrade_again(migrated: str) -> None:
    # Down to 0001: aggregates and every policy job go; the tables stay hypertables because
    # TimescaleDB has no in-place way back to a plain table.
    downgrade(migrated, "0001")
    with connect(migrated) as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0001"
        assert continuous_aggregates(conn) == {}
        assert policy_jobs(conn) == {}
        assert hypertables(conn) == dict.fromkeys(SERIES, True)
        assert conn.scalar(text("SELECT to_regclass('samples_1h')")) is None

    upgrade(migrated)  # over existing hypertables: if_not_exists everywhere
    with connect(migrated) as conn:
        assert_time_series_engine(conn)

    # Down to nothing: the tables (and with them their chunks and jobs) are gone; the extension stays.
    downgrade(migrated, "base")
    with connect(migrated) as conn:
        assert conn.scalar(text("SELECT to_regclass('samples')")) is None
        assert hypertables(conn) == {}
        assert policy_jobs(conn) == {}
        assert continuous_aggregates(conn) == {}
        assert timescale.has_timescale(conn)

    upgrade(migrated)
    with connect(migrated) as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
        assert_time_series_engine(conn)
        assert conn.scalar(text("SELECT count(*) FROM samples")) == 0
    upgrade(migrated)  # at head already: nothing to do, nothing duplicated
    with connect(migrated) as conn:
        assert_time_series_engine(conn)
