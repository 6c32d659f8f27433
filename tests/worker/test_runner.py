"""The worker loop: each job one transaction under an advisory lock; two workers never run one job at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from alarms.packs import ensure_default_rules
from alarms.rounds import ensure_default_schedules
from alarms.stale import ensure_default_stale_rules
from facility.importer import import_estate
from steward.cli import app
from storage.db import make_sessionmaker
from storage.models import Estate
from tests.support.world import rooms_estate
from worker.jobs import LOCK_NAMESPACE, Job, default_jobs
from worker.runner import Worker

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def db(fresh_database: str) -> Iterator[Engine]:
    eng = create_engine(fresh_database)
    yield eng
    eng.dispose()


def test_two_workers_at_once_run_each_job_once(engine: Engine) -> None:
    names = ["a", "b", "c"]
    runs: dict[str, list[str]] = {n: [] for n in names}
    skipped: dict[str, threading.Event] = {n: threading.Event() for n in names}

    def job(name: str) -> Job:
        def fn(session: Session, now: datetime) -> None:
            runs[name].append(threading.current_thread().name)
            # Hold the lock until the other worker has tried this job and been turned away.
            assert skipped[name].wait(10), f"the other worker never tried {name}"

        return Job(name, 1.0, LOCK_NAMESPACE | 0x7E57_0000 | names.index(name), fn)

    def on_result(name: str, ran: bool) -> None:
        if not ran:
            skipped[name].set()

    factory = make_sessionmaker(engine)
    workers = [Worker(factory, [job(n) for n in names], on_result=on_result) for _ in range(2)]
    results: dict[int, dict[str, bool]] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, workers[i].run_once(T0)), name=f"w{i}")
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert {n: len(r) for n, r in runs.items()} == {"a": 1, "b": 1, "c": 1}
    for n in names:
        assert sorted([results[0][n], results[1][n]]) == [False, True]


def test_a_failing_job_rolls_back_and_the_others_run(engine: Engine) -> None:
    def boom(session: Session, now: datetime) -> None:
        session.execute(text("CREATE TEMP TABLE worker_probe (x int)"))
        raise RuntimeError("boom")

    ran: list[datetime] = []
    worker = Worker(
        make_sessionmaker(engine),
        [
            Job("boom", 1.0, LOCK_NAMESPACE | 0x7E58, boom),
            Job("ok", 1.0, LOCK_NAMESPACE | 0x7E59, lambda s, n: ran.append(n)),
        ],
    )
    assert worker.run_once(T0) == {"boom": False, "ok": True}
    assert ran == [T0]
    assert worker.failures["boom"] == 1
    assert worker.runs["ok"] == 1


def test_run_once_with_the_default_jobs(db: Engine) -> None:
    with Session(db) as s, s.begin():
        import_estate(s, rooms_estate("wk1"))
        ensure_default_rules(s)
        ensure_default_stale_rules(s)
        estate_id = s.query(Estate.id).filter(Estate.code == "wk1").scalar()
        ensure_default_schedules(s, estate_id, now=T0)
    worker = Worker(make_sessionmaker(db), default_jobs())
    assert worker.run_once(T0 + timedelta(minutes=30)) == {
        "stale": True,
        "rounds": True,
        "escalation": True,
        "meters": True,
        "purge": True,
        "dunning": True,
        "notices": True,
        "billing": True,
        "access_expiry": True,
        "access_retention": True,
        "access_sync": True,
        "access_reconcile": True,
        "warranty": True,
        "daily_summary": True,
        "energy": True,
    }
    worker.run_once(T0 + timedelta(minutes=121))
    with db.connect() as conn:
        statuses: dict[str, str] = dict(
            conn.execute(
                text(
                    "SELECT s.code || '@' || rm.code, r.status FROM inspection_rounds r "
                    "JOIN round_schedules s ON s.id = r.schedule_id JOIN rooms rm ON rm.id = r.room_id "
                    "WHERE r.window_start = :t"
                ),
                {"t": T0},
            ).all()
        )
        tickets = conn.execute(text("SELECT count(*) FROM tickets WHERE source = 'inspection'")).scalar_one()
    assert statuses["lv_2h@PR1"] == "manual_due"  # no telemetry at all
    assert statuses["hv_4h@PR1"] == "open"  # its window runs to 12:00
    assert tickets == 3  # lv_2h, station_2h, plant_2h ended; the 4 h and 4-day rounds are still open


def test_run_stops_on_the_event(engine: Engine) -> None:
    ticks: list[datetime] = []
    worker = Worker(
        make_sessionmaker(engine), [Job("tick", 0.05, LOCK_NAMESPACE | 0x7E5A, lambda s, n: ticks.append(n))]
    )
    stop = threading.Event()
    t = threading.Thread(target=worker.run, args=(stop,))
    t.start()
    threading.Timer(0.3, stop.set).start()
    t.join(5)
    assert not t.is_alive()
    assert len(ticks) >= 2


def test_cli_has_run_worker() -> None:
    result = CliRunner().invoke(app, ["run", "worker", "--help"])
    assert result.exit_code == 0, result.output
    assert "inspection rounds" in result.output


def test_purge_removes_expired_sessions_and_old_login_failures(db: Engine) -> None:
    """Issue 9 #14: the purge job deletes what no check reads any more, and nothing else."""
    from accounts.const import LOGIN_FAILURE_WINDOW, Role
    from accounts.service import create_user
    from storage.models import LoginFailure, WebSession

    now = T0
    with Session(db) as s, s.begin():
        user = create_user(s, username="purged", password="a-long-password", role=Role.viewer)
        s.add_all(
            [
                WebSession(user_id=user.id, token_hash="a" * 64, expires_at=now - timedelta(seconds=1)),
                WebSession(user_id=user.id, token_hash="b" * 64, expires_at=now + timedelta(hours=1)),
                LoginFailure(username="x", client="127.0.0.1", at=now - LOGIN_FAILURE_WINDOW - timedelta(seconds=1)),
                LoginFailure(username="y", client="127.0.0.1", at=now - timedelta(minutes=1)),
            ]
        )
    worker = Worker(make_sessionmaker(db), [j for j in default_jobs() if j.name == "purge"])
    assert worker.run_once(now) == {"purge": True}
    with Session(db) as s:
        assert s.scalars(select(WebSession.token_hash)).all() == ["b" * 64]
        assert s.scalars(select(LoginFailure.username)).all() == ["y"]


