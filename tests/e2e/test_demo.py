"""The README's first command as a newcomer uses it: ``steward demo`` on embedded defaults.

Run 1 stores readings within 30 s, serves the dashboards at the URL it prints, prints the demo team's
logins, turns its faults into alarms and tickets, and — in a real browser while it runs — lets the
工程主管 dispatch the overheating transformer's ticket to 王工, who accepts it on a phone.
Run 2, after a pause, on the same data directory: the registers continue and the watchdog knows the
platform was down, so no new reset/replacement or stale alarm appears; the dashboard keeps its port.
Billing: run 1 names the household running low, drafts its renewal notice within the first minute, and
the billing clerk sees it in the notice queue, the accounts with charges, and the dunning cases; run 2
pays nothing twice and drafts that notice no second time.
Access cards: run 1 issues the sample estate's resident cards, its controllers (empty at start) converge, and a
minute in one card is reported lost and its controller goes pending → synced; run 2 issues none twice.
Run 3 with ``--fresh`` starts from nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from accounts.const import DEMO_PASSWORD
from steward.demo_billing import ARREARS_UNITS, LOW_UNIT
from steward.demo_team import DEMO_CLERK, DEMO_TEAM
from storage.embedded import start_embedded_postgres, stop_embedded_postgres
from tests.conftest import require_mosquitto
from tests.dashboards.test_browser import DESKTOP, PHONE, browser, new_page  # noqa: F401 - `browser` is a fixture

pytestmark = pytest.mark.broker

OVERHEATING = "TR1"  # transformer_overheat_fast's default device (examples/estate.yaml)
SILENT = "HS1-MU"  # the demo's stale_sensor scenario: silent in every run, by design
SUMMARY = re.compile(
    r"demo stopped: stored=(\d+) received=(\d+) first_stored_after_s=([\d.]+) alarms=(\d+) tickets=(\d+)"
)


class Demo:
    """One ``steward demo`` child process writing to a log file; killed on the way out, on failure too."""

    def __init__(self, data: Path, log: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
        env["STEWARD_DATA_DIR"] = str(data)  # no database or broker URL: everything embedded
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "steward", "demo", "--lang", "en", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if m := re.search(pattern, self.text()):
                return m
            time.sleep(0.2)
        m = re.search(pattern, self.text())
        assert m, f"{pattern!r} not printed:\n{self.text()[-3000:]}"
        return m

    def finish(self, timeout: float) -> tuple[int, int, float, int, int]:
        assert self.proc.wait(timeout) == 0, self.text()[-3000:]
        summary = SUMMARY.search(self.text())
        assert summary, self.text()[-3000:]
        return int(summary[1]), int(summary[2]), float(summary[3]), int(summary[4]), int(summary[5])

    def kill(self) -> None:
        """Ctrl-C first, so the demo stops its broker and database as a user's would; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@contextmanager
def demo(data: Path, log: Path, *args: str) -> Iterator[Demo]:
    d = Demo(data, log, *args)
    try:
        yield d
    finally:
        d.kill()


@contextmanager
def database(data: Path, *, stop: bool = True) -> Iterator[Any]:
    """The demo's embedded database (started if the demo has stopped it; stopped again unless it runs)."""
    engine = create_engine(start_embedded_postgres(data))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
        if stop:
            stop_embedded_postgres(data)


def reset_and_stale_alarms(conn: Any) -> set[tuple[str, str]]:
    rows = conn.execute(
        text(
            "SELECT r.code, a.subject FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
            "WHERE r.kind = 'stale' OR r.code LIKE '%reset_or_replacement'"
        )
    ).all()
    return {(code, subject) for code, subject in rows}


def overheat_ticket(data: Path, timeout: float) -> int:
    """Wait for the live overheat to open its ticket (in the demo's own database, while it runs)."""
    deadline = time.monotonic() + timeout
    with database(data, stop=False) as conn:
        while time.monotonic() < deadline:
            ticket = conn.execute(
                text(
                    "SELECT a.ticket_id FROM alarms a JOIN devices d ON d.id = a.device_id "
                    "WHERE d.code = :device AND a.ticket_id IS NOT NULL ORDER BY a.id LIMIT 1"
                ),
                {"device": OVERHEATING},
            ).scalar()
            conn.commit()
            if ticket is not None:
                return int(ticket)
            time.sleep(2)
    raise AssertionError(f"no ticket for {OVERHEATING}'s overheat within {timeout} s")


