"""A batch commit that hangs (a lock on a written table, matrix M8) turns ingest's health 'degraded' after
COMMIT_STALL_S, while the broker connection stays up; /metrics shows how long. Clock injected."""

from __future__ import annotations

from ingest.health import COMMIT_STALL_S, Health


def test_a_stalled_commit_is_degraded_not_disconnected() -> None:
    now = [1_000.0]
    health = Health(clock=lambda: now[0])
    health.mqtt_connected = True
    assert health.status == "ok"
    health.writing_since = now[0]
    now[0] += COMMIT_STALL_S - 0.5  # a slow commit is not yet a stall
    assert health.status == "ok"
    now[0] += 1.0
    assert health.status == "degraded"
    snap = health.snapshot()
    assert snap["mqtt_connected"] is True
    assert snap["commit_stalled_s"] == COMMIT_STALL_S + 0.5
    assert f"steward_ingest_commit_stalled_seconds {COMMIT_STALL_S + 0.5:.1f}" in health.prometheus()
    health.writing_since = None  # the commit returned
    assert health.status == "ok"
    assert health.snapshot()["commit_stalled_s"] == 0.0
