"""One request, one transaction — committed before the response leaves (DESIGN.md §2).

FastAPI ends dependencies with yield after the response by default; the request's session would then commit
after the client was already told 2xx (or 303, whose redirect the browser follows at once), so a reader could
see the state from before the change, and a failing commit would go unreported."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from accounts.const import Role
from tests.support.world import World, bearer


def test_the_change_is_committed_when_the_response_starts(app: FastAPI, api_world: World) -> None:
    alarm_id = api_world.new_alarm()
    seen_at_response: list[Any] = []

    def acknowledged_elsewhere() -> Any:
        with api_world.engine.connect() as conn:  # another connection: sees only committed rows
            return conn.execute(text("SELECT acknowledged_at FROM alarms WHERE id = :i"), {"i": alarm_id}).scalar()

    async def call() -> int:
        headers = [(k.lower().encode(), v.encode()) for k, v in bearer(api_world, Role.admin).items()]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": f"/api/alarms/{alarm_id}/acknowledge", "raw_path": b"", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), *headers], "client": ("127.0.0.1", 1), "server": ("testserver", 80),
            "state": {},
        }  # fmt: skip
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                seen_at_response.append(await asyncio.to_thread(acknowledged_elsewhere))

        await app(scope, receive, send)
        return status

    with TestClient(app):  # the lifespan: engine and sessionmaker on app.state
        assert asyncio.run(call()) == 200
    assert seen_at_response[0] is not None, "the response started before the acknowledgement was committed"
