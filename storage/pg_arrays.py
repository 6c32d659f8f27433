"""Columns for ``unnest()`` sent as ready-made PostgreSQL binary arrays.

psycopg dumps a Python list into a binary array one element at a time in Python: for ingest's
three sample columns that was a third of the batch writer's CPU (bench/ingest.py, py-spy). These
build the same bytes with one ``struct.pack`` per column; psycopg passes them through unchanged,
typed by the dumpers registered below, so a query still says ``%(ts)b::timestamptz[]``.

Wire format (PostgreSQL's array_send): ndim, has-nulls flag, element type oid, then per dimension its
length and lower bound, then per element its byte length and value, all big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


class Int4Array(bytes):
    """A binary ``int4[]``."""


class Float8Array(bytes):
    """A binary ``float8[]``."""


class TimestamptzArray(bytes):
    """A binary ``timestamptz[]``."""


def _header(element_oid: int, n: int) -> bytes:
    return struct.pack("!iiIii", 1, 0, element_oid, n, 1)


def int4_array(values: Sequence[int]) -> Int4Array:
    n = len(values)
    return Int4Array(_header(23, n) + struct.pack("!" + "ii" * n, *_interleave(4, values)))


def float8_array(values: Sequence[float]) -> Float8Array:
    n = len(values)
    return Float8Array(_header(701, n) + struct.pack("!" + "id" * n, *_interleave(8, values)))


def timestamptz_array(values: Sequence[datetime]) -> TimestamptzArray:
    """Aware datetimes as microseconds since 2000-01-01 UTC (readings of one frame share a ts: one
    conversion each)."""
    micros: list[int] = []
    last: datetime | None = None
    last_us = 0
    for ts in values:
        if ts is not last:
            last, last_us = ts, (ts - PG_EPOCH) // ONE_MICROSECOND
        micros.append(last_us)
    n = len(micros)
    return TimestamptzArray(_header(1184, n) + struct.pack("!" + "iq" * n, *_interleave(8, micros)))


def _interleave(size: int, values: Sequence[object]) -> list[object]:
    out: list[object] = [size] * (2 * len(values))
    out[1::2] = values
    return out


class _PreEncoded(Dumper):
    format = Format.BINARY

    def dump(self, obj: object) -> bytes:
        assert isinstance(obj, bytes)
        return obj


class _Int4ArrayDumper(_PreEncoded):
    oid = 1007


class _Float8ArrayDumper(_PreEncoded):
    oid = 1022


class _TimestamptzArrayDumper(_PreEncoded):
    oid = 1185


psycopg.adapters.register_dumper(Int4Array, _Int4ArrayDumper)
psycopg.adapters.register_dumper(Float8Array, _Float8ArrayDumper)
psycopg.adapters.register_dumper(TimestamptzArray, _TimestamptzArrayDumper)
