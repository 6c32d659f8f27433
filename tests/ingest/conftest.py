"""Helpers for ingest tests without a broker: estates of their own in the shared session database,
RawMessage builders, a Pipeline wired to a fake ``ack`` and queries scoped to one estate.

The ``engine`` database is shared by the whole test session, so every test that writes gets a fresh
estate (unique estate and device codes) and only ever queries rows of its own devices and topics.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from core import clock
from core.settings import Settings
from ingest.health import Health
from ingest.messages import RawMessage
from ingest.pipeline import Pipeline
from protocol.topics import uplink
from tests.support.estate import METRICS, load_small_estate, meter_code, sensor_code

_mids = itertools.count(1)


def new_estate_code(prefix: str) -> str:
    """Unique per call: estate codes are ``[a-z0-9-]{1,32}``; device codes derive from them."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Estate:
    code: str
    engine: Engine

    def sensor(self, i: int = 0) -> str:
        return sensor_code(self.code, i)

    def meter(self, i: int = 0) -> str:
        return meter_code(self.code, i)

    @property
    def controller(self) -> str:
        return f"{self.code.upper()}-AC1"

    def topic(self, device: str, channel: str) -> str:
        return uplink(self.code, device, channel)

    @property
    def topic_like(self) -> str:
        return f"steward/{self.code}/%"

    def device_id(self, code: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT id FROM devices WHERE code = :c"), {"c": code}).scalar_one())

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), {"estate": self.code, "like": self.topic_like, **params}))

    def samples(self, device: str) -> list[tuple[datetime, str, float]]:
        """(device ts, metric, value) of one device, in device-time order."""
        return [
            (ts, metric, value)
            for ts, metric, value in self.rows(
                "SELECT s.ts, p.metric, s.value FROM samples s JOIN points p ON p.id = s.point_id "
                "JOIN devices d ON d.id = p.device_id WHERE d.code = :code ORDER BY s.ts, p.metric",
                code=device,
            )
        ]

    def dead_letters(self) -> list[Any]:
        return self.rows(
            "SELECT topic, payload, error, received_at FROM dead_letters WHERE topic LIKE :like ORDER BY id"
        )

    def quarantined(self) -> list[Any]:
        return self.rows(
            "SELECT topic, device_code, payload, reason, detail, received_at FROM quarantined_messages "
            "WHERE topic LIKE :like ORDER BY id"
        )

    def seq_gaps(self, device: str) -> list[tuple[int, int]]:
        return [
            (int(a), int(b))
            for a, b in self.rows(
                "SELECT first_missing, last_missing FROM seq_gaps g JOIN devices d ON d.id = g.device_id "
                "WHERE d.code = :code ORDER BY g.id",
                code=device,
            )
        ]

    def device_state(self, device: str) -> Any:
        rows = self.rows(
            "SELECT s.last_seen_at, s.last_ts, s.last_seq, s.online, s.battery_v FROM device_state s "
            "JOIN devices d ON d.id = s.device_id WHERE d.code = :code",
            code=device,
        )
        return rows[0] if rows else None


@pytest.fixture
def estate(engine: Engine) -> Estate:
    """A small estate of this test's own: 4 five-point sensors, 2 meters and a door controller."""
    code = new_estate_code("ip")
    load_small_estate(engine, code, sensors=4, meters=2)
    return Estate(code, engine)


def raw(
    topic: str,
    payload: bytes | dict[str, Any],
    *,
    received_at: datetime | None = None,
    mid: int | None = None,
    connection: int = 1,
) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(
        topic=topic,
        payload=body,
        mid=next(_mids) if mid is None else mid,
        qos=1,
        received_at=received_at or clock.now(),
        connection=connection,
    )


def frame(ts: datetime | str | int, seq: int | None = None, base: float = 20.0, **extra: Any) -> dict[str, Any]:
    """A telemetry frame carrying all five metrics of a small-estate sensor."""
    body: dict[str, Any] = {
        "v": 1,
        "ts": ts.isoformat() if isinstance(ts, datetime) else ts,
        "values": {m: base + i for i, m in enumerate(METRICS)},
        **extra,
    }
    if seq is not None:
        body["seq"] = seq
    return body


@dataclass
class FakeAck:
    """Stands in for MqttSource.ack: records each acked batch's message ids, in order."""

    calls: list[list[int]] = field(default_factory=list)
    on_ack: Callable[[Sequence[RawMessage]], None] | None = None

    def __call__(self, messages: Sequence[RawMessage]) -> int:
        if self.on_ack is not None:
            self.on_ack(messages)
        self.calls.append([m.mid for m in messages])
        return len(messages)

    @property
    def mids(self) -> list[int]:
        return [mid for call in self.calls for mid in call]


@dataclass
class Harness:
    pipeline: Pipeline
    ack: FakeAck
    health: Health
    stop: threading.Event
    # Called after each commit and ack (e.g. waiting for the charger behind ingest to catch up).
    settle: Callable[[], None] | None = None

    def commit(self, messages: Sequence[RawMessage]) -> bool:
        """What Pipeline.run does with one collected batch: commit (with retry), then ack."""
        ok = self.pipeline._commit_with_retry(list(messages), self.stop)
        if ok:
            self.pipeline.ack(list(messages))
            if self.settle is not None:
                self.settle()
        return ok


def make_harness(engine: Engine, **settings: Any) -> Harness:
    cfg = Settings(
        env="testing",
        database_url=engine.url.render_as_string(hide_password=False),
        **{"max_payload_bytes": 4096, **settings},
    )
    health, ack, stop = Health(), FakeAck(), threading.Event()
    pipeline = Pipeline(cfg, engine, health, ack)
    assert pipeline.prepare(stop)
    return Harness(pipeline, ack, health, stop)


@pytest.fixture
def harness(engine: Engine, estate: Estate) -> Iterator[Harness]:
    """A Pipeline prepared after ``estate`` was loaded (so its registry knows the estate's devices)."""
    h = make_harness(engine)
    yield h
    h.stop.set()
