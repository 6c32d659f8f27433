"""bench/cards.py at its tiny size (``--quick``), so the benchmark cannot rot: the sample estate's cards are
issued, the simulated controllers (empty at start) converge through Mosquitto, ingest and the worker, and
every one of the 5 revocations is denied by its controller, with the figures in the JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_mosquitto

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def test_bench_cards_quick_run_denies_every_revoked_card(pg_server_url: str) -> None:
    require_mosquitto()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cards.py"), "--quick", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160", "STEWARD_BENCH_DATABASE_URL": pg_server_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "cards"
    assert figures["controllers"] > 0
    assert figures["cards"] > figures["controllers"]
    assert figures["revocations"] == figures["count"] == 5
    assert figures["missed"] == []
    assert 0 < figures["p50_s"] <= figures["p99_s"] <= figures["max_s"] < figures["config"]["timeout_s"]
    assert figures["synced_at_end"] is True
    assert figures["presents"] >= 5  # each card was presented at least once after its revocation's commit
