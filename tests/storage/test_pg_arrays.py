"""storage.pg_arrays: PostgreSQL reads our pre-encoded binary arrays back as the values we encoded."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from storage.pg_arrays import float8_array, int4_array, timestamptz_array

# hypothesis wants naive bounds and adds the zone itself.
aware = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]),
)


def roundtrip(engine: Engine, sql: str, value: Any) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql, {"a": value}).scalar_one()


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=300))
def test_int4(engine: Engine, values: list[int]) -> None:
    assert roundtrip(engine, "SELECT %(a)b::int[]", int4_array(values)) == values


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True), max_size=300))
def test_float8(engine: Engine, values: list[float]) -> None:
    got = roundtrip(engine, "SELECT %(a)b::float8[]", float8_array(values))
    assert len(got) == len(values)
    for g, v in zip(got, values, strict=True):
        assert (math.isnan(g) and math.isnan(v)) or (g == v and math.copysign(1, g) == math.copysign(1, v))


@settings(max_examples=40, deadline=None)
@given(values=st.lists(aware, max_size=200))
def test_timestamptz(engine: Engine, values: list[datetime]) -> None:
    assert roundtrip(engine, "SELECT %(a)b::timestamptz[]", timestamptz_array(values)) == values


def test_unnest_of_three_columns_as_ingest_writes_them(engine: Engine) -> None:
    ts = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)
    rows = [(ts, 1, 1.5), (ts, 2, -2.0), (ts + timedelta(seconds=1), 3, 0.0)]
    with engine.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT * FROM unnest(%(t)b::timestamptz[], %(p)b::int[], %(v)b::float8[])",
            {
                "t": timestamptz_array([r[0] for r in rows]),
                "p": int4_array([r[1] for r in rows]),
                "v": float8_array([r[2] for r in rows]),
            },
        ).all()
    assert [tuple(r) for r in got] == rows
