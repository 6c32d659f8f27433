"""Re-exports ``devkit.postgres`` (shared with bench/, which must not import tests)."""

from __future__ import annotations

from devkit.postgres import ThrowawayPostgres, create_database, drop_database, embedded_running, shared_server_url

__all__ = ["ThrowawayPostgres", "create_database", "drop_database", "embedded_running", "shared_server_url"]
