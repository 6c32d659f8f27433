"""The README's first command: ``steward demo`` on embedded defaults stores readings within 30 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_mosquitto

pytestmark = pytest.mark.broker


def test_demo_on_embedded_defaults_stores_readings_within_30s(tmp_path: Path) -> None:
    require_mosquitto()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env["STEWARD_DATA_DIR"] = str(tmp_path / "data")  # no database or broker URL: everything embedded
    out = subprocess.run(
        [sys.executable, "-m", "steward", "demo", "--duration", "20", "--backfill-hours", "0.5", "--lang", "en"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = re.search(r"demo stopped: stored=(\d+) received=(\d+) first_stored_after_s=([\d.]+)", out.stdout)
    assert summary, out.stdout[-3000:] + out.stderr[-3000:]
    stored, received, first = int(summary[1]), int(summary[2]), float(summary[3])
    assert out.returncode == 0
    assert stored > 0
    assert received > 0
    assert first <= 30
    # Ctrl-C / the end stops everything: the embedded PostgreSQL is shut down again.
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
