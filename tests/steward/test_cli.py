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
