"""Issue 9 #9 and #12: the Origin check on every state-changing cookie request, and security headers on every
response (JSON, redirects, errors), not only on the pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from accounts.const import Role
from core import clock
from storage.models import StaffUser
from tests.support.world import PASSWORD, World, bearer, client_address

EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def browser(app: FastAPI, api_world: World) -> Iterator[TestClient]:
    """A client logged in with the session cookie, as a browser is."""
    with TestClient(app, client=(client_address(), 1), follow_redirects=False) as c:
        assert c.post("/api/auth/login", json={"username": "admin-user", "password": PASSWORD}).status_code == 200
        yield c


def test_a_cross_site_cookie_post_to_a_json_route_is_refused(browser: TestClient, api_world: World) -> None:
    """The issue's probe: acknowledge an alarm with the cookie, Origin: evil, cross-site, a form body."""
    path = f"/api/alarms/{api_world.alarm_id}/acknowledge"
    r = browser.post(path, headers={**EVIL, **FORM}, content=b"x=1")
    assert r.status_code == 403, r.text
    assert browser.post(path, headers={"Origin": "https://evil.example"}).status_code == 403
    assert browser.post(path, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert browser.post(path, headers={"Origin": "null"}).status_code == 403
    # From our own origin it works; so does a client that sends no Origin (not a browser).
    assert (
        browser.post(path, headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}).status_code == 200
    )
    assert browser.post(path).status_code == 200