def log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{username} could not sign in"


def dispatch_and_accept(browser: Any, base: str, ticket: int) -> None:  # noqa: F811
    """赵主管 dispatches the ticket to 王工 (picked by name from the list); 王工 accepts it on a phone."""
    from playwright.sync_api import expect

    ctx, desk, errors = new_page(browser, DESKTOP)
    try:
        log_in(desk, base, "zhao")
        desk.goto(f"{base}tickets/{ticket}")
        options = desk.locator('#form-dispatch select[name="assignee_id"] option').all_inner_texts()
        assert {"王工 (工程人员)", "张工 (工程人员)"} <= set(options), options
        desk.select_option('#form-dispatch select[name="assignee_id"]', label="王工 (工程人员)")
        desk.click("#form-dispatch button[type=submit]")
        expect(desk.locator("#ticket-status")).to_have_text("已派单")
        expect(desk.locator("#assignee")).to_contain_text("王工")
    finally:
        ctx.close()
    ctx, phone, more = new_page(browser, PHONE)
    try:
        log_in(phone, base, "wang")
        phone.goto(f"{base}tickets/{ticket}")
        phone.click("#form-accept button")
        expect(phone.locator("#ticket-status")).to_have_text("已接单")
    finally:
        ctx.close()
    assert not errors + more, errors + more


def clerk_sees_billing(browser: Any, base: str, notice: str, account_url: str) -> None:  # noqa: F811
    """周丽 (billing clerk) finds the low household's notice in the queue, its charges, and the dunning cases."""
    from playwright.sync_api import expect

    ctx, page, errors = new_page(browser, PHONE)
    try:
        log_in(page, base, DEMO_CLERK)
        page.goto(f"{base}billing/notices")
        expect(page.locator("body")).to_contain_text(notice)
        expect(page.locator("body")).to_contain_text(LOW_UNIT)
        page.goto(account_url)
        expect(page.locator("body")).to_contain_text(LOW_UNIT)
        page.goto(f"{base}billing")
        expect(page.locator("body")).to_contain_text(LOW_UNIT)
        page.goto(f"{base}dunning/lvyuan")
        for unit, _ in ARREARS_UNITS:
            expect(page.locator("body")).to_contain_text(unit)
    finally:
        ctx.close()
    assert not errors, errors


def billing_counts(conn: Any) -> tuple[int, int, int]:
    """(opening top-ups, accounts they went to, renewal notices of the low household)."""
    paid, accounts = conn.execute(
        text("SELECT count(*), count(DISTINCT account_id) FROM payments WHERE idempotency_key LIKE 'demo-opening:%'")
    ).one()
    notices = conn.execute(
        text(
            "SELECT count(*) FROM billing_notices n JOIN billing_accounts a ON a.id = n.account_id "
            "JOIN units u ON u.id = a.unit_id WHERE u.code = :unit AND n.kind = 'renewal'"
        ),
        {"unit": LOW_UNIT},
    ).scalar_one()
    return int(paid), int(accounts), int(notices)


@pytest.fixture
def data() -> Iterator[Path]:
    """The demo's data dir, outside pytest's tmp tree: the embedded server runs initdb as its own user, which
    must traverse the parents, and every pytest session resets /tmp/pytest-of-<user> to mode 0700."""
    path = Path(tempfile.mkdtemp(prefix="steward-demo-test-"))
    try:
        yield path / "data"
    finally:
        stop_embedded_postgres(path / "data")
        shutil.rmtree(path, ignore_errors=True)


