"""Prepaid hot water end to end (issue 11's acceptance): a household uses hot water through Mosquitto, runs its
balance down, is sent the renewal notice (recorded by a real SMTP server and a stand-in WeCom robot), is restricted
after the notice period with the simulated valve's ack recorded, pays and is restored; Chromium shows it on the
account page, with screenshots.

The parts are the real ones: a throwaway Mosquitto, ``steward run ingest`` in a child process, the simulator
(`simulators.run_simulation`, whose `ValveController` obeys valve commands and publishes the device's ack), the
billing run, `billing.notices` (evaluate / approve / send), the notification queue with `SmtpChannel` →
aiosmtpd and `WeComRobotChannel` → a local HTTP server, the outbox dispatcher of worker/outbox.py publishing
through Mosquitto, and the pages under uvicorn.

Time. `core.clock` is pinned (tests/support/clock.py) and moved by the test; this process — billing, the
notification dispatcher, the outbox dispatcher (given the pinned ``now``) and the simulator thread (its pacer
and the valve's expiry check read `core.clock`) — sees one controlled time. The only real clock is ingest's
(a child process): it accepts a device time within 30 days before and 5 minutes after a message's arrival, and
acks carry no device time (ingest stamps ``outbox.acked_at`` with its own arrival time, so the pages show an
ack time of the real clock, later than the pinned one). So every simulated reading is dated in the real past,
and the timeline is laid out backwards from T2, the restriction instant: the latest weekday 10:00 Beijing
time at least 6 hours before the test runs (a daytime working day, so the night/weekend guards allow it
whatever hour the test runs; the calendar has no holidays in the window: the test database's is emptied),
and 25 days of history ending ≥ 6 h ago fit ingest's 30-day window::

    S = T2 − 25 d    the household's day of use (phase A) …
    TA = S + 1 d     … renewal notice (balance below ¥50) — approved, sent, delivered
    T1 = S + 4 d     three more days of use (phase B): balance ≤ 0 → second renewal + restriction notices,
                     the restriction notice stating a working day 09:00 ≥ 17 days ahead
    T2 = T1 + 21 d   restriction: a valve 'close' command → Mosquitto → simulated meter → ack → ingest
    T2 + 50 min      payment → restoration at once: valve 'open' → ack

The account page stays open in Chromium from the restriction on: the payment, the restoration and the
meter's ack reach it over its live stream (the billing change mark now moves with notices, supply changes
and valve commands too).

The close command expires at T2 + 1 h (billing/supply.py CLOSE_TTL): the outbox dispatcher is called with the
pinned ``now`` and the simulated valve judges expiry on the same pinned clock, so both see it unexpired. The
simulator's live run starts at T2 and runs at 60× behind the pinned clock (its pacer never emits a reading
dated after `core.clock.now()`), so its readings stay in the real past too.

The simulator is deterministic (same seed and start → same frames): the test generates the same frames
offline to know every reading ingest must store, and prices hot water so that phase A costs about ¥40 of the
household's ¥60 (a realistic ¥/m³ would need weeks of simulated use to spend ¥60).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from accounts.service import create_user
from billing import notices, service, supply
from billing.const import NoticeKind, SupplyState
from billing.pricing import Tier
from billing.tasks import billing_run
from core import clock
from core.roles import Role
from facility.importer import import_estate
from notifications.channels import EMAIL, LOG, WECOM_ROBOT, Channel, LogChannel, SmtpChannel, WeComRobotChannel
from notifications.service import dispatch_due
from protocol.estate_file import load_estate_file
from simulators import Fleet, run_simulation
from simulators.meters import RegisterStart
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from storage.models import BillingAccount, Device, Estate, Outbox
from tests.dashboards.support import AppServer
from tests.dashboards.test_browser import (  # noqa: F401 - `browser` is a fixture
    LIVE_TIMEOUT_MS,
    PHONE,
    browser,
    log_in,
    new_page,
    output_dir,
)
from tests.support.clock import FrozenClock, pinned
from tests.support.ingest_process import IngestProcess
from tests.support.notify_servers import RobotServer, SmtpServer
from tests.support.world import PASSWORD
from worker.outbox import MqttPublisher, OutboxDispatcher

pytestmark = pytest.mark.broker

SH = ZoneInfo("Asia/Shanghai")
ESTATE = "bill-e2e"
UNIT = "1-1-101"
METER = f"HW-{UNIT}"
SEED = 11
INTERVAL_S = 300  # a reading every 5 simulated minutes
ESTATE_DOC = {
    "estate": {"code": ESTATE, "name": "热水计费测试小区", "timezone": "Asia/Shanghai"},
    "buildings": [{"code": "1", "name": "1幢", "floors": 1, "entrances": 1, "units_per_floor": 1}],
    "unit_meters": [
        {
            "kind": "hot_water_meter",
            "code": "HW-{unit}",
            "register_max": "99999.999",
            "resolution": "0.001",
            "has_valve": True,
            "expected_interval_s": INTERVAL_S,
        }
    ],
}
STEWARD_EMAIL = "guanjia@bill-e2e.example"
CLERK = "clerk-bill-e2e"
OPENING_FEN = 6000  # ¥60 prepaid before the first day of use
PHASE_A_TARGET_FEN = 4000  # what phase A should cost (the price is set from the simulated volume)
WAIT_S = 20.0
STEP = timedelta(seconds=60)  # run_simulation's tick at speed 0; the offline fleets use the same

T = TypeVar("T")


# --- helpers -----------------------------------------------------------------------------------------


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    """Poll `probe` until it returns something (not None); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _restriction_instant(real_now: datetime) -> datetime:
    """T2: the latest Monday–Friday 10:00 Beijing time at least 6 h before `real_now` (placement only: whatever
    the hour or weekday the test runs, T2 is a weekday morning, and the history behind it fits ingest's window)."""
    latest = (real_now - timedelta(hours=6)).astimezone(SH)
    day = latest.date() if latest.hour >= 10 else latest.date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=SH)