def test_worker_touches_its_heartbeat_file_after_jobs(db: Engine, tmp_path: Path) -> None:
    """STEWARD_WORKER_HEARTBEAT_FILE: the container health check (docker-compose.yml) reads its age."""
    from core.settings import Settings
    from worker.runner import run_worker

    beat = tmp_path / "worker.alive"
    settings = Settings(database_url=str(db.url.render_as_string(hide_password=False)), worker_heartbeat_file=beat)
    stop = threading.Event()
    t = threading.Thread(target=run_worker, args=(settings, db, stop), kwargs={"mqtt": False})
    t.start()
    try:
        for _ in range(100):
            if beat.exists():
                break
            stop.wait(0.1)
        assert beat.exists()
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()


def test_a_poke_runs_a_job_before_its_period(db: Engine) -> None:
    """A NOTIFY-driven poke (worker/wake.py) runs the job at once instead of at its next period."""
    ran = threading.Event()
    count = {"n": 0}

    def job(session: Session, now: datetime) -> None:
        count["n"] += 1
        if count["n"] >= 2:
            ran.set()

    worker = Worker(make_sessionmaker(db), [Job("slow", 3600.0, LOCK_NAMESPACE | 0x7E, job)])
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = 50
        while count["n"] < 1 and deadline:  # the first run at start
            ran.wait(0.1)
            deadline -= 1
        worker.poke("slow")
        assert ran.wait(5), "the poked job did not run"
    finally:
        stop.set()
        worker.poke()
        thread.join(5)
    assert not thread.is_alive()


def test_the_wake_listener_pokes_the_outbox_job_on_notify(database_url: str) -> None:
    from storage.notify import OUTBOX_CHANNEL
    from worker.wake import WakeListener, conninfo

    eng = create_engine(database_url)
    poked: list[tuple[str, ...]] = []
    got = threading.Event()

    def poke(*names: str) -> None:
        poked.append(names)
        if names == ("outbox",) and len(poked) > 1:
            got.set()

    listener = WakeListener(conninfo(eng), poke).start()
    try:
        assert listener.listening.wait(10)
        with eng.begin() as conn:
            conn.execute(text("SELECT pg_notify(:c, '')"), {"c": OUTBOX_CHANNEL})
        assert got.wait(5)
    finally:
        listener.stop()
        eng.dispose()


def test_every_default_job_has_its_own_lock() -> None:
    """Two jobs sharing an advisory lock id would skip each other's runs silently."""
    jobs = default_jobs(lambda s, n: None, notifications=lambda s, n: None)
    locks = [j.lock_key for j in jobs]
    assert len(locks) == len(set(locks)), sorted((j.lock_key, j.name) for j in jobs)


def test_a_job_that_says_more_runs_again_after_the_others_not_a_period_later(db: Engine) -> None:
    """A run that leaves work (a result with ``more``, as the energy rollup's first backfill) is due again as soon
    as the other due jobs had their turn; the others keep theirs meanwhile."""
    order: list[str] = []
    done = threading.Event()

    @dataclass
    class Result:
        more: bool

    def backfill(session: Session, now: datetime) -> Result:
        order.append("backfill")
        left = 3 - order.count("backfill")
        if left == 0:
            done.set()
        return Result(more=left > 0)

    def watchdog(session: Session, now: datetime) -> None:
        order.append("watchdog")

    worker = Worker(
        make_sessionmaker(db),
        [
            Job("backfill", 3600.0, LOCK_NAMESPACE | 0x7D, backfill),
            Job("watchdog", 0.0, LOCK_NAMESPACE | 0x7C, watchdog),
        ],
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        assert done.wait(10), f"the backfill did not go on: {order}"
    finally:
        stop.set()
        worker.poke()
        thread.join(5)
    assert not thread.is_alive()
    runs = [name for name in order if name == "backfill"]
    assert runs == ["backfill"] * 3  # three runs within seconds, though its period is an hour
    first, last = order.index("backfill"), len(order) - 1 - order[::-1].index("backfill")
    assert "watchdog" in order[first:last]  # the other job ran between them
    assert worker.more == set()
