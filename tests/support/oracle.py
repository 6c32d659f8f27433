"""Re-exports ``devkit.oracle`` (shared with bench/, which must not import tests)."""

from __future__ import annotations

from devkit.oracle import Verdict, frame_key, judge, stored_frames, telemetry_traffic, wait_quiescent

__all__ = ["Verdict", "frame_key", "judge", "stored_frames", "telemetry_traffic", "wait_quiescent"]
