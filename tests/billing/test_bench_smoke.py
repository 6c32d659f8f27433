"""bench/billing.py at a tiny size, so the benchmark cannot rot: it builds its database, COPYs the
readings, runs the sharded billing run and its checks pass (every meter billed its register advance,
the ledger balanced, the cached balances right)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_billing_runs_at_a_tiny_size(pg_server_url: str) -> None:
    args = ["--households", "20", "--days", "2", "--workers", "2", "--quiet", "--database-url", pg_server_url]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "billing.py"), *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "billing"
    assert figures["load"]["readings"] == 20 * 48
    checks, run = figures["checks"], figures["run"]
    assert checks["ok"] is True
    assert checks["cursors_at_end"] == 20
    assert run["charges"] == checks["charges"] > 0
    assert sum(w["meters"] for w in run["workers"]) == 20
    assert run["rerun"]["charges"] == 0  # a second run over a billed period charges nothing
    # Then the quarter's statement run: one statement per household, every one written the first time.
    assert run["statements"]["quarter"] == "2026Q3"
    assert run["statements"]["statements"] == run["statements"]["written"] == 20
    assert 0 < run["peak_rss_children_mb"] < 500
