"""ASGI entry point for uvicorn (``steward run api``)."""

from __future__ import annotations

from steward.app import create_app

app = create_app()
