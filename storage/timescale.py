"""TimescaleDB helpers used by the migrations, and the one check the app uses to pick a query path."""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# Daily buckets follow the estates' civil day, not UTC midnight.
DAILY_BUCKET_TZ = "Asia/Shanghai"


def try_create_extension(conn: Connection) -> bool:
    """Create the timescaledb extension if the server has it; False (and nothing changed) otherwise."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except DBAPIError as exc:
        log.info("timescaledb not available, using plain tables: %s", str(exc.orig).splitlines()[0])
        return False
    return True


def has_timescale(conn: Connection) -> bool:
    return bool(conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")))


def is_hypertable(conn: Connection, table: str) -> bool:
    return bool(
        conn.scalar(
            text(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() AND hypertable_name = :t"
            ),
            {"t": table},
        )
    )


def make_hypertable(conn: Connection, table: str, time_column: str, chunk: str) -> None:
    conn.exec_driver_sql(
        f"SELECT create_hypertable('{table}', '{time_column}', chunk_time_interval => INTERVAL '{chunk}', "
        "if_not_exists => TRUE, migrate_data => TRUE)"
    )


def enable_compression(conn: Connection, table: str, segment_by: str, after_days: int) -> None:
    conn.exec_driver_sql(
        f"ALTER TABLE {table} SET (timescaledb.compress, "
        f"timescaledb.compress_segmentby = '{segment_by}', timescaledb.compress_orderby = 'ts DESC')"
    )
    conn.exec_driver_sql(
        f"SELECT add_compression_policy('{table}', INTERVAL '{int(after_days)} days', if_not_exists => TRUE)"
    )


def add_retention(conn: Connection, table: str, days: int) -> None:
    conn.exec_driver_sql(f"SELECT add_retention_policy('{table}', INTERVAL '{int(days)} days', if_not_exists => TRUE)")


def remove_policies(conn: Connection, table: str) -> None:
    """Drop the retention and compression jobs of a hypertable (no-op for those it does not have).

    Compressed chunks stay compressed and the table stays a hypertable: TimescaleDB cannot turn a
    hypertable back into a plain table in place.
    """
    if not is_hypertable(conn, table):
        return
    conn.exec_driver_sql(f"SELECT remove_retention_policy('{table}', if_exists => TRUE)")
    conn.exec_driver_sql(f"SELECT remove_compression_policy('{table}', if_exists => TRUE)")


def sample_aggregate_sql(view: str, bucket: str, tz: str | None = None) -> str:
    bucket_expr = f"time_bucket(INTERVAL '{bucket}', ts, '{tz}')" if tz else f"time_bucket(INTERVAL '{bucket}', ts)"
    return (
        # Real-time aggregation: buckets not yet materialised are computed from raw rows at query time.
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} "
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"SELECT point_id, {bucket_expr} AS bucket, count(*) AS n, avg(value) AS avg, "
        "min(value) AS min, max(value) AS max, last(value, ts) AS last "
        "FROM samples GROUP BY point_id, bucket WITH NO DATA"
    )


def add_refresh_policy(conn: Connection, view: str, start: str, end: str, every: str) -> None:
    conn.exec_driver_sql(
        f"SELECT add_continuous_aggregate_policy('{view}', start_offset => INTERVAL '{start}', "
        f"end_offset => INTERVAL '{end}', schedule_interval => INTERVAL '{every}', if_not_exists => TRUE)"
    )
