"""Re-exports ``devkit.ingest_process`` (shared with bench/, which must not import tests)."""

from __future__ import annotations

from devkit.ingest_process import IngestProcess

__all__ = ["IngestProcess"]
