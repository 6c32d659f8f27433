"""bench/ingest.py --meter-stream at a tiny size, so the charging-on-vs-off benchmark cannot rot: fastpub →
Mosquitto → ingest with charging on and off, then one billing run; the check is that the "on" meters
were charged exactly their registers' advance (nothing lost at ingest, nothing twice)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import require_mosquitto

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def test_the_meter_stream_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    require_mosquitto()
    args = ["--meter-stream", "--meter-households", "20", "--meter-messages", "200", "--repetitions", "1", "--quiet"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ingest.py"), *args, "--tmp-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "ingest-meter-stream"
    checks = figures["checks"]
    assert checks["ok"] is True
    # 10 readings a quarter-hour apart per meter: charged at ingest an hour or more at a time.
    assert 0 < checks["charges_at_ingest"] < checks["readings_charged"] == 200
    assert Decimal(checks["charged_m3"]) == Decimal(checks["registers_advance_m3"]) > 0
    assert figures["throughput"]["median_on"] > 0
    assert figures["throughput"]["median_off"] > 0
