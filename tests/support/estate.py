"""Re-exports ``devkit.estate`` (shared with bench/, which must not import tests)."""

from __future__ import annotations

from devkit.estate import METRICS, load_small_estate, meter_code, sensor_code, small_estate

__all__ = ["METRICS", "load_small_estate", "meter_code", "sensor_code", "small_estate"]
