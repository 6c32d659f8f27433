"""time-series engine: TimescaleDB hypertables, policies and continuous aggregates, or plain tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

When ``CREATE EXTENSION timescaledb`` succeeds, samples / meter_readings / access_events become
hypertables with compression and retention policies and hourly / daily continuous aggregates of
samples. Otherwise they stay plain tables with BRIN indexes on the device time, and ingest keeps the
``samples_hourly`` rollup itself.
"""

from __future__ import annotations

from alembic import op

from core.settings import get_settings
from storage import timescale

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SERIES = (
    # table, segment-by column, chunk interval
    ("samples", "point_id", "1 day"),
    ("meter_readings", "device_id", "7 days"),
    ("access_events", "controller_id", "7 days"),
)
# Swipe logs are whereabouts (PIPL art. 28): 180 days online by default (domain-defaults §6).
ACCESS_EVENTS_RETENTION_DAYS = 180


def upgrade() -> None:
    conn = op.get_bind()
    settings = get_settings()
    if not timescale.try_create_extension(conn):
        for table, _, _ in SERIES:
            op.execute(f"CREATE INDEX IF NOT EXISTS ix_{table}_ts_brin ON {table} USING brin (ts)")
        return
    for table, segment_by, chunk in SERIES:
        timescale.make_hypertable(conn, table, "ts", chunk)
        # Keep chunks uncompressed longer than the late-arrival window: ON CONFLICT into compressed
        # chunks has a bug history and late readings must still deduplicate.
        timescale.enable_compression(conn, table, segment_by, settings.compress_after_days)
    timescale.add_retention(conn, "samples", settings.retention_days)
    timescale.add_retention(conn, "access_events", ACCESS_EVENTS_RETENTION_DAYS)
    # Continuous aggregates cannot be created inside a transaction block.
    with op.get_context().autocommit_block():
        conn.exec_driver_sql(timescale.sample_aggregate_sql("samples_1h", "1 hour"))
        conn.exec_driver_sql(timescale.sample_aggregate_sql("samples_1d", "1 day", timescale.DAILY_BUCKET_TZ))
        timescale.add_refresh_policy(conn, "samples_1h", "3 days", "1 hour", "15 minutes")
        timescale.add_refresh_policy(conn, "samples_1d", "35 days", "1 day", "1 hour")


def downgrade() -> None:
    conn = op.get_bind()
    if timescale.has_timescale(conn):
        with op.get_context().autocommit_block():
            conn.exec_driver_sql("DROP MATERIALIZED VIEW IF EXISTS samples_1d")
            conn.exec_driver_sql("DROP MATERIALIZED VIEW IF EXISTS samples_1h")
        # The tables stay hypertables (no in-place way back), but at 0001 nothing may delete or
        # compress rows behind the app's back: drop the retention and compression jobs.
        for table, _, _ in SERIES:
            timescale.remove_policies(conn, table)
    for table, _, _ in SERIES:
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_ts_brin")
