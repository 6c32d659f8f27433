"""Reliability matrix M17 (issue 13 §3): ingest partitioned by estate, two owners and a standby, an owner SIGKILLed
under load; the standby takes over the partition and its broker session. The total-queue oracle finds every
acknowledged publish stored exactly once. CI-sized (3 kills); `python bench/ingest_kill.py` runs the issue's
10 kills under 4,000 msg/s with the same scenario (devkit/partition_kill.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.partition_kill import run_m17
from steward.broker import MosquittoProcess

pytestmark = [pytest.mark.broker, pytest.mark.fault]


def test_m17_partition_owner_sigkilled_under_load(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    result = run_m17(fresh_database, "127.0.0.1", mosquitto.port, tmp_path / "logs", kills=3, rate=2_000)
    print(result)
    v = result.verdict
    assert result.kills == 3
    assert sorted(set(result.killed_partitions)) == [0, 1]  # each partition's owner was killed at least once
    assert v.acked >= 10_000, v
    assert v.lost == [], f"lost {len(v.lost)}: {v.lost[:5]}"
    assert v.duplicated == [], f"duplicated {len(v.duplicated)}: {v.duplicated[:5]}"
    assert v.unexpected == [], f"unexpected {len(v.unexpected)}: {v.unexpected[:5]}"
    # The standby claims within its poll (0.2 s) and resumes the session: seconds, not the session's expiry.
    assert max(result.gaps_s) < 10, result.gaps_s
