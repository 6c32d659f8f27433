"""Shift handover (alarms/handover.py) under a controlled clock at the shift boundaries: the day shift handed over
at 19:59 and signed at 20:00, the overnight shift across midnight, who may sign (another engineer, once), the grace
after a shift ends, and the signed record being final in the database itself."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from alarms import handover
from alarms.handover_queries import record_for
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import AuditLog, Estate, ShiftHandover
from tests.support.clock import pinned
from tests.support.handover import (
    add_alarm,
    add_rounds,
    add_ticket,
    busy_day_shift,
    local,
    seed_place,
    set_updated,
    user,
)

DAY = date(2026, 11, 26)
NEXT = DAY + timedelta(days=1)


def _estate(session: Session, estate_id: int) -> Estate:
    found = session.get(Estate, estate_id)
    assert found is not None
    return found


def test_day_shift_handed_over_at_1959_and_signed_at_2000(session: Session) -> None:
    place = seed_place(session)
    busy_day_shift(session, place, DAY)
    estate = _estate(session, place.estate_id)
    outgoing, incoming = user(session, place, "eng1"), user(session, place, "eng2")

    with pinned(local(DAY, 19, 59)) as clock:
        window = handover.due_window(session, estate, clock.t)
        assert (window.code, window.start, window.end) == ("day", local(DAY, 8), local(DAY, 20))
        rec = handover.hand_over(
            session, estate, outgoing, notes="1号变压器A相绕组温度仍高，风机已强制开启。", now=clock.t
        )
        facts = rec.snapshot
        assert facts["counts"] == {
            "alarms_raised": 2,  # 10:05 and 17:40 (the 06:20 one was the night's)
            "alarms_cleared": 2,  # 09:10 and 11:30 (yesterday's 21:00 was not this shift's)
            "alarms_open": 1,
            "alarms_open_critical": 1,
            "alarms_open_unacknowledged": 1,
            "tickets_opened": 2,  # 09:00 and 12:00
            "tickets_closed": 1,
            "tickets_open": 2,  # yesterday's and today's 12:00
            "tickets_breached": 2,  # neither open ticket saw anyone on site within 20 minutes
            "rounds_total": 6,  # windows starting 08:00 … 18:00
            "rounds_done": 3,
            "rounds_missed": 2,
            "rounds_pending": 1,
        }
        # Each open ticket carries its running clocks: on site (breached) and resolve.
        assert [[c["clock"] for c in t["clocks"]] for t in facts["tickets"]["open"]] == [["on_site", "resolve"]] * 2
        assert all(t["clocks"][0]["breached"] for t in facts["tickets"]["open"])
        opened = {t["title"] for t in facts["tickets"]["opened"]}
        assert opened == {"低压柜指示灯不亮", "配电房门锁损坏"}
        [critical] = facts["alarms"]["open"]
        # The point is named by its own label, never by an id.
        assert (critical["severity"], critical["point_label"], critical["room_name"]) == (
            "critical",
            "A相绕组温度",
            "1号配电房",
        )
        assert rec.shift_start == local(DAY, 8)
        assert rec.signed_at is None

        # The boundary: at 20:00 the day shift is still the one on the table (handed over, not yet signed).
        clock.set(local(DAY, 20))
        assert handover.due_window(session, estate, clock.t).start == local(DAY, 8)
        with pytest.raises(Conflict):  # the one who handed over does not sign for it
            handover.sign(session, rec.id, outgoing, visible={place.estate_id}, now=clock.t)
        signed = handover.sign(session, rec.id, incoming, visible={place.estate_id}, now=clock.t, note="已核对，接班。")
        assert (signed.incoming_name, signed.signed_at) == ("王工", local(DAY, 20))
        with pytest.raises(Conflict):  # once
            handover.sign(session, rec.id, user(session, place, "supervisor"), visible={place.estate_id}, now=clock.t)
        with pytest.raises(Conflict):  # and final
            handover.hand_over(session, estate, outgoing, notes="补充", now=clock.t, shift_start=local(DAY, 8))
        # Once signed, the night shift is on the table.
        night = handover.due_window(session, estate, clock.t)
        assert (night.code, night.start, night.end) == ("night", local(DAY, 20), local(NEXT, 8))

    actions = session.scalars(select(AuditLog.action).where(AuditLog.object == f"handover:{rec.id}")).all()
    assert sorted(actions) == ["handover.hand_over", "handover.sign"]


def test_a_signed_record_is_final_in_the_database(session: Session) -> None:
    place = seed_place(session)
    estate = _estate(session, place.estate_id)
    with pinned(local(DAY, 19, 50)) as clock:
        rec = handover.hand_over(session, estate, user(session, place, "eng1"), notes="正常", now=clock.t)
        with session.begin_nested():
            set_updated(session, rec.id, "unsigned records may still be amended")
        handover.sign(session, rec.id, user(session, place, "eng2"), visible={place.estate_id}, now=clock.t)
    with pytest.raises(DBAPIError, match="signed and final"), session.begin_nested():
        set_updated(session, rec.id, "rewritten after the signature")


def test_the_overnight_shift_runs_across_midnight(session: Session) -> None:
    place = seed_place(session)
    estate = _estate(session, place.estate_id)
    add_alarm(session, place, metric="winding_temp_a_c", severity="alarm", raised_at=local(DAY, 19, 30))  # the day's
    add_alarm(
        session,
        place,
        metric="winding_temp_b_c",
        severity="alarm",
        raised_at=local(DAY, 23, 40),
        cleared_at=local(NEXT, 0, 20),
    )
    add_alarm(session, place, metric="room_temp_c", severity="warning", raised_at=local(NEXT, 2, 15))
    add_ticket(session, place, title="夜间报修：地下室照明", received_at=local(NEXT, 1, 5))
    add_rounds(
        session, place, DAY, {20: "satisfied", 22: "missed", 24: "satisfied", 26: "done", 28: "satisfied", 30: "open"}
    )

    with pinned(local(NEXT, 7, 59)) as clock:
        rec = handover.hand_over(session, estate, user(session, place, "eng2"), notes="夜班平稳", now=clock.t)
        assert (rec.shift_code, rec.shift_start, rec.shift_end) == ("night", local(DAY, 20), local(NEXT, 8))
        counts = rec.snapshot["counts"]
        assert (counts["alarms_raised"], counts["alarms_cleared"], counts["alarms_open"]) == (2, 1, 2)
        assert (counts["tickets_opened"], counts["rounds_total"], counts["rounds_missed"]) == (1, 6, 1)
        clock.set(local(NEXT, 8))
        signed = handover.sign(session, rec.id, user(session, place, "eng1"), visible={place.estate_id}, now=clock.t)
        assert signed.signed_at == local(NEXT, 8)
        assert handover.due_window(session, estate, clock.t).start == local(NEXT, 8)


def test_the_shift_that_ended_stays_on_the_table_for_the_grace_only(session: Session) -> None:
    place = seed_place(session)
    estate = _estate(session, place.estate_id)
    eng1 = user(session, place, "eng1")
    with pinned(local(DAY, 21, 59)) as clock:
        assert handover.due_window(session, estate, clock.t).start == local(DAY, 8)  # not handed over yet
        clock.set(local(DAY, 22, 0))
        assert handover.due_window(session, estate, clock.t).start == local(DAY, 20)
        with pytest.raises(Conflict):
            handover.hand_over(session, estate, eng1, notes="迟交", now=clock.t, shift_start=local(DAY, 8))
        assert record_for(session, estate.id, local(DAY, 8)) is None


def test_only_the_outgoing_engineer_amends_before_the_signature(session: Session) -> None:
    place = seed_place(session)
    estate = _estate(session, place.estate_id)
    with pinned(local(DAY, 19)) as clock:
        rec = handover.hand_over(session, estate, user(session, place, "eng1"), notes="初稿", now=clock.t)
        add_alarm(session, place, metric="room_temp_c", severity="warning", raised_at=local(DAY, 19, 20))
        clock.set(local(DAY, 19, 30))
        again = handover.hand_over(session, estate, user(session, place, "eng1"), notes="补充：室温偏高", now=clock.t)
        assert again.id == rec.id
        assert again.notes == "补充：室温偏高"
        assert again.snapshot["counts"]["alarms_raised"] == 1  # the facts were read afresh
        with pytest.raises(Conflict):
            handover.hand_over(session, estate, user(session, place, "eng2"), notes="我来交", now=clock.t)
        with pytest.raises(InvalidInput):
            handover.hand_over(session, estate, user(session, place, "eng1"), notes="长" * 1001, now=clock.t)
        with pytest.raises(NotFound):  # another estate's record is not there for this caller
            handover.sign(session, rec.id, user(session, place, "eng2"), visible={place.estate_id + 1}, now=clock.t)
    assert session.scalars(select(ShiftHandover).where(ShiftHandover.estate_id == estate.id)).all() == [rec]
