"""The steward CLI: estate import, staff accounts and tokens, and clean one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from accounts.service import user_for_token
from storage.models import StaffUser

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"


def steward(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEWARD_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "steward", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_import_user_and_token(fresh_database: str) -> None:
    out = steward(fresh_database, "estate", "import", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    assert "300 units" in out.stdout
    out = steward(
        fresh_database,
        "user",
        "add",
        "wanggong",
        "--role",
        "engineer",
        "--estate",
        "lvyuan",
        "--password",
        "a-long-password",
    )
    assert out.returncode == 0, out.stderr
    out = steward(fresh_database, "token", "create", "wanggong", "--name", "grafana", "--days", "30")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("stw_")
    engine = create_engine(fresh_database)
    with Session(engine) as s:
        user = user_for_token(s, token)
        assert user is not None
        assert user.username == "wanggong"
        assert s.scalar(select(StaffUser.role).where(StaffUser.username == "wanggong")) == "engineer"
    engine.dispose()


def test_errors_are_one_line_messages(fresh_database: str) -> None:
    out = steward(
        fresh_database,
        "user",
        "add",
        "li",
        "--role",
        "engineer",
        "--estate",
        "nowhere",
        "--password",
        "a-long-password",
    )
    assert out.returncode == 2
    assert "unknown estates: nowhere" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_rules_show_and_set_with_overrides(fresh_database: str) -> None:
    from sqlalchemy import text

    assert steward(fresh_database, "db", "upgrade").returncode == 0  # installs the default rule packs
    assert steward(fresh_database, "estate", "import", str(SAMPLE)).returncode == 0
    code = "dry_transformer.winding_temp_a.high"
    out = steward(fresh_database, "rules", "set", code, "warning=125", "--estate", "lvyuan", "--device", "TR1")
    assert out.returncode == 0, out.stdout + out.stderr
    out = steward(fresh_database, "rules", "set", "power_room.humidity.high", "--disable")
    assert out.returncode == 0, out.stdout + out.stderr
    out = steward(fresh_database, "rules", "show", code)
    assert out.returncode == 0
    assert "device:" in out.stdout
    assert "125" in out.stdout
    # A level that breaks the rule's own ordering is refused with a one-line message, and nothing changes.
    out = steward(fresh_database, "rules", "set", code, "alarm=100")
    assert out.returncode == 2
    assert "invalid parameters" in out.stdout
    engine = create_engine(fresh_database)
    with engine.connect() as conn:
        assert not conn.execute(
            text("SELECT enabled FROM alarm_rules WHERE code = 'power_room.humidity.high'")
        ).scalar()
        assert (
            conn.execute(text("SELECT params->>'alarm' FROM alarm_rules WHERE code = :c"), {"c": code}).scalar()
            == "155.0"
        )
        [(scope, params)] = conn.execute(text("SELECT scope, params FROM alarm_rule_overrides")).all()
        assert (scope, params) == ("device", {"warning": 125.0})
    engine.dispose()


def test_tokens_expire_by_default_and_can_be_revoked_and_users_deactivated(fresh_database: str) -> None:
    """Issue 9 #7: a token without --days still expires (90 days); `token revoke` and `user deactivate` end it."""
    from datetime import timedelta

    from accounts.const import TOKEN_DEFAULT_TTL
    from storage.models import ApiToken

    name = "tokenuser"
    assert (
        steward(fresh_database, "user", "add", name, "--role", "engineer", "--password", "a-long-password").returncode
        == 0
    )
    first = steward(fresh_database, "token", "create", name, "--name", "no-days").stdout.strip()
    second = steward(fresh_database, "token", "create", name, "--name", "other").stdout.strip()
    engine = create_engine(fresh_database)
    try:
        with Session(engine) as s:
            row = s.scalars(select(ApiToken).where(ApiToken.name == "no-days")).one()
            assert row.expires_at is not None
            assert abs(row.expires_at - row.created_at - TOKEN_DEFAULT_TTL) < timedelta(minutes=1)
        out = steward(fresh_database, "token", "list", name)
        assert out.returncode == 0, out.stderr
        assert "no-days" in out.stdout
        assert first not in out.stdout  # never the secret
        assert steward(fresh_database, "token", "revoke", str(row.id)).returncode == 0
        with Session(engine) as s:
            assert user_for_token(s, first) is None
            assert user_for_token(s, second) is not None
        out = steward(fresh_database, "token", "revoke", "999999")
        assert out.returncode != 0
        assert "no token" in out.stderr
        assert steward(fresh_database, "user", "deactivate", name).returncode == 0
        with Session(engine) as s:
            assert user_for_token(s, second) is None
            assert s.scalars(select(ApiToken.revoked_at).where(ApiToken.name == "other")).one() is not None
    finally:
        engine.dispose()


def test_production_refuses_the_demo(fresh_database: str) -> None:
    """Issue 9 #10: `steward demo` with STEWARD_ENV=production stops before touching the database."""
    env_vars = {
        "STEWARD_ENV": "production",
        "STEWARD_MQTT_URL": "mqtt://127.0.0.1:1",
        "STEWARD_MQTT_PASSWORD": "a-real-secret",
        "STEWARD_SECRET_KEY": "another-real-secret",
    }
    env = {**os.environ, **env_vars, "STEWARD_DATABASE_URL": fresh_database}
    out = subprocess.run(
        [sys.executable, "-m", "steward", "demo", "--duration", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode != 0
    assert "production" in out.stderr + out.stdout
    engine = create_engine(fresh_database)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE tablename = 'staff_users'").scalar()
            users = conn.exec_driver_sql("SELECT count(*) FROM staff_users").scalar() if tables else 0
        assert users == 0
    finally:
        engine.dispose()


def test_broker_acl_is_generated_from_the_estate_model(fresh_database: str, tmp_path: Path) -> None:
    """Issue 9 #13: `steward broker acl` writes one block per device of the imported estate."""
    assert steward(fresh_database, "estate", "import", str(SAMPLE)).returncode == 0
    out = steward(fresh_database, "broker", "acl", "--gateway", "lvyuan-sim=lvyuan", "--output", str(tmp_path / "acl"))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "acl").read_text()
    assert "pattern" not in text
    assert text.count("\nuser ") == 933 + 1  # every device of the sample estate, and the gateway
    assert "user lvyuan-sim\ntopic write steward/lvyuan/up/#" in text
    bad = steward(fresh_database, "broker", "acl", "--gateway", "no-equals-sign")
    assert bad.returncode != 0
