"""Re-exports ``devkit.publisher`` (shared with bench/, which must not import tests)."""

from __future__ import annotations

from devkit.publisher import OraclePublisher, PublishLog

__all__ = ["OraclePublisher", "PublishLog"]
