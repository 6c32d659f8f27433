"""The README's first command: ``steward demo`` on embedded defaults stores readings within 30 s,
serves the dashboards at the URL it prints, with the demo login it prints, and turns the faults of its
backfill (water in a vacant flat, a silent sensor) into alarms and tickets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_mosquitto

pytestmark = pytest.mark.broker


def test_demo_on_embedded_defaults(tmp_path: Path) -> None:
    require_mosquitto()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env["STEWARD_DATA_DIR"] = str(tmp_path / "data")  # no database or broker URL: everything embedded
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "steward", "demo", "--duration", "40", "--backfill-hours", "0.5", "--lang", "en"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if m := re.search(r"Dashboards: (http://127\.0\.0\.1:\d+/)", log.read_text()):
                url = m[1]
            time.sleep(0.2)
        assert url, log.read_text()[-3000:]
        with urllib.request.urlopen(url + "login", timeout=5) as resp:
            login_page = resp.read().decode()
        assert resp.status == 200
        assert "password" in login_page
        assert proc.wait(120) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "demo / steward-demo" in text
    summary = re.search(
        r"demo stopped: stored=(\d+) received=(\d+) first_stored_after_s=([\d.]+) alarms=(\d+) tickets=(\d+)", text
    )
    assert summary, text[-3000:]
    stored, received, first = int(summary[1]), int(summary[2]), float(summary[3])
    alarms, tickets = int(summary[4]), int(summary[5])
    assert stored > 0
    assert received > 0
    assert first <= 30
    # Vacant-flat water (meter anomaly in ingest) and the silent sensor (worker's stale check) at least.
    assert alarms >= 2, text[-3000:]
    assert tickets >= 2, text[-3000:]
    # The end (or Ctrl-C) stops everything: the embedded PostgreSQL is shut down again.
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
