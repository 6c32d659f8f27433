"""The statement run from the worker's billing job and from the CLI (committed data: a database of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from core.errors import InvalidInput
from core.settings import get_settings
from steward.cli import app
from storage.models import BillingPeriod, BillingStatement, Estate
from tests.billing.factory import add_reading, flat_tariff, make_estate
from tests.support.clock import pinned
from worker.jobs import billing_job


def at(s: str) -> datetime:
    return datetime.fromisoformat(s + "+08:00")


@pytest.fixture
def db(fresh_database: str) -> Iterator[Engine]:
    eng = create_engine(fresh_database)
    yield eng
    eng.dispose()


def _estate(db: Engine) -> tuple[int, str, list[int]]:
    with Session(db) as session, session.begin():
        estate_id, households = make_estate(session, 2)
        flat_tariff(session, estate_id, 2000)
        for hh in households:
            add_reading(session, hh.device_id, at("2026-10-02T08:00:00"), "10.000")
            add_reading(session, hh.device_id, at("2026-12-30T08:00:00"), "13.000")
            add_reading(session, hh.device_id, at("2027-01-02T08:00:00"), "14.000")
        code = session.scalars(select(Estate.code).where(Estate.id == estate_id)).one()
        return estate_id, code, [hh.account_id for hh in households]


def _statements(db: Engine, estate_id: int) -> list[tuple[str, int, int]]:
    with Session(db) as session:
        return [
            (r.period, r.charges_fen, r.closing_fen)
            for r in session.scalars(
                select(BillingStatement)
                .where(BillingStatement.estate_id == estate_id)
                .order_by(BillingStatement.account_id)
            )
        ]


def test_the_billing_job_writes_the_last_ended_quarters_statements(db: Engine) -> None:
    estate_id, _, _ = _estate(db)
    with pinned(at("2026-12-31T12:00:00")) as clock, Session(db) as session:
        billing_job(session, clock.t)  # Q4 has not ended: Q3 is due, and these accounts opened in Q4
        assert _statements(db, estate_id) == []
        clock.set(at("2027-01-03T01:00:00"))
        billing_job(session, clock.t)
        got = [s for s in _statements(db, estate_id) if s[0] == "2026Q4"]
        assert got == [("2026Q4", 6000, -6000)] * 2  # 3 m³ at ¥20; the January interval is 2027Q1's


def test_cli_statements_then_close(db: Engine, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    estate_id, code, _ = _estate(db)
    monkeypatch.setenv("STEWARD_DATABASE_URL", db.url.render_as_string(hide_password=False))
    get_settings.cache_clear()  # the CLI reads the settings once per process
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()
    with pinned(at("2027-01-05T10:00:00")):
        out = runner.invoke(app, ["billing", "statements", "--quarter", "2026Q4", "--estate", code])
        assert out.exit_code == 0, out.output
        assert "2 statements" in out.output
        assert _statements(db, estate_id) == [("2026Q4", 6000, -6000)] * 2
        out = runner.invoke(app, ["billing", "close", "--quarter", "2026Q4", "--estate", code, "--actor", "li"])
        assert out.exit_code == 0, out.output
        for bad in ("2026Q5", "2027Q2"):  # not a quarter; one not started yet
            out = runner.invoke(app, ["billing", "statements", "--quarter", bad])
            assert isinstance(out.exception, InvalidInput)  # `steward` itself prints it on one line, exit 2
    with Session(db) as session:
        period = session.scalars(select(BillingPeriod).where(BillingPeriod.estate_id == estate_id)).one()
        assert (period.period, period.status, period.closed_by) == ("2026Q4", "closed", "li")
