"""The demo's parts that decide things: where the replay begins, which port, which staff, what billing it seeds."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from accounts.const import Role
from core.settings import Settings
from facility.importer import import_estate
from notifications.channels import channels_from_settings
from protocol.estate_file import load_estate_file
from steward.demo import (
    DEMO_SCENARIOS,
    HISTORY_SCENARIOS,
    PREFERRED_PORT,
    dashboard_port,
    replay_start,
    service_settings,
)
from steward.demo_billing import (
    LOW_METER,
    LOW_OPENING_FEN,
    LOW_UNIT,
    OPENING_FEN,
    PRICE_FEN_PER_M3,
    catch_up,
    low_household,
    opening_payments,
    seed_billing,
)
from steward.demo_team import DEMO_CLERK, DEMO_TEAM, ensure_demo_team
from storage.models import (
    BillingAccount,
    BillingNotice,
    Device,
    DunningCase,
    Estate,
    MeterCharge,
    MeterReading,
    Payment,
    PropertyFeeArrears,
    StaffEstate,
    StaffUser,
    Tariff,
    TariffTier,
)
from tests.support.clock import pinned

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


def test_billing_is_seeded_once_with_one_household_just_above_the_renewal_line(session: Session) -> None:
    summary = import_estate(session, load_estate_file(SAMPLE))
    with pinned(LIVE):
        seed = seed_billing(session, summary.estate, LIVE)
        again = seed_billing(session, summary.estate, LIVE + timedelta(minutes=5))  # a restarted demo
    meters = session.scalar(
        select(func.count())
        .select_from(Device)
        .where(
            Device.estate_id == seed.estate_id,  # the test database holds other tests' estates too
            Device.kind == "hot_water_meter",
            Device.unit_id.is_not(None),
        )
    )
    assert seed.accounts == meters == 300
    assert (seed.tariff_created, seed.payments_created, seed.arrears_imported) == (True, 300, 6)
    assert (again.tariff_created, again.payments_created, again.arrears_imported) == (False, 0, 0)
    assert again.low_account_id == seed.low_account_id
    # No double payments: one opening top-up per household, and balances as first paid.
    assert opening_payments(session, seed.estate_id) == 300
    estate_payments = select(Payment).where(Payment.estate_id == seed.estate_id)
    assert len(session.scalars(estate_payments).all()) == 300
    assert {p.actor for p in session.scalars(estate_payments)} == {DEMO_CLERK}
    balances = {
        row.id: row.balance_fen
        for row in session.execute(
            select(BillingAccount.id, BillingAccount.balance_fen).where(
                BillingAccount.unit_id.is_not(None), BillingAccount.estate_id == seed.estate_id
            )
        )
    }
    assert balances.pop(seed.low_account_id) == LOW_OPENING_FEN
    assert set(balances.values()) == set(OPENING_FEN)  # weeks to months of hot water for everyone else
    # One ¥28/m³ tier: one 15-minute interval of the low household's running tap (15 L) costs 42 fen.
    tiers = select(TariffTier).join(Tariff, Tariff.id == TariffTier.tariff_id).where(Tariff.estate_id == seed.estate_id)
    assert [t.price_fen_per_m3 for t in session.scalars(tiers)] == [PRICE_FEN_PER_M3]
    assert LOW_OPENING_FEN - 42 < 5000 < LOW_OPENING_FEN
    # A few units owe property fees: /dunning has cases.
    arrears = select(func.count()).select_from(PropertyFeeArrears).where(PropertyFeeArrears.estate_id == seed.estate_id)
    assert session.scalar(arrears) == 6
    assert (
        session.scalar(select(func.count()).select_from(DunningCase).where(DunningCase.estate_id == seed.estate_id))
        == 3
    )
    low = low_household(session, seed.estate_id)
    assert low is not None
    assert (low.unit, low.balance_fen, low.notice_number) == (LOW_UNIT, LOW_OPENING_FEN, None)


def test_the_low_households_tap_runs_in_the_replay_and_live() -> None:
    assert f"hot_tap:{LOW_METER}@0s" in HISTORY_SCENARIOS
    assert f"hot_tap:{LOW_METER}@0s" in DEMO_SCENARIOS


def test_catch_up_charges_the_readings_and_drafts_the_low_households_notice_once(fresh_database: str) -> None:
    engine = create_engine(fresh_database)
    factory = sessionmaker(engine, expire_on_commit=False)
    try:
        with pinned(LIVE) as clock, factory() as session, session.begin():
            estate = import_estate(session, load_estate_file(SAMPLE)).estate
            seed = seed_billing(session, estate, LIVE)
            devices = {row.code: row.id for row in session.execute(select(Device.code, Device.id))}
            # The tap's 15 L in a quarter hour at the low household; a shower next door.
            for code, registers in ((LOW_METER, ("1.000", "1.015")), ("HW-3-2-1602", ("2.000", "2.040"))):
                for minutes, register in zip((1, 16), registers, strict=True):
                    session.add(
                        MeterReading(
                            device_id=devices[code], ts=LIVE + timedelta(minutes=minutes), register=Decimal(register)
                        )
                    )
        with pinned(LIVE + timedelta(minutes=20)) as clock:
            done = catch_up(factory, seed.estate_id, clock.t)
            assert (done.run.charges, done.run.amount_fen) == (2, 42 + 112)
            assert len(done.drafted) == 1
            with factory() as session:
                low = low_household(session, seed.estate_id)
                assert low is not None
                assert (low.balance_fen, low.notice_number) == (LOW_OPENING_FEN - 42, done.drafted[0])
                notice = session.scalars(select(BillingNotice)).one()
                assert (notice.kind, notice.status, notice.balance_fen) == ("renewal", "draft", LOW_OPENING_FEN - 42)
            # The next round (and a restarted demo's seed) charges and pays nothing twice, drafts nothing again.
            clock.advance(timedelta(minutes=1))
            again = catch_up(factory, seed.estate_id, clock.t)
            assert (again.run.charges, again.drafted) == (0, [])
            with factory() as session, session.begin():
                assert seed_billing(session, estate, clock.t).payments_created == 0
            with factory() as session:
                assert session.scalar(select(func.count()).select_from(MeterCharge)) == 2
                assert session.scalar(select(func.count()).select_from(BillingNotice)) == 1
                assert opening_payments(session, seed.estate_id) == 300
    finally:
        engine.dispose()


def test_the_demos_worker_delivers_notifications_to_the_log_only() -> None:
    configured = Settings(
        notify_channels="log,email,wecom_robot",
        smtp_host="smtp.example.cn",
        smtp_sender="steward@example.cn",
        wecom_robot_url=SecretStr("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x"),
    )
    assert set(channels_from_settings(configured)) == {"log", "email", "wecom_robot"}
    demo = service_settings(configured, "postgresql://127.0.0.1/demo", "mqtt://127.0.0.1:1883", "5")
    assert set(channels_from_settings(demo)) == {"log"}
