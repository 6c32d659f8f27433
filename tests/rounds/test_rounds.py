"""Inspection rounds against PostgreSQL: default schedules, windows, telemetry evidence, manual rounds, missed alarms.

Time is driven explicitly: `evaluate_rounds(session, now)`; `record_manual_round` reads `core.clock`, which the
`frozen_clock` fixture pins. Most tests start at T0 (08:00, a window boundary); the last one runs at each of
the INSTANTS (tests/support/clock.py). Every test runs in a rolled-back transaction with an estate of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from alarms.round_defaults import EVERY_4D, LV_KINDS
from alarms.rounds import (
    ROUND_MISSED_RULE,
    RoundTimeError,
    RoundTransitionError,
    ensure_default_schedules,
    evaluate_rounds,
    record_manual_round,
)
from core.errors import InvalidInput
from storage.models import InspectionRound, RoundSchedule, Ticket
from tests.rounds.conftest import LV_POINTS, SH, T0, at
from tests.support.clock import FrozenClock
from tests.support.world import RoomsEstate


def schedule(est: RoomsEstate, room: str, code: str) -> RoundSchedule:
    return est.session.scalars(
        select(RoundSchedule).where(RoundSchedule.room_id == est.room(room).id, RoundSchedule.code == code)
    ).one()


def rounds(est: RoomsEstate, sched: RoundSchedule) -> list[InspectionRound]:
    est.session.expire_all()
    return list(
        est.session.scalars(
            select(InspectionRound)
            .where(InspectionRound.schedule_id == sched.id)
            .order_by(InspectionRound.window_start)
        )
    )


def lv_setup(est: RoomsEstate) -> RoundSchedule:
    ensure_default_schedules(est.session, est.id, now=T0)
    evaluate_rounds(est.session, at(30))
    return schedule(est, "PR1", "lv_2h")


def report_all(est: RoomsEstate, start_minute: float, skip: str | None = None, **values: float) -> None:
    for device, metric, value in LV_POINTS:
        if metric == skip:
            continue
        pid = est.point(device, metric)
        est.sample(pid, at(start_minute), values.get(metric, value))
        est.sample(pid, at(start_minute + 30), values.get(metric, value))


# --- schedules ---------------------------------------------------------------------------------------------


def test_default_schedules_per_room_kind(est: RoomsEstate) -> None:
    assert ensure_default_schedules(est.session, est.id, now=T0 + timedelta(hours=5)) == 6
    assert ensure_default_schedules(est.session, est.id, now=T0) == 0  # idempotent
    rows = {
        (s.room_id, s.code): s
        for s in est.session.scalars(select(RoundSchedule).where(RoundSchedule.estate_id == est.id))
    }
    pr, hs, pump, fire, hwp = (est.room(c).id for c in ("PR1", "HS1", "PUMP1", "FIRE1", "HWP1"))
    assert set(rows) == {
        (pr, "lv_2h"),
        (pr, "hv_4h"),
        (hs, "station_2h"),
        (pump, "pumps_4d"),
        (fire, "pumps_4d"),
        (hwp, "plant_2h"),
    }
    lv, hv = rows[(pr, "lv_2h")], rows[(pr, "hv_4h")]
    assert (lv.interval_minutes, hv.interval_minutes) == (120, 240)
    assert {"lv_incomer", "capacitor_cabinet", "room_environment"} <= set(lv.device_kinds or ())
    assert set(lv.device_kinds or ()) == set(LV_KINDS)
    assert "dry_type_transformer" in (hv.device_kinds or ())
    assert rows[(hs, "station_2h")].device_kinds is None
    assert rows[(pump, "pumps_4d")].interval_minutes == rows[(fire, "pumps_4d")].interval_minutes == EVERY_4D == 5760
    assert rows[(hwp, "plant_2h")].interval_minutes == 120
    # Anchored at local midnight of the estate's timezone.
    anchor = lv.anchor.astimezone(SH)
    assert (anchor.date(), anchor.hour, anchor.minute) == (T0.date(), 0, 0)


def test_windows_are_created_once_and_caught_up(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    first = rounds(est, lv)
    assert [(r.window_start.astimezone(SH).hour, r.window_end.astimezone(SH).hour) for r in first] == [(8, 10)]
    assert first[0].status == "open"
    evaluate_rounds(est.session, at(31))
    assert len(rounds(est, lv)) == 1  # idempotent
    # Worker down for 5 h: the windows since the last one are filled in, none before it.
    evaluate_rounds(est.session, at(5 * 60 + 10))
    starts = [r.window_start.astimezone(SH).hour for r in rounds(est, lv)]
    assert starts == [8, 10, 12]


# --- telemetry ---------------------------------------------------------------------------------------------


def test_round_satisfied_by_telemetry(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    report_all(est, 10)
    res = evaluate_rounds(est.session, at(121))
    assert res.satisfied >= 1
    rnd = rounds(est, lv)[0]
    assert (rnd.status, rnd.satisfied_by, rnd.ticket_id) == ("satisfied", "telemetry", None)
    assert rnd.evidence["required"] == rnd.evidence["ok"] == 3
    ev = rnd.evidence["points"][str(est.point("ENV", "room_temp_c"))]
    assert ev["value"] == 29.0
    assert ev["ts"].startswith((at(40)).astimezone(rnd.window_start.tzinfo).isoformat()[:10])
    assert "reason" not in ev
    # The transformer is not part of the LV round.
    assert str(est.point("TR1", "winding_temp_a_c")) not in rnd.evidence["points"]


def test_missing_point_makes_a_manual_round_with_an_inspection_ticket(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    report_all(est, 10, skip="case_temp_c")
    evaluate_rounds(est.session, at(121))
    rnd = rounds(est, lv)[0]
    assert rnd.status == "manual_due"
    assert rnd.satisfied_by is None
    cap = rnd.evidence["points"][str(est.point("CAP1", "case_temp_c"))]
    assert cap["reason"] == "no_data"
    assert rnd.evidence["ok"] == 2
    assert rnd.ticket_id is not None
    ticket = est.session.get(Ticket, rnd.ticket_id)
    assert ticket is not None
    assert (ticket.source, ticket.category, ticket.priority) == ("inspection", "electrical", "normal")
    assert ticket.source_key == f"round:{rnd.id}"
    assert ticket.room_id == est.room("PR1").id
    assert "1号配电房" in ticket.title
    assert "需人工巡检" in ticket.title
    # Evaluating again opens no second ticket.
    evaluate_rounds(est.session, at(122))
    n = est.session.scalar(text("SELECT count(*) FROM tickets WHERE source_key = :k"), {"k": f"round:{rnd.id}"})
    assert n == 1


def test_out_of_range_and_open_alarm_are_evidence_against(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    # Room temperature beyond the 35 °C warning level of the default pack.
    report_all(est, 10, room_temp_c=36.5)
    # An alarm on the LV voltage point open across the window's end.
    volt = est.point("LV1", "voltage_a_v")
    rule_id = est.session.scalar(text("SELECT id FROM alarm_rules WHERE code = 'power_room.room_temp.high'"))
    est.session.execute(
        text(
            "INSERT INTO alarms (rule_id, subject, point_id, estate_id, severity, raised_at) "
            "VALUES (:r, :s, :p, :e, 'warning', :t)"
        ),
        {"r": rule_id, "s": f"point:{volt}", "p": volt, "e": est.id, "t": at(100)},
    )
    evaluate_rounds(est.session, at(121))
    rnd = rounds(est, lv)[0]
    assert rnd.status == "manual_due"
    pts = rnd.evidence["points"]
    assert pts[str(est.point("ENV", "room_temp_c"))]["reason"] == "out_of_range"
    assert pts[str(volt)]["reason"] == "open_alarm"
    assert "reason" not in pts[str(est.point("CAP1", "case_temp_c"))]


def test_a_sample_outside_the_window_does_not_count(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    report_all(est, 10)
    est.sample(est.point("CAP1", "case_temp_c"), at(-5), 38.0)  # before the window
    est.session.execute(
        text("DELETE FROM samples WHERE point_id = :p AND ts >= :t"), {"p": est.point("CAP1", "case_temp_c"), "t": T0}
    )
    evaluate_rounds(est.session, at(121))
    assert rounds(est, lv)[0].status == "manual_due"


def test_room_without_telemetry_needs_a_manual_round(est: RoomsEstate) -> None:
    ensure_default_schedules(est.session, est.id, now=T0)
    evaluate_rounds(est.session, at(30))
    evaluate_rounds(est.session, at(121))
    plant = rounds(est, schedule(est, "HWP1", "plant_2h"))[0]
    assert plant.status == "manual_due"
    assert plant.evidence["reason"] == "no_points"
    ticket = est.session.get(Ticket, plant.ticket_id)
    assert ticket is not None
    assert ticket.category == "hot_water"
    heat = rounds(est, schedule(est, "HS1", "station_2h"))[0]
    heat_ticket = est.session.get(Ticket, heat.ticket_id)
    assert heat_ticket is not None
    assert heat_ticket.category == "heating"


# --- missed ------------------------------------------------------------------------------------------------


def open_missed(est: RoomsEstate, sched: RoundSchedule) -> list[Any]:
    return list(
        est.session.execute(
            text(
                "SELECT a.id, a.state, a.severity, a.room_id, a.ticket_id, a.detail, a.raised_at FROM alarms a "
                "JOIN alarm_rules r ON r.id = a.rule_id WHERE r.code = :c AND a.subject = :s ORDER BY a.id"
            ),
            {"c": ROUND_MISSED_RULE, "s": f"round:{sched.id}"},
        )
    )


def test_missed_after_grace_raises_one_alarm(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    raised: list[list[int]] = []
    hook = lambda conn, ids: raised.append(list(ids))  # noqa: E731
    evaluate_rounds(est.session, at(121), on_raised=hook)
    rnd = rounds(est, lv)[0]
    assert rnd.status == "manual_due"
    evaluate_rounds(est.session, at(149), on_raised=hook)  # grace is 30 min: not yet
    assert rounds(est, lv)[0].status == "manual_due"
    assert open_missed(est, lv) == []

    evaluate_rounds(est.session, at(151), on_raised=hook)
    rnd = rounds(est, lv)[0]
    assert rnd.status == "missed"
    alarms = open_missed(est, lv)
    assert len(alarms) == 1
    alarm = alarms[0]
    assert (alarm.state, alarm.severity, alarm.room_id) == ("active", "alarm", est.room("PR1").id)
    assert alarm.raised_at == at(150)
    assert alarm.detail["round_id"] == rnd.id
    assert alarm.detail["window_start"] == rnd.window_start.isoformat()
    # The manual-round ticket is the alarm's ticket: no second ticket through the hook.
    assert alarm.ticket_id == rnd.ticket_id
    assert rnd.alarm_id == alarm.id
    assert raised == []

    evaluate_rounds(est.session, at(152), on_raised=hook)
    evaluate_rounds(est.session, at(153), on_raised=hook)
    assert len(open_missed(est, lv)) == 1
    # The next window is missed too: still the one open alarm, and that round points at it.
    evaluate_rounds(est.session, at(241), on_raised=hook)
    evaluate_rounds(est.session, at(271), on_raised=hook)
    later = rounds(est, lv)[1]
    assert later.status == "missed"
    assert len(open_missed(est, lv)) == 1
    assert later.alarm_id == alarm.id


def test_round_decided_after_its_grace_goes_straight_to_missed_through_the_hook(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    raised: list[int] = []
    evaluate_rounds(est.session, at(200), on_raised=lambda conn, ids: raised.extend(ids))
    rnd = rounds(est, lv)[0]
    assert rnd.status == "missed"
    assert rnd.ticket_id is None  # no manual-round task for a round that is already missed
    alarms = open_missed(est, lv)
    assert [a.id for a in alarms] == [rnd.alarm_id]
    assert rnd.alarm_id in raised


def test_missed_alarm_opens_a_ticket_through_tickets_from_alarms(est: RoomsEstate) -> None:
    from tickets.from_alarms import open_for_alarms

    lv = lv_setup(est)
    evaluate_rounds(est.session, at(200), on_raised=open_for_alarms)
    alarm = open_missed(est, lv)[0]
    assert alarm.ticket_id is not None
    ticket = est.session.get(Ticket, alarm.ticket_id)
    assert ticket is not None
    assert ticket.source == "alarm"


def test_a_later_satisfied_round_clears_the_missed_alarm(est: RoomsEstate) -> None:
    lv = lv_setup(est)
    evaluate_rounds(est.session, at(151))
    assert open_missed(est, lv)[0].state == "active"
    report_all(est, 130)  # the 10:00–12:00 window is covered
    evaluate_rounds(est.session, at(241))
    assert rounds(est, lv)[1].status == "satisfied"
    alarm = open_missed(est, lv)[0]
    assert alarm.state == "cleared"


# --- manual rounds -----------------------------------------------------------------------------------------


def test_manual_round_on_a_due_round(est: RoomsEstate, frozen_clock: list[Any]) -> None:
    lv = lv_setup(est)
    evaluate_rounds(est.session, at(121))
    rnd = rounds(est, lv)[0]
    frozen_clock[0] = at(140)
    done = record_manual_round(
        est.session, rnd.id, "engineer-li", at(135), {"room_temp_c": 29.5, "remark": "柜门已关"}, "正常"
    )
    assert (done.status, done.satisfied_by, done.performed_by) == ("done", "manual", "engineer-li")
    assert done.performed_at == at(135)
    assert done.readings == {"room_temp_c": 29.5, "remark": "柜门已关"}
    assert done.notes == "正常"
    # Done rounds are never missed afterwards.
    evaluate_rounds(est.session, at(200))
    assert rounds(est, lv)[0].status == "done"
    with pytest.raises(RoundTransitionError):
        record_manual_round(est.session, rnd.id, "engineer-li", at(136), {}, None)


def test_manual_round_completes_its_inspection_ticket(est: RoomsEstate, frozen_clock: list[Any]) -> None:
    lv = lv_setup(est)
    report_all(est, 10, skip="case_temp_c")
    evaluate_rounds(est.session, at(121))
    rnd = rounds(est, lv)[0]
    assert rnd.status == "manual_due"
    assert rnd.ticket_id is not None
    frozen_clock[0] = at(140)
    record_manual_round(est.session, rnd.id, "engineer-li", at(135), {"case_temp_c": 38.0}, None)
    ticket = est.session.get(Ticket, rnd.ticket_id)
    assert ticket is not None
    assert ticket.status == "closed"  # an inspection ticket has nobody to call back
    assert (ticket.on_site_at, ticket.resolved_at, ticket.closed_at) == (at(135), at(140), at(140))
    assert f"#{rnd.id}" in (ticket.work_done or "")
    steps = est.session.execute(
        text("SELECT action, from_status, to_status, actor FROM ticket_events WHERE ticket_id = :t ORDER BY id"),
        {"t": ticket.id},
    ).all()
    assert [tuple(r) for r in steps[-3:]] == [
        ("on_site", "received", "on_site", "engineer-li"),
        ("resolved", "on_site", "resolved", "engineer-li"),
        ("closed", "resolved", "closed", "engineer-li"),
    ]


def test_late_manual_round_on_a_missed_round_clears_the_alarm_but_keeps_it(
    est: RoomsEstate, frozen_clock: list[Any]
) -> None:
    lv = lv_setup(est)
    evaluate_rounds(est.session, at(121))
    evaluate_rounds(est.session, at(151))
    rnd = rounds(est, lv)[0]
    assert rnd.status == "missed"
    frozen_clock[0] = at(170)
    record_manual_round(est.session, rnd.id, "engineer-wang", at(165), {"voltage_a_v": 229.0}, "迟到巡检")
    rnd = rounds(est, lv)[0]
    assert (rnd.status, rnd.satisfied_by) == ("done", "manual")
    alarms = open_missed(est, lv)
    assert len(alarms) == 1  # history kept
    assert alarms[0].state == "cleared"
    assert rnd.alarm_id == alarms[0].id


def test_manual_round_input_is_checked(est: RoomsEstate, frozen_clock: list[Any]) -> None:
    lv = lv_setup(est)
    rnd = rounds(est, lv)[0]
    frozen_clock[0] = at(40)
    with pytest.raises(RoundTimeError):
        record_manual_round(est.session, rnd.id, "eng", at(60), {}, None)  # in the future
    with pytest.raises(RoundTimeError):
        record_manual_round(est.session, rnd.id, "eng", at(-10), {}, None)  # before the window
    with pytest.raises(InvalidInput):
        record_manual_round(est.session, rnd.id, "eng", at(35), {"x": float("nan")}, None)
    # An open round (window still running) may be done by hand.
    assert record_manual_round(est.session, rnd.id, "eng", at(35), {"x": 1}, None).status == "done"


# --- at any hour -------------------------------------------------------------------------------------------


def test_windows_follow_local_hours_from_any_instant(
    est: RoomsEstate, instant: datetime, at_instant: FrozenClock
) -> None:
    """Schedules created at the instant: windows on even local hours (4 h, 4 days from local midnight),
    the current one open; telemetry satisfies it at its end; the next, unreported, is due then missed."""
    local = instant.astimezone(SH)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)

    def current(hours: int) -> datetime:
        return midnight + timedelta(hours=local.hour - local.hour % hours)

    assert ensure_default_schedules(est.session, est.id) == 6  # `now` from core.clock: the instant
    evaluate_rounds(est.session, instant)
    lv, hv, pumps = schedule(est, "PR1", "lv_2h"), schedule(est, "PR1", "hv_4h"), schedule(est, "PUMP1", "pumps_4d")
    assert lv.anchor == hv.anchor == pumps.anchor == midnight
    [first] = rounds(est, lv)
    [hv_first] = rounds(est, hv)
    [pumps_first] = rounds(est, pumps)
    assert (first.window_start, first.window_end, first.status) == (current(2), current(2) + timedelta(hours=2), "open")
    assert (hv_first.window_start, hv_first.window_end) == (current(4), current(4) + timedelta(hours=4))
    assert (pumps_first.window_start, pumps_first.window_end) == (midnight, midnight + timedelta(days=4))

    for device, metric, value in LV_POINTS:
        est.sample(est.point(device, metric), first.window_start + timedelta(minutes=10), value)
        est.sample(est.point(device, metric), first.window_end - timedelta(minutes=1), value)
    evaluate_rounds(est.session, first.window_end - timedelta(seconds=1))
    assert [r.status for r in rounds(est, lv)] == ["open"]  # not decided before its end
    evaluate_rounds(est.session, first.window_end + timedelta(minutes=1))
    done, nxt = rounds(est, lv)
    assert (done.status, done.satisfied_by, done.evidence["ok"]) == ("satisfied", "telemetry", 3)
    assert (nxt.window_start, nxt.window_end, nxt.status) == (
        first.window_end,
        first.window_end + timedelta(hours=2),
        "open",
    )

    end = nxt.window_end
    evaluate_rounds(est.session, end + timedelta(minutes=1))
    assert rounds(est, lv)[1].status == "manual_due"
    assert rounds(est, lv)[1].ticket_id is not None
    evaluate_rounds(est.session, end + timedelta(minutes=29))
    assert rounds(est, lv)[1].status == "manual_due"
    assert open_missed(est, lv) == []
    evaluate_rounds(est.session, end + timedelta(minutes=31))
    missed = rounds(est, lv)[1]
    assert missed.status == "missed"
    [alarm] = open_missed(est, lv)
    assert (alarm.state, alarm.raised_at) == ("active", end + timedelta(minutes=30))
    for r in rounds(est, lv):
        start = r.window_start.astimezone(SH)
        assert (start.minute, start.hour % 2) == (0, 0)

    # The engineer records it late, "now" by the pinned clock: done, and the missed alarm clears.
    at_instant.set(end + timedelta(minutes=45))
    late = record_manual_round(est.session, missed.id, "engineer-li", end + timedelta(minutes=40), {"x": 1}, None)
    assert (late.status, late.satisfied_by) == ("done", "manual")
    assert [a.state for a in open_missed(est, lv)] == ["cleared"]
    with pytest.raises(RoundTimeError):  # "in the future" is judged by the pinned clock too
        record_manual_round(est.session, rounds(est, lv)[-1].id, "eng", at_instant() + timedelta(minutes=6), {}, None)