def _readings(
    estate_file: Path, start: datetime, duration: timedelta, registers: dict[str, RegisterStart] | None
) -> list[tuple[datetime, Decimal, str]]:
    """The meter readings run_simulation publishes for this window: (device time, register, valve)."""
    fleet = Fleet.from_file(estate_file, seed=SEED, start=start, registers=registers)
    out = []
    for f in fleet.frames(duration, STEP):
        if f.device == METER and f.channel == "meter":
            p = json.loads(f.payload)
            out.append((datetime.fromisoformat(p["ts"]), Decimal(p["register"]), p["valve"]))
    return out


@dataclass
class Stack:
    url: str
    engine: Engine
    factory: sessionmaker[Session]
    broker: MosquittoProcess
    ingest: IngestProcess
    smtp: SmtpServer
    robot: RobotServer
    app: AppServer
    estate_file: Path
    estate_id: int
    account_id: int
    meter_id: int

    def one(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).one()

    def stored(self, expected: list[tuple[datetime, Decimal, str]]) -> bool | None:
        """True once every expected reading is in meter_readings with its register."""
        ts = [r[0] for r in expected]
        regs = [str(r[1]) for r in expected]
        (n,) = self.one(
            "SELECT count(*) FROM meter_readings m JOIN unnest(CAST(:t AS timestamptz[]), CAST(:r AS numeric[])) "
            "AS k(t, r) ON m.ts = k.t AND m.register = k.r WHERE m.device_id = :d",
            t=ts,
            r=regs,
            d=self.meter_id,
        )
        return True if n == len(set(ts)) else None


@pytest.fixture
def stack(
    fresh_database: str,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    stop_at_end: Callable[..., Any],
    browser: Any,  # noqa: F811 - launched before the app, so a missing chromium skips (or fails) early
) -> Stack:
    estate_file = tmp_path / "estate.yaml"
    estate_file.write_text(yaml.safe_dump(ESTATE_DOC, allow_unicode=True), encoding="utf-8")
    engine = create_engine(fresh_database)
    stop_at_end(engine, stop=engine.dispose)
    with Session(engine) as s, s.begin():
        import_estate(s, load_estate_file(estate_file))
        estate_id = s.scalars(select(Estate.id).where(Estate.code == ESTATE)).one()
        meter = s.scalars(select(Device).where(Device.code == METER)).one()
        assert meter.has_valve  # a remote valve: restriction can close it
        steward = create_user(s, username="guanjia-bill-e2e", password=PASSWORD, role=Role.steward, estates=[ESTATE])
        steward.email = STEWARD_EMAIL
        create_user(s, username=CLERK, password=PASSWORD, role=Role.billing_clerk, estates=[ESTATE])
        # A calendar with no public holiday in the window: T2 is then a working day by weekday alone.
        s.execute(text("DELETE FROM billing_holidays"))
        meter_id, unit_id = meter.id, meter.unit_id
        assert unit_id is not None
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-bill-e2e"))
    ingest.start()
    smtp = stop_at_end(SmtpServer()).start()
    robot = stop_at_end(RobotServer()).start()
    app = stop_at_end(AppServer(fresh_database, tmp_path / "app"))
    app.start()
    return Stack(
        fresh_database,
        engine,
        sessionmaker(engine, expire_on_commit=False),
        mosquitto,
        ingest,
        smtp,
        robot,
        app,
        estate_file,
        estate_id,
        0,
        meter_id,
    )


