"""Manual quarterly readings reconciled against the register; a mismatch opens one repair ticket (real PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alarms import manual_readings as compose
from billing import manual_readings
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import Estate, Ticket
from tests.billing.factory import add_reading, make_estate
from tests.support.clock import pinned


def at(s: str) -> datetime:
    return datetime.fromisoformat(s + "+08:00")


@pytest.fixture(autouse=True)
def _clock() -> object:
    with pinned(at("2026-12-28T18:00:00")) as frozen:
        yield frozen


def test_the_sop_window_is_the_25th_to_30th_of_a_quarters_last_month() -> None:
    tz = "Asia/Shanghai"
    assert manual_readings.in_sop_window(at("2026-12-25T00:00:00"), tz)
    assert manual_readings.in_sop_window(at("2026-09-30T23:59:00"), tz)
    assert not manual_readings.in_sop_window(at("2026-12-31T09:00:00"), tz)
    assert not manual_readings.in_sop_window(at("2026-11-27T09:00:00"), tz)
    # 24 Dec 17:00 UTC is already the 25th in Shanghai.
    assert manual_readings.in_sop_window(datetime.fromisoformat("2026-12-24T17:00:00+00:00"), tz)


def test_the_register_is_interpolated_between_readings_or_the_nearest(session: Session) -> None:
    _, (hh,) = make_estate(session, 1)
    add_reading(session, hh.device_id, at("2026-12-28T08:00:00"), "100.000")
    add_reading(session, hh.device_id, at("2026-12-28T12:00:00"), "102.000")
    reg = manual_readings.register_at(session, hh.device_id, at("2026-12-28T09:00:00"))
    assert reg == manual_readings.Register(Decimal("100.500"), "interpolated")
    assert manual_readings.register_at(session, hh.device_id, at("2026-12-28T12:00:00")) == manual_readings.Register(
        Decimal("102.000"), "nearest"
    )
    # After the last reading: the nearest one (within two days); far away: nothing to compare with.
    assert manual_readings.register_at(session, hh.device_id, at("2026-12-28T15:00:00")) == manual_readings.Register(
        Decimal("102.000"), "nearest"
    )
    assert manual_readings.register_at(session, hh.device_id, at("2026-12-20T15:00:00")) is None


def test_tolerance_is_max_of_half_a_cubic_metre_and_two_percent_per_estate() -> None:
    assert manual_readings.tolerance(None, Decimal("10")) == Decimal("0.5")
    assert manual_readings.tolerance({}, Decimal("100")) == Decimal("2.000")
    policy = {"manual_reading_tolerance_m3": "0.2", "manual_reading_tolerance_pct": 1}
    assert manual_readings.tolerance(policy, Decimal("10")) == Decimal("0.2")


def _tickets(session: Session, device_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Ticket).where(Ticket.device_id == device_id)) or 0


def test_a_reading_within_tolerance_is_ok_and_opens_nothing(session: Session) -> None:
    _, (hh,) = make_estate(session, 1)
    add_reading(session, hh.device_id, at("2026-12-26T08:00:00"), "20.000")
    add_reading(session, hh.device_id, at("2026-12-26T10:00:00"), "20.400")
    r = compose.record_and_reconcile(
        session, device_id=hh.device_id, read_at=at("2026-12-26T09:00:00"), value="20.5", reader="管家王", actor="wang"
    )
    assert (r.verdict, r.register, r.register_method, r.difference) == (
        "ok",
        Decimal("20.200"),
        "interpolated",
        Decimal("0.300"),
    )
    assert r.in_sop_window
    assert r.ticket_id is None
    assert _tickets(session, hh.device_id) == 0


def test_a_mismatch_opens_one_repair_ticket_for_the_meter(session: Session) -> None:
    _, (hh,) = make_estate(session, 1)
    add_reading(session, hh.device_id, at("2026-12-10T08:00:00"), "50.000")
    add_reading(session, hh.device_id, at("2026-12-10T09:00:00"), "50.100")
    r = compose.record_and_reconcile(
        session,
        device_id=hh.device_id,
        read_at=at("2026-12-10T08:30:00"),
        value="53.000",
        reader="工程部李",
        actor="li",
        note="表盘清晰",
    )
    assert (r.verdict, r.difference, r.tolerance) == ("mismatch", Decimal("2.950"), Decimal("1.001"))
    assert not r.in_sop_window  # accepted, flagged: the 10th is outside the 25th–30th
    ticket = session.get(Ticket, r.ticket_id)
    assert ticket is not None
    assert (ticket.category, ticket.source, ticket.device_id, ticket.unit_id) == (
        "meter",
        "inspection",
        hh.device_id,
        hh.unit_id,
    )
    assert ticket.source_key == f"manual_reading:{r.id}"
    # Again (a double submit), and the sweep: still one ticket.
    again = compose.record_and_reconcile(
        session,
        device_id=hh.device_id,
        read_at=at("2026-12-10T08:30:00"),
        value="53.000",
        reader="工程部李",
        actor="li",
    )
    assert (again.id, again.ticket_id) == (r.id, r.ticket_id)
    assert compose.sweep(session) == []
    assert _tickets(session, hh.device_id) == 1
    with pytest.raises(Conflict):  # the same instant with another value
        compose.record_and_reconcile(
            session, device_id=hh.device_id, read_at=at("2026-12-10T08:30:00"), value="54", reader="李", actor="li"
        )


def test_no_register_near_the_reading_is_no_data_and_bad_input_is_refused(session: Session) -> None:
    estate_id, (hh,) = make_estate(session, 1)
    r = compose.record_and_reconcile(
        session, device_id=hh.device_id, read_at=at("2026-12-27T08:30:00"), value="5", reader="王", actor="wang"
    )
    assert (r.verdict, r.register, r.ticket_id) == ("no_data", None, None)
    for kwargs in (
        {"value": "-1"},
        {"value": "abc"},
        {"reader": " "},
        {"read_at": at("2026-12-28T18:00:00") + timedelta(hours=1)},
        {"read_at": datetime.fromisoformat("2026-12-27T08:00:00")},  # naive: refused
    ):
        args = {"device_id": hh.device_id, "read_at": at("2026-12-27T09:00:00"), "value": "5", "reader": "王"} | kwargs
        with pytest.raises(InvalidInput):
            manual_readings.record(session, actor="wang", **args)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        manual_readings.record(
            session, device_id=-1, read_at=at("2026-12-27T09:00:00"), value="5", reader="王", actor="w"
        )
    estate = session.get(Estate, estate_id)
    assert estate is not None
