"""API fixtures: the app on the test database over the shared test world (tests/support/world.py).

The role × route expectations live in tests/api/test_access.py; the world is built in tests/support/world.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from steward.app import create_app
from tests.support.billing_world import WEBHOOK_PROVIDER, WEBHOOK_SECRET
from tests.support.world import World, build_world, client_address


@pytest.fixture(scope="session")
def api_world(pg_server_url: str) -> Iterator[World]:
    with build_world(pg_server_url) as world:
        yield world


@pytest.fixture(scope="session")
def app(api_world: World) -> FastAPI:
    # The payment webhook's test provider and secret (tests/api/test_billing_webhook.py signs with them).
    settings = Settings(payment_webhook_secrets={WEBHOOK_PROVIDER: SecretStr(WEBHOOK_SECRET)})
    return create_app(settings, engine=api_world.engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=(client_address(), 50000)) as c:
        yield c
