"""STEWARD_DATABASE_READ_URL against a real streaming replica (tests/support/replica.py: a throwaway primary and a
``pg_basebackup -R`` standby of it): read-only routes read on the replica, a staff action and the page its form
redirects to read the primary (read-your-writes), and the ingest page and the API show the replica's lag.

Replay on the replica is paused (``pg_wal_replay_pause``) to make lag that a test can see: rows written on the
primary then stay out of the replica until it resumes, whatever the machine's speed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from accounts.const import Role
from core.settings import Settings
from steward.app import create_app
from steward.broker import free_port
from storage.models import DeadLetter
from tests.api.test_access import ACCESS, ALL_ESTATES_ONLY, HEAD_OFFICE, PUBLIC, url
from tests.support.access_world import card_for, unit_code_of
from tests.support.replica import ReplicaPair, bin_dir_or_skip, streaming_replica, wait_replayed
from tests.support.world import PASSWORD, World, bearer, build_world, client_address
from web.replica import WRITTEN_COOKIE, fresh_read_session

HQ = "head-office"  # tests/support/world.py HEAD_OFFICE: an admin of every estate


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    with streaming_replica(bin_dir_or_skip()) as made:
        yield made


@pytest.fixture(scope="module")
def world(pair: ReplicaPair) -> Iterator[World]:
    with build_world(pair.primary_url.rsplit("/", 1)[0] + "/postgres", prefix="steward_rpl") as made:
        yield made


@pytest.fixture(scope="module")
def replica(pair: ReplicaPair, world: World) -> Iterator[Engine]:
    """The world's database on the replica, caught up."""
    name = world.engine.url.database
    engine = create_engine(pair.replica_url.rsplit("/", 1)[0] + f"/{name}")
    wait_replayed(world.engine, engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(world: World, replica: Engine) -> Iterator[TestClient]:
    app = create_app(Settings(), engine=world.engine, read_engine=replica)
    with TestClient(app, client=(client_address(), 50000), base_url="http://testserver") as c:
        yield c


def caught_up(world: World, replica: Engine) -> None:
    wait_replayed(world.engine, replica)


@contextmanager
def replay_paused(replica: Engine) -> Iterator[None]:
    """The replica receives WAL but applies none of it until the block ends."""
    with replica.connect() as conn:
        conn.execute(text("SELECT pg_wal_replay_pause()"))
        for _ in range(100):
            if conn.scalar(text("SELECT pg_get_wal_replay_pause_state()")) == "paused":
                break
            conn.execute(text("SELECT pg_sleep(0.05)"))
        else:
            raise AssertionError("replay did not pause")
        conn.commit()
    try:
        yield
    finally:
        with replica.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()"))
            conn.commit()


def new_dead_letter(world: World) -> int:
    with world.engine.begin() as conn:
        return int(
            conn.execute(
                insert(DeadLetter)
                .values(topic=f"steward/{world.estate}/up/X/reading", payload=b"{", error=f"rpl-{uuid.uuid4().hex}")
                .returning(DeadLetter.id)
            ).scalar_one()
        )


def dead_letter_ids(client: TestClient, world: World) -> set[int]:
    r = client.get("/api/ingest/dead-letters?limit=500", headers=bearer(world, HQ))
    assert r.status_code == 200, r.text
    return {row["id"] for row in r.json()["items"]}


def login(client: TestClient, next_url: str) -> str:
    r = client.post("/login", data={"username": HQ, "password": PASSWORD, "next": next_url}, follow_redirects=True)
    assert r.status_code == 200, r.text
    return r.text


def alarm_card(html: str, alarm_id: int) -> str:
    found = re.search(rf'<article [^>]*data-alarm="{alarm_id}".*?</article>', html, re.S)
    assert found, f"alarm {alarm_id} not on the page"
    return found.group(0)


def test_the_read_session_is_on_the_replica(client: TestClient, world: World, replica: Engine) -> None:
    """A row written on the primary while the replica does not replay is not in a read route's answer; once the
    replica catches up it is: the route read the replica."""
    caught_up(world, replica)
    with replay_paused(replica):
        dead = new_dead_letter(world)
        assert dead not in dead_letter_ids(client, world)
        status = client.get("/api/ingest/replica", headers=bearer(world, HQ)).json()
        assert (status["configured"], status["in_recovery"], status["streaming"]) == (True, True, True), status
        assert status["replay_lag_s"] > 0, status
        assert status["behind_bytes"] > 0, status
    caught_up(world, replica)
    assert dead in dead_letter_ids(client, world)


def test_a_staff_action_and_its_redirect_read_the_primary(client: TestClient, world: World, replica: Engine) -> None:
    """Acknowledge an alarm on the alarm list while the replica lags: the list the form redirects to shows it
    acknowledged (the POST left the primary's WAL position in a cookie the replica has not reached), while a
    browser without that cookie still reads the replica's older copy."""
    login(client, "/alarms")
    alarm = world.new_alarm()
    caught_up(world, replica)
    assert f'action="/alarms/{alarm}/acknowledge"' in alarm_card(client.get("/alarms").text, alarm)
    with replay_paused(replica):
        r = client.post(
            f"/alarms/{alarm}/acknowledge",
            data={"back": "/alarms"},
            headers={"Origin": "http://testserver"},
            follow_redirects=True,
        )
        assert r.status_code == 200
        assert r.history
        assert r.history[0].status_code == 303
        assert WRITTEN_COOKIE in r.history[0].cookies
        card = alarm_card(r.text, alarm)
        assert "state-acknowledged" in card, card
        assert HQ in card, card
        # The same browser without its last write's position: the lagging replica, alarm still active.
        client.cookies.delete(WRITTEN_COOKIE)
        stale = alarm_card(client.get("/alarms").text, alarm)
        assert "state-active" in stale
        assert f'action="/alarms/{alarm}/acknowledge"' in stale
    caught_up(world, replica)
    assert "state-acknowledged" in alarm_card(client.get("/alarms").text, alarm)


def test_the_ingest_page_shows_the_replicas_lag(client: TestClient, world: World, replica: Engine) -> None:
    login(client, "/ingest")
    caught_up(world, replica)
    with replay_paused(replica):
        new_dead_letter(world)
        client.cookies.delete(WRITTEN_COOKIE)
        client.cookies.set("lang", "en")
        page = client.get("/ingest").text
    card = re.search(r'<section class="card replica" data-replica="configured">.*?</section>', page, re.S)
    assert card, page
    lag = re.search(r'data-stat="replica-lag">([0-9.]+) s<', card.group(0))
    assert lag, card.group(0)
    assert float(lag.group(1)) > 0, card.group(0)
    assert "Streaming" in card.group(0)
    assert "steward-replica" in card.group(0)
    caught_up(world, replica)
    metrics = client.get("/metrics", headers=bearer(world, HQ)).text
    assert "steward_replica_up 1" in metrics
    assert "steward_replica_lag_seconds" in metrics


def test_live_snapshots_read_the_replica_only_once_it_holds_what_the_primary_holds(
    world: World, replica: Engine
) -> None:
    """dashboards/streaming.py re-renders on the primary's NOTIFY: its snapshot session (fresh_read_session) is
    the replica when that has replayed up to the primary's position, and the primary while replay is behind."""
    state = SimpleNamespace(read_sessionmaker=sessionmaker(replica))
    in_recovery = text("SELECT pg_is_in_recovery()")
    caught_up(world, replica)
    with Session(world.engine) as primary:
        with fresh_read_session(state, primary) as reads:
            assert reads.scalar(in_recovery) is True
        with replay_paused(replica):
            new_dead_letter(world)
            with fresh_read_session(state, primary, wait_s=0.1) as reads:
                assert reads is primary
                assert reads.scalar(in_recovery) is False
        with fresh_read_session(state, primary, wait_s=5) as reads:  # replay resumed: caught up within the wait
            assert reads.scalar(in_recovery) is True
        with fresh_read_session(SimpleNamespace(), primary) as reads:  # no replica configured
            assert reads is primary


def test_the_read_url_setting_builds_the_read_engine(world: World, replica: Engine) -> None:
    """What `steward run api` does: both engines from STEWARD_DATABASE_URL and STEWARD_DATABASE_READ_URL."""
    urls = {k: e.url.render_as_string(hide_password=False) for k, e in (("p", world.engine), ("r", replica))}
    app = create_app(Settings(database_url=urls["p"], database_read_url=urls["r"]))
    with TestClient(app, client=(client_address(), 50000)) as c:
        status = c.get("/api/ingest/replica", headers=bearer(world, HQ)).json()
        assert status["healthy"] is True, status
        assert [s["name"] for s in status["standbys"]] == ["steward-replica"]
        assert app.state.read_engine.url.port == replica.url.port


def test_a_replica_that_is_down_sends_reads_to_the_primary(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens at the read URL: pages and the API still answer (from the primary), the warning is logged,
    and the ingest page and the API say the replica is unreachable."""
    nowhere = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/steward?connect_timeout=2")
    app = create_app(Settings(), engine=world.engine, read_engine=nowhere)
    dead = new_dead_letter(world)
    with TestClient(app, client=(client_address(), 50000)) as c:
        assert dead in dead_letter_ids(c, world)
        status = c.get("/api/ingest/replica", headers=bearer(world, HQ)).json()
        assert status["configured"] is True
        assert status["reachable"] is False
        assert status["healthy"] is False
        c.cookies.set("lang", "en")
        page = login(c, "/ingest")
        assert "Unreachable: reads fall back to the primary" in page
        assert "steward_replica_up 0" in c.get("/metrics", headers=bearer(world, HQ)).text
    nowhere.dispose()
    assert "read replica unavailable, reading from the primary" in caplog.text


def test_without_a_replica_the_page_says_so(world: World) -> None:
    app = create_app(Settings(), engine=world.engine)
    with TestClient(app, client=(client_address(), 50000)) as c:
        page = login(c, "/ingest")
        assert 'data-replica="none"' in page
        assert "未配置只读副本" in page
        assert c.get("/api/ingest/replica", headers=bearer(world, HQ)).json()["configured"] is False
        assert WRITTEN_COOKIE not in c.post("/logout", follow_redirects=False).cookies


def _reader(route: tuple[str, str]) -> Role | str:
    roles = ACCESS[route]
    assert roles != PUBLIC
    role = Role.admin if Role.admin in roles else sorted(roles)[0]
    return HEAD_OFFICE[role] if route in ALL_ESTATES_ONLY else role


READS = sorted(r for r in ACCESS if r[0] == "GET" and ACCESS[r] != PUBLIC)


@pytest.fixture(scope="module")
def sweep_client(world: World, replica: Engine) -> Iterator[TestClient]:
    app = create_app(Settings(), engine=world.engine, read_engine=replica)
    with TestClient(app, client=(client_address(), 50000)) as c:
        yield c


@pytest.mark.parametrize("route", READS, ids=[r[1] for r in READS])
def test_every_api_read_works_on_the_replica(
    sweep_client: TestClient, world: World, replica: Engine, route: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A read route that wrote would fail on the replica (read-only): every GET of the access matrix succeeds,
    and none fell back to the primary for an unreachable replica."""
    path = url(world, route[1])  # may add rows on the primary (a fresh card, statement, ...)
    caught_up(world, replica)
    r = sweep_client.get(path, headers=bearer(world, _reader(route)))
    assert 200 <= r.status_code < 300, r.text
    assert "read replica unavailable" not in caplog.text


def _page_routes() -> list[str]:
    """Every page (GET) of the dashboards that reads through ReadSessionDep; not the live streams (primary)."""
    import importlib
    import inspect
    import pkgutil

    import dashboards
    from web.replica import ReadSessionDep

    paths = []
    for info in pkgutil.iter_modules(dashboards.__path__):
        router = getattr(importlib.import_module(f"dashboards.{info.name}"), "router", None)
        for route in getattr(router, "routes", []):
            if "GET" not in getattr(route, "methods", ()):
                continue
            hints = inspect.signature(route.endpoint).parameters.values()
            if any(p.annotation in (ReadSessionDep, "ReadSessionDep") for p in hints):
                paths.append(route.path)
    return sorted(paths)


PAGES = _page_routes()


@pytest.fixture(scope="module")
def page_client(world: World, replica: Engine) -> Iterator[TestClient]:
    app = create_app(Settings(), engine=world.engine, read_engine=replica)
    with TestClient(app, client=(client_address(), 50000)) as c:
        login(c, "/")
        yield c


def test_the_pages_on_the_replica_are_the_read_only_ones() -> None:
    assert len(PAGES) >= 30
    assert "/ingest" in PAGES
    assert "/tickets/{ticket_id}" not in PAGES  # reading a ticket is audited: a write, on the primary
    assert "/access/swipes" not in PAGES  # as is reading the swipe log


@pytest.mark.parametrize("path", PAGES)
def test_every_read_only_page_works_on_the_replica(
    page_client: TestClient, world: World, replica: Engine, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As head office (every estate, every page): a page that wrote would fail on the read-only replica."""
    target = url(world, path)
    if path == "/access/household":
        target += f"?estate={world.estate}&unit={unit_code_of(world.engine, card_for(world.engine, world.estate))}"
    if path == "/energy/chart.csv":
        target += f"?estate={world.estate}&chart=daily-electricity_meter"
    caught_up(world, replica)  # also past the login's write: this reads the replica, not the primary
    r = page_client.get(target, follow_redirects=False)
    if path == "/energy/chart.csv":
        # The world's estate may have no meters of that kind: no such chart is the Chinese 404 page, read-only too.
        assert r.status_code in (200, 404), r.text
    elif path.endswith(("pdf", ".pdf")):
        # Rendered by a browser where one is installed (dashboards/pdf.py); the data is the /print page's.
        assert r.status_code in (200, 503), r.text
    else:
        assert r.status_code == 200, r.text
    assert "read replica unavailable" not in caplog.text
