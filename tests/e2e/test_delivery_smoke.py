"""Simulated devices → Mosquitto → ingest → PostgreSQL: the happy path and the oracle itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from steward.broker import MosquittoProcess
from tests.support.estate import load_small_estate
from tests.support.ingest_process import IngestProcess
from tests.support.oracle import judge, telemetry_traffic, wait_quiescent
from tests.support.publisher import OraclePublisher

pytestmark = pytest.mark.broker


def test_every_acked_frame_is_stored_once(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> None:
    engine = create_engine(fresh_database)
    load_small_estate(engine, "t1")
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs")).start()
    pub = OraclePublisher("127.0.0.1", mosquitto.port)
    items = list(telemetry_traffic("t1", devices=20, frames=3000))
    pub.publish_all(items)
    pub.drain()
    wait_quiescent(engine, acked=pub.log.acked)
    verdict = judge(engine, pub.log.acked, {k for k, _, _ in items})
    health = ingest.health()
    ingest.stop()
    pub.close()
    assert verdict.acked == 3000, verdict
    assert (verdict.lost, verdict.duplicated, verdict.unexpected) == ([], [], []), verdict
    assert health is not None
    assert health["counters"]["stored"] == 3000 * 5  # type: ignore[index]