def test_bearer_requests_are_not_subject_to_the_origin_check(client: TestClient, api_world: World) -> None:
    r = client.post(f"/api/alarms/{api_world.alarm_id}/acknowledge", headers={**EVIL, **bearer(api_world, Role.admin)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/api/auth/login", "/login"])
def test_login_csrf_is_refused(app: FastAPI, api_world: World, path: str) -> None:
    """A foreign page must not log the browser in to an account of the attacker's choosing."""
    with TestClient(app, client=(client_address(), 1), follow_redirects=False) as c:
        if path == "/login":
            r = c.post(path, headers=EVIL, data={"username": "admin-user", "password": PASSWORD})
        else:
            r = c.post(path, headers=EVIL, json={"username": "admin-user", "password": PASSWORD})
        assert r.status_code == 403, r.text
        assert "steward_session" not in r.cookies


@pytest.mark.parametrize("path", ["/api/auth/logout", "/logout"])
def test_cross_site_logout_is_refused(browser: TestClient, path: str) -> None:
    assert browser.post(path, headers=EVIL).status_code == 403
    assert browser.get("/api/auth/me").status_code == 200


def _assert_security_headers(r: object) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


def test_json_redirects_and_errors_carry_security_headers(browser: TestClient, api_world: World) -> None:
    _assert_security_headers(browser.get(f"/api/estates/{api_world.estate}/residents"))  # personal data
    _assert_security_headers(browser.get("/api/estates/nowhere"))  # an error
    _assert_security_headers(browser.get("/lang/en?next=/"))  # a redirect
    _assert_security_headers(browser.post("/api/alarms/1/acknowledge", headers=EVIL))  # the refusal itself
    static = browser.get("/static/" + "app.css")
    if static.status_code == 200:
        assert static.headers.get("cache-control") != "no-store"  # assets may be cached
        assert static.headers["x-content-type-options"] == "nosniff"


def test_hsts_only_in_production(api_world: World) -> None:
    from core.settings import Settings
    from steward.app import create_app

    plain = create_app(Settings(), engine=api_world.engine)
    with TestClient(plain) as c:
        assert "strict-transport-security" not in c.get("/health").headers
    prod = create_app(
        Settings(env="production", database_url="postgresql://x@h/db", mqtt_url="mqtt://h:1884",
                 mqtt_password="a-real-secret", secret_key="another-real-secret"),
        engine=api_world.engine,
    )  # fmt: skip
    with TestClient(prod) as c:
        assert c.get("/health").headers["strict-transport-security"].startswith("max-age=")


def _production_settings() -> object:
    from core.settings import Settings

    return Settings(
        env="production",
        database_url="postgresql://x@h/db",
        mqtt_url="mqtt://h:1884",
        mqtt_password="a-real-secret",
        secret_key="another-real-secret",
    )


def test_production_refuses_the_demo_account(api_world: World) -> None:
    """Issue 9 #10: whoever created it, the demo account (demo / steward-demo) never logs in in production."""
    from sqlalchemy.orm import Session

    from accounts.const import DEMO_PASSWORD, DEMO_USERNAME
    from accounts.service import create_user
    from core.settings import Settings
    from steward.app import create_app

    with Session(api_world.engine) as s, s.begin():
        if s.query(StaffUser).filter(StaffUser.username == DEMO_USERNAME).first() is None:
            create_user(s, username=DEMO_USERNAME, password=DEMO_PASSWORD, role=Role.viewer, estates=["apia"])
        create_user(s, username="copied-demo-pw", password=DEMO_PASSWORD, role=Role.viewer, estates=["apia"])
    demo = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD}
    with TestClient(create_app(Settings(), engine=api_world.engine), client=(client_address(), 1)) as dev:
        assert dev.post("/api/auth/login", json=demo).status_code == 200  # the demo itself works
    prod = create_app(_production_settings(), engine=api_world.engine)  # type: ignore[arg-type]
    with TestClient(prod, client=(client_address(), 1), follow_redirects=False) as c:
        assert c.post("/api/auth/login", json=demo).status_code == 401
        assert c.post("/api/auth/login", json={**demo, "username": "copied-demo-pw"}).status_code == 401
        r = c.post("/login", data=demo)
        assert r.status_code == 401
        assert "steward_session" not in r.cookies
        assert c.post("/api/auth/login", json={"username": "viewer-user", "password": PASSWORD}).status_code == 200


def test_health_is_a_status_only(client: TestClient, api_world: World) -> None:
    """Issue 9 #11: the public /health says ok or degraded, nothing about ingest's instances or counters."""

    from sqlalchemy.orm import Session

    from storage.models import IngestStatus

    with Session(api_world.engine) as s, s.begin():
        s.merge(IngestStatus(instance="host-a:123", updated_at=clock.now(), status="ok", counters={"stored": 42}))
    try:
        r = client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
    finally:
        with Session(api_world.engine) as s, s.begin():
            s.query(IngestStatus).filter(IngestStatus.instance == "host-a:123").delete()
    assert client.get("/health").json() == {"status": "degraded"}  # no ingest process reporting


def test_production_serves_no_docs(api_world: World) -> None:
    """Issue 9 #11: Swagger UI (scripts from a CDN) and the schema are off in production."""
    from steward.app import create_app

    prod = create_app(_production_settings(), engine=api_world.engine)  # type: ignore[arg-type]
    with TestClient(prod) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path


# --- issue 9 #8: Secure cookies in production, forwarded headers only from configured proxies -------------------


def test_production_session_cookies_are_secure(api_world: World) -> None:
    from steward.app import create_app

    prod = create_app(_production_settings(), engine=api_world.engine)  # type: ignore[arg-type]
    with TestClient(prod, client=(client_address(), 1), follow_redirects=False) as c:  # plain http to uvicorn
        r = c.post("/api/auth/login", json={"username": "viewer-user", "password": PASSWORD})
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower()
        r = c.post("/login", data={"username": "viewer-user", "password": PASSWORD})
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()


def _last_failure_client(api_world: World, username: str) -> str:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from storage.models import LoginFailure

    with Session(api_world.engine) as s:
        return (
            s.scalars(
                select(LoginFailure.client).where(LoginFailure.username == username).order_by(LoginFailure.id.desc())
            ).first()
            or ""
        )


def test_forwarded_headers_count_only_from_configured_proxies(api_world: World) -> None:
    """The client address (login limits, audit) and https (Secure cookie) come from X-Forwarded-* only when the
    connection is from a proxy in STEWARD_TRUSTED_PROXIES; anyone else's headers are ignored."""
    import uuid

    from core.settings import Settings
    from steward.app import create_app

    proxy, stranger, browser = client_address(), client_address(), client_address()
    app = create_app(Settings(trusted_proxies=f"{proxy},127.255.255.254"), engine=api_world.engine)
    forwarded = {"X-Forwarded-For": browser, "X-Forwarded-Proto": "https"}
    for via, seen_as, secure in ((proxy, browser, True), (stranger, stranger, False)):
        name = f"fwd-{uuid.uuid4().hex[:8]}"
        with TestClient(app, client=(via, 1)) as c:
            assert (
                c.post("/api/auth/login", headers=forwarded, json={"username": name, "password": "x"}).status_code
                == 401
            )
            assert _last_failure_client(api_world, name) == seen_as
            r = c.post("/api/auth/login", headers=forwarded, json={"username": "viewer-user", "password": PASSWORD})
            assert r.status_code == 200
            assert ("secure" in r.headers["set-cookie"].lower()) is secure
    # Without configured proxies nobody's forwarded headers count (uvicorn's default would trust 127.0.0.1).
    with TestClient(create_app(Settings(), engine=api_world.engine), client=("127.0.0.1", 1)) as c:
        name = f"fwd-{uuid.uuid4().hex[:8]}"
        c.post("/api/auth/login", headers=forwarded, json={"username": name, "password": "x"})
        assert _last_failure_client(api_world, name) == "127.0.0.1"
