"""The demo's parts that decide things: where the replay begins, which port, which staff."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import Role
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from steward.demo import PREFERRED_PORT, dashboard_port, replay_start
from steward.demo_team import DEMO_TEAM, ensure_demo_team
from storage.models import Estate, StaffEstate, StaffUser

LIVE = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai on the last day of a quarter
TWO_HOURS = timedelta(hours=2)
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"


def test_replay_fills_only_the_gap_and_at_most_the_backfill() -> None:
    assert replay_start(None, LIVE, TWO_HOURS) == LIVE - TWO_HOURS  # first run: the recent past
    assert replay_start(LIVE - timedelta(minutes=3), LIVE, TWO_HOURS) == LIVE - timedelta(minutes=3)
    assert replay_start(LIVE - timedelta(days=2), LIVE, TWO_HOURS) == LIVE - TWO_HOURS  # older part stays a gap
    assert replay_start(LIVE, LIVE, TWO_HOURS) is None  # nothing missing
    assert replay_start(LIVE + timedelta(seconds=1), LIVE, TWO_HOURS) is None
    assert replay_start(None, LIVE, timedelta(0)) is None  # --backfill-hours 0


def test_dashboard_port_is_kept_between_runs_unless_taken(tmp_path: Path) -> None:
    first = dashboard_port(tmp_path)
    assert (tmp_path / "demo-port").read_text().strip() == str(first)
    assert dashboard_port(tmp_path) == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        moved = dashboard_port(tmp_path)
    assert moved != first
    assert dashboard_port(tmp_path) == moved  # the new port is remembered


def test_a_new_data_dir_prefers_the_documented_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", PREFERRED_PORT))
        except OSError:
            free = False
        else:
            free = True
    port = dashboard_port(tmp_path)
    assert (port == PREFERRED_PORT) is free


def test_the_demo_team_covers_every_desk_and_is_created_once(session: Session) -> None:
    summary = import_estate(session, load_estate_file(SAMPLE))
    created = ensure_demo_team(session, summary.estate)
    assert [m.username for m in created] == [m.username for m in DEMO_TEAM]
    assert ensure_demo_team(session, summary.estate) == []  # a rerun keeps the accounts as they are
    roles = [m.role for m in DEMO_TEAM]
    for role in (Role.supervisor, Role.steward, Role.manager, Role.card_admin, Role.billing_clerk):
        assert role in roles
    assert roles.count(Role.engineer) == 2
    estate_id = session.scalar(select(Estate.id).where(Estate.code == summary.estate))
    for m in DEMO_TEAM:
        user = session.scalars(select(StaffUser).where(StaffUser.username == m.username)).one()
        assert (user.role, user.display_name, user.all_estates) == (m.role.value, m.name, m.all_estates)
        scoped = session.scalars(select(StaffEstate.estate_id).where(StaffEstate.user_id == user.id)).all()
        assert scoped == ([] if m.all_estates else [estate_id])


def test_user_add_help_lists_every_role() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "steward", "user", "add", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "STEWARD_ENV": "testing"},
    ).stdout
    for role in Role:
        assert role.value in out, role
