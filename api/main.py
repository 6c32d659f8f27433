"""ASGI entry point kept for deployments that run ``uvicorn api.main:app``: the same app as ``steward.asgi:app``.

The one import from ``api`` up to the composition root, allowed by name in the layers contract
(pyproject.toml, ``ignore_imports``); nothing imports this module.
"""

from __future__ import annotations

from steward.asgi import app

__all__ = ["app"]