def _deliver_notices(stack: Stack, frozen: FrozenClock, ids: list[int]) -> None:
    """A clerk approves and sends the notices; the notification job delivers them (log, e-mail, WeCom group)."""
    with stack.factory() as s, s.begin():
        for notice_id in ids:
            notices.approve(s, notice_id, actor=CLERK)
            notices.send(s, notice_id, actor=CLERK)
    channels: dict[str, Channel] = {
        LOG: LogChannel(),
        EMAIL: SmtpChannel("127.0.0.1", stack.smtp.port, sender="steward@bill-e2e.example", timeout_s=5),
        WECOM_ROBOT: WeComRobotChannel(stack.robot.url, timeout_s=5),
    }
    result = dispatch_due(stack.factory, channels, frozen())
    assert (result.sent, result.failed, result.gave_up) == (3 * len(ids), 0, 0), result


def _mails_and_posts(stack: Stack, title: str) -> tuple[list[Any], list[dict[str, Any]]]:
    mails = [m for _, m in stack.smtp.received if title in str(m["Subject"])]
    posts = [p for p in stack.robot.posts if p["markdown"]["content"].startswith(f"### {title} ")]
    return mails, posts


def _dispatch_outbox(stack: Stack, publisher: MqttPublisher, now: datetime) -> int:
    """One pass of the worker's outbox job at `now` (the pinned clock)."""
    with stack.factory() as s, s.begin():
        return OutboxDispatcher(publisher)(s, now).sent


def _command(stack: Stack, outbox_id: int) -> Any:
    return stack.one("SELECT status, acked_at, attempts, payload FROM outbox WHERE id = :i", i=outbox_id)


def _wait_acked(stack: Stack, outbox_id: int) -> Any:
    def probe() -> Any:
        row = _command(stack, outbox_id)
        return row if row.status == "acknowledged" else None

    return _wait_for(f"the device's ack of command {outbox_id} (ingest log: {stack.ingest.log_dir})", probe)


def _wait_valve_reading(stack: Stack, valve: str, after: datetime) -> Any:
    def probe() -> Any:
        with stack.engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT ts, register, valve FROM meter_readings WHERE device_id = :d AND ts > :a AND valve = :v "
                    "ORDER BY ts LIMIT 1"
                ),
                {"d": stack.meter_id, "a": after, "v": valve},
            ).first()

    return _wait_for(f"a reading with the valve {valve} after {after.isoformat()}", probe)


def _screenshots(page: Any, stem: Path) -> None:
    """The whole page, and one phone screen from the balance down (balance, supply state, commands, notices)."""
    page.screenshot(path=f"{stem}.png", full_page=True)
    page.evaluate("document.getElementById('account-summary').scrollIntoView()")
    page.screenshot(path=f"{stem}-screen.png")
    assert Path(f"{stem}.png").stat().st_size > 0
    assert Path(f"{stem}-screen.png").stat().st_size > 0


# --- the test ----------------------------------------------------------------------------------------