def test_demo_runs_restarts_on_its_own_data_and_starts_fresh(tmp_path: Path, data: Path, browser: Any) -> None:  # noqa: F811
    require_mosquitto()

    # --- run 1: the whole chain, and a dispatcher at work in the browser while it runs -------------------
    with demo(data, tmp_path / "run1.out", "--duration", "150", "--backfill-hours", "0.5") as run1:
        url = run1.wait_for(r"Dashboards: (http://127\.0\.0\.1:(\d+)/)")
        base, port = url[1], url[2]
        # The demo is busy starting (backfill, cards, simulators): a first page within 30 s, not 5.
        with urllib.request.urlopen(base + "login", timeout=30) as resp:
            assert resp.status == 200
            assert "password" in resp.read().decode()
        low = run1.wait_for(r"Low balance: household (\S+) .*→ (http://\S+)")
        assert low[1] == LOW_UNIT
        # The replay's charges take it below ¥50: its notice is drafted as soon as they are charged.
        notice = run1.wait_for(rf"Renewal notice (RS-\d{{4}}-\d+) drafted: {LOW_UNIT} balance ¥(\d+\.\d\d)", 90)
        assert Decimal(notice[2]) < 50
        clerk_sees_billing(browser, base, notice[1], low[2])
        ticket = overheat_ticket(data, timeout=130)
        dispatch_and_accept(browser, base, ticket)
        lost = run1.wait_for(r"Card ([0-9A-F]{8}) \((\S+)\) reported lost: controller (\S+) pending sync", 90)
        run1.wait_for(rf"Controller {re.escape(lost[3])} synced in [\d.]+ s: card {lost[1]} is off its whitelist", 30)
        stored, received, first, alarms, tickets = run1.finish(120)
    out = run1.text()
    issued = re.search(r"Access cards: (\d+) resident cards issued now \((\d+) live\)", out)
    assert issued, out[-3000:]
    assert int(issued[1]) == int(issued[2]) > 0
    assert out.index("门禁卡") < out.index("Access cards")
    assert "demo / steward-demo" in out
    assert out.index("热水计费") < out.index("Hot-water billing")  # Chinese first, English too
    for member in DEMO_TEAM:  # the banner lists the team's logins
        assert re.search(rf"│ [^│]*│ {member.name}\s*│ {member.username}\s*│", out), member
    assert stored > 0
    assert received > 0
    assert first <= 30
    # Vacant-flat water, the silent sensor and the overheat at least.
    assert alarms >= 3, out[-3000:]
    assert tickets >= 3, out[-3000:]
    assert "First run" in out
    # The end (or Ctrl-C) stops everything: the embedded PostgreSQL is shut down again.
    assert not (data / "pgdata" / "postmaster.pid").exists()
    with database(data) as conn:
        after_run1 = reset_and_stale_alarms(conn)
        assert billing_counts(conn) == (300, 300, 1)
        # The live fleet continues the replay's registers: nothing reads as a reset or replacement.
        assert not {a for a in after_run1 if a[0].endswith("reset_or_replacement")}, after_run1

    # --- run 2: the same data directory after a pause longer than a 15-s sensor's stale limit ------------
    time.sleep(25)
    with demo(data, tmp_path / "run2.out", "--duration", "45", "--backfill-hours", "0.5") as run2:
        again = run2.wait_for(r"Dashboards: (http://127\.0\.0\.1:(\d+)/)")
        assert again[2] == port, "the dashboard moved to another port"
        stored2, *_ = run2.finish(120)
    assert stored2 > 0
    assert "Continuing from the stored data" in run2.text()
    # No card issued twice; the one reported lost in run 1 stays lost.
    assert f"Access cards: 0 resident cards issued now ({int(issued[2]) - 1} live)" in run2.text()
    with database(data) as conn:
        new = reset_and_stale_alarms(conn) - after_run1
        assert not {a for a in new if not a[1].startswith(SILENT)}, new
        dispatched = conn.execute(text("SELECT count(*) FROM ticket_events WHERE actor = 'zhao'")).scalar_one()
        assert dispatched == 1  # run 1's work is still there
        assert billing_counts(conn) == (300, 300, 1)  # no top-up paid twice, the notice not drafted again

    # --- run 3: --fresh starts from nothing -------------------------------------------------------------
    with database(data) as conn:
        newest_before = conn.execute(text("SELECT max(ts) FROM samples")).scalar_one()
    with demo(data, tmp_path / "run3.out", "--fresh", "--duration", "20", "--backfill-hours", "0.1") as run3:
        run3.finish(120)
    assert "First run" in run3.text()
    with database(data) as conn:
        assert conn.execute(text("SELECT count(*) FROM ticket_events WHERE actor = 'zhao'")).scalar_one() == 0
        # Runs 1 and 2 replayed half an hour; run 3 replays 6 minutes of a new history and nothing older.
        oldest = conn.execute(text("SELECT min(ts) FROM samples")).scalar_one()
        assert oldest is not None
        assert oldest >= newest_before - timedelta(minutes=7), (oldest, newest_before)