def test_a_household_runs_dry_is_noticed_restricted_pays_and_is_restored(
    stack: Stack,
    browser: Any,  # noqa: F811
) -> None:
    # Placement in the real past only (module doc), not a decision: ingest's acceptance window is real time.
    t2 = _restriction_instant(clock.now())
    t1 = t2 - timedelta(days=21)
    start = t1 - timedelta(days=4)
    ta = start + timedelta(days=1)

    # What the simulator will publish (deterministic): phase A, phase B resuming A's register, and the price.
    phase_a = _readings(stack.estate_file, start, ta - start, None)
    reg_a = phase_a[-1][1]
    phase_b = _readings(stack.estate_file, ta, t1 - ta, {METER: RegisterStart(reg_a)})
    reg_b = phase_b[-1][1]
    used_a, used_b = reg_a - phase_a[0][1], reg_b - reg_a
    assert used_a > 0, "the simulated household used no hot water on day one (change SEED)"
    price = max(100, math.ceil(PHASE_A_TARGET_FEN / used_a / 100) * 100)  # whole yuan per m³
    assert used_b * price > OPENING_FEN - PHASE_A_TARGET_FEN + 200, "phase B would not spend the balance"

    with pinned(start - timedelta(days=1)) as frozen:
        # 1. The household: an account, a tariff, the estate's restriction switch on, ¥60 prepaid.
        with stack.factory() as s, s.begin():
            unit_id = s.scalars(select(Device.unit_id).where(Device.id == stack.meter_id)).one()
            assert unit_id is not None
            # A household of long standing (billing/usage.py averages a younger account over its age): its
            # average is over the whole 30-day window, so a day of ¥40 leaves ~15 days → the first renewal notice.
            account = service.open_account(s, unit_id, at=frozen() - timedelta(days=90))
            stack.account_id = account.id
            service.add_tariff(
                s, estate_id=stack.estate_id, effective_from=frozen(), tiers=[Tier(None, price)], actor="e2e"
            )
            supply.set_restriction_enabled(
                s, stack.estate_id, True, actor="e2e", reason="合同约定欠费可限供 / the contract allows it"
            )
            service.record_payment(
                s,
                account_id=account.id,
                amount_fen=OPENING_FEN,
                method="counter",
                idempotency_key="e2e-open",
                actor=CLERK,
            )
            assert notices.evaluate(s, stack.estate_id, frozen()).drafted == []  # ¥60, no use yet: nothing due

        # Phase A: a day of hot water through Mosquitto → ingest → meter_readings; the billing run charges it.
        frozen.set(ta)
        stats = run_simulation(
            stack.estate_file,
            "127.0.0.1",
            stack.broker.port,
            seed=SEED,
            speed=0,
            start=start,
            duration_s=(ta - start).total_seconds(),
            client_id="sim-bill-e2e-a",
        )
        assert stats.drained, stats
        assert stats.frames.by_channel["meter"] == len(phase_a)
        _wait_for(
            f"{len(phase_a)} phase-A readings (ingest log: {stack.ingest.log_dir})", lambda: stack.stored(phase_a)
        )
        # Ingest charges readings as they land (STEWARD_BILLING_CHARGE_ON_INGEST, on by default); the periodic run
        # charges whatever it did not: either way each interval once.
        billing_run(stack.factory, ta)
        (n_charges,) = stack.one("SELECT count(*) FROM meter_charges WHERE account_id = :a", a=stack.account_id)
        assert n_charges > 0
        with stack.factory() as s:
            acct = s.get(BillingAccount, stack.account_id)
            assert acct is not None
            balance_a = acct.balance_fen
            assert service.derived_balance(s, acct.id) == balance_a  # the ledger and the cached balance agree
        spent_a = OPENING_FEN - balance_a
        assert abs(spent_a - int(used_a * price)) <= len(phase_a), (spent_a, used_a, price)  # ≤ 1 fen per interval
        assert 0 < balance_a < 5000, balance_a  # running low: below ¥50

        # 2. The renewal notice: drafted, approved, sent, delivered by e-mail and to the estate's WeCom group.
        with stack.factory() as s, s.begin():
            evaluation = notices.evaluate(s, stack.estate_id, frozen())
            assert [n.kind for n in evaluation.drafted] == [NoticeKind.renewal.value]
            renewal_id = evaluation.drafted[0].id
            renewal_number = evaluation.drafted[0].number
        _deliver_notices(stack, frozen, [renewal_id])
        mails, posts = _mails_and_posts(stack, "热水续费通知书")
        assert len(mails) == 1, [str(m["Subject"]) for _, m in stack.smtp.received]
        [mail] = mails
        assert mail["To"] == STEWARD_EMAIL
        assert str(mail["Subject"]) == f"热水续费通知书 {renewal_number}"
        body = mail.get_content()
        for needle in ("热水续费通知书", renewal_number, UNIT, f"{Decimal(balance_a) / 100:.2f}", "热水实行预付费"):
            assert needle in body, needle
        assert len(posts) == 1, stack.robot.posts
        assert renewal_number in posts[0]["markdown"]["content"]
        assert UNIT in posts[0]["markdown"]["content"]

        # Phase B: three more days of use spend the rest; the balance goes below zero.
        frozen.set(t1)
        stats = run_simulation(
            stack.estate_file,
            "127.0.0.1",
            stack.broker.port,
            seed=SEED,
            speed=0,
            start=ta,
            duration_s=(t1 - ta).total_seconds(),
            registers={METER: RegisterStart(reg_a)},
            client_id="sim-bill-e2e-b",
        )
        assert stats.drained, stats
        _wait_for(f"{len(phase_b)} phase-B readings", lambda: stack.stored(phase_b))
        billing_run(stack.factory, t1)
        billing_run(stack.factory, t1)  # idempotent: a second run charges nothing more
        with stack.factory() as s:
            acct = s.get(BillingAccount, stack.account_id)
            assert acct is not None
            balance_b = acct.balance_fen
            assert service.derived_balance(s, acct.id) == balance_b
        assert balance_b <= 0, balance_b
        (charged,) = stack.one(
            "SELECT coalesce(sum(amount_fen), 0) FROM meter_charges WHERE account_id = :a", a=stack.account_id
        )
        assert OPENING_FEN - charged == balance_b  # each interval charged once

        # 3. Balance spent: the second renewal and the restriction notice (stating a date ≥ 15 days ahead).
        with stack.factory() as s, s.begin():
            evaluation = notices.evaluate(s, stack.estate_id, frozen())
            kinds = {n.kind: n for n in evaluation.drafted}
            assert set(kinds) == {NoticeKind.renewal_second.value, NoticeKind.restriction.value}
            assert evaluation.changes == []
            assert evaluation.held_back == {stack.account_id: "no_notice"}
            restriction = kinds[NoticeKind.restriction.value]
            assert restriction.effective_at is not None
            stated = restriction.effective_at
            restriction_number = restriction.number
            ids = [n.id for n in evaluation.drafted]
        assert stated >= t1 + timedelta(days=15)
        assert stated <= t2, (stated, t2)
        _deliver_notices(stack, frozen, ids)
        mails, posts = _mails_and_posts(stack, "热水限供通知")
        assert len(mails) == 1
        assert len(posts) == 1
        assert restriction_number in mails[0].get_content()
        assert stated.astimezone(SH).strftime("%Y年%m月%d日") in mails[0].get_content()  # the date it states
        assert len(_mails_and_posts(stack, "热水续费通知书（第二次）")[0]) == 1

        # Not before the stated date: the notice period holds the restriction back.
        frozen.set(stated - timedelta(minutes=1))
        with stack.factory() as s, s.begin():
            evaluation = notices.evaluate(s, stack.estate_id, frozen())
            assert (evaluation.changes, evaluation.drafted) == ([], [])
            assert evaluation.held_back == {stack.account_id: "notice_period"}

        # T2, a weekday 10:00 after the stated date: restricted; a valve 'close' command is queued.
        frozen.set(t2)
        with stack.factory() as s, s.begin():
            evaluation = notices.evaluate(s, stack.estate_id, frozen())
            [change] = evaluation.changes
            assert (change.from_state, change.to_state) == (SupplyState.normal, SupplyState.restricted)
            [close_id] = change.outbox_ids
        close = _command(stack, close_id)
        assert (close.status, close.payload["action"], close.payload["reason"]) == (
            "pending",
            "close",
            "billing_restriction",
        )

        # The simulated meter goes live from T2 (60× behind the pinned clock, which leads by 40 min: its
        # readings stay in the past of both clocks) and obeys valve commands.
        frozen.set(t2 + timedelta(minutes=40))  # still before the close command's expiry (T2 + 1 h)
        stop = threading.Event()
        progress: list[RunStats] = []
        live = threading.Thread(
            target=run_simulation,
            args=(stack.estate_file, "127.0.0.1", stack.broker.port),
            kwargs={
                "seed": SEED,
                "speed": 60,
                "start": t2,
                "registers": {METER: RegisterStart(reg_b)},
                "stop_event": stop,
                "on_progress": progress.append,
                "client_id": "sim-bill-e2e-live",
            },
            name="sim-live",
        )
        publisher = MqttPublisher("127.0.0.1", stack.broker.port, client_id="outbox-bill-e2e").start()
        live.start()
        try:
            assert publisher.wait_connected(10)
            _wait_for(
                "the simulator's valve subscription",
                lambda: True if progress and progress[-1].commands.subscribed > 0 else None,
            )
            # The real outbox dispatcher publishes it; the meter closes its valve and acks; ingest records the ack.
            assert _dispatch_outbox(stack, publisher, frozen()) == 1
            acked = _wait_acked(stack, close_id)
            assert acked.attempts == 1
            closed = _wait_valve_reading(stack, "closed", t2)
            assert closed.register >= reg_b  # no register fall: nothing for billing to hold

            # 5. The browser: the clerk sees the restriction, the acknowledged command and the notices.
            shots = output_dir()
            context, page, errors = new_page(browser, PHONE)
            from playwright.sync_api import expect

            log_in(page, stack.app.base, CLERK)
            page.goto(f"{stack.app.base}/billing/accounts/{stack.account_id}")
            expect(page.locator("#supply")).to_have_attribute("data-state", "restricted")
            expect(page.locator(f'[data-command="{close_id}"]')).to_have_attribute("data-status", "acknowledged")
            expect(page.locator('[data-field="supply"]')).to_have_text("限供")
            for kind in ("renewal", "renewal_second", "restriction"):
                expect(page.locator(f'#account-notices tr[data-kind="{kind}"]')).to_have_attribute(
                    "data-status", "sent"
                )
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            _screenshots(page, shots / "40-billing-e2e-restricted-375")
            # The page stays open: what follows reaches it over its live stream, without a reload.
            expect(page.locator("#live-status")).to_have_attribute("data-state", "connected", timeout=LIVE_TIMEOUT_MS)

            # 4. Payment: restored at once — a valve 'open' command, published, applied and acknowledged.
            t3 = t2 + timedelta(minutes=50)
            frozen.set(t3)
            with stack.factory() as s, s.begin():
                # The balance now: the live run's first interval may have been charged at ingest since T1.
                debt = -service.get_account(s, stack.account_id, lock=True).balance_fen
                assert debt >= -balance_b
                service.record_payment(
                    s,
                    account_id=stack.account_id,
                    amount_fen=debt + 10_000,
                    method="bank_transfer",
                    idempotency_key=f"e2e-pay-{uuid.uuid4().hex}",
                    actor=CLERK,
                )
                assert supply.state_of(s, stack.account_id) == SupplyState.normal
                [open_id] = s.scalars(
                    select(Outbox.id).where(Outbox.device_id == stack.meter_id, Outbox.id != close_id)
                ).all()
            opened = _command(stack, open_id)
            assert (opened.status, opened.payload["action"]) == ("pending", "open")
            frozen.set(t3 + timedelta(hours=2))  # room for the simulated meter to run on (the open command lasts 24 h)
            assert _dispatch_outbox(stack, publisher, frozen()) == 1
            _wait_acked(stack, open_id)
            reopened = _wait_valve_reading(stack, "open", closed.ts)
            assert reopened.ts > closed.ts

            expect(page.locator("#supply")).to_have_attribute("data-state", "normal", timeout=LIVE_TIMEOUT_MS)
            expect(page.locator('[data-field="supply"]')).to_have_text("正常供水")
            expect(page.locator(f'[data-command="{open_id}"]')).to_have_attribute(
                "data-status", "acknowledged", timeout=LIVE_TIMEOUT_MS
            )
            expect(page.locator('#account-notices tr[data-kind="restoration"]')).to_have_count(1)
            # Paid ¥100 more than the debt: in credit again (the reopened valve's first litres may be charged already).
            expect(page.locator('[data-field="balance"]').first).to_have_text(re.compile(r"^¥[\d,]+\.\d\d$"))
            _screenshots(page, shots / "41-billing-e2e-restored-375")
            assert errors == []
            context.close()
        finally:
            stop.set()
            live.join(15)
            publisher.stop()
        assert not live.is_alive()

    # The record: one change each way, each resting on its commands, both acknowledged by the meter.
    with stack.engine.connect() as conn:
        changes = conn.execute(
            text(
                "SELECT from_state, to_state, outbox_ids FROM billing_supply_changes WHERE account_id = :a ORDER BY id"
            ),
            {"a": stack.account_id},
        ).all()
        statuses: dict[int, str] = dict(conn.execute(text("SELECT id, status FROM outbox")).all())
    assert [(c.from_state, c.to_state, list(c.outbox_ids)) for c in changes] == [
        ("normal", "restricted", [close_id]),
        ("restricted", "normal", [open_id]),
    ]
    assert statuses == {close_id: "acknowledged", open_id: "acknowledged"}
