"""SLA clocks as pure functions: every due time checked to the minute (domain-defaults §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tickets import sla
from tickets.const import TRANSITIONS, Clock, TicketStatus

SH = "Asia/Shanghai"
R = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 Shanghai


def m(n: int) -> timedelta:
    return timedelta(minutes=n)


def test_hot_water_is_on_site_in_15_minutes_general_in_20() -> None:
    hot = sla.due_times("hot_water", "normal", "resident", R, SH)
    general = sla.due_times("electrical", "normal", "resident", R, SH)
    assert hot.on_site == R + m(15)
    assert general.on_site == R + m(20)
    assert general.resolve == R + m(2 * 1440)  # 一般维修 2 天内完成
    assert general.feedback is None
    assert not general.continuous


def test_minor_is_due_by_2359_local_of_the_day_received() -> None:
    due = sla.due_times("water", "minor", "resident", R, SH)
    assert due.resolve == datetime(2026, 11, 26, 15, 59, tzinfo=UTC)  # 23:59 +08:00
    # Received 23:59:30 local: after 20:00, so the next day's noon (§4), not 23:59.
    late = datetime(2026, 11, 26, 15, 59, 30, tzinfo=UTC)
    assert sla.due_times("water", "minor", "resident", late, SH).resolve == datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
    # Received at 00:30 local (16:30 UTC the day before): still that local day's 23:59.
    night = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)
    assert sla.due_times("water", "minor", "resident", night, SH).resolve == datetime(2026, 11, 26, 15, 59, tzinfo=UTC)


def test_urgent_is_continuous_with_a_20_minute_on_site_clock() -> None:
    due = sla.due_times("electrical", "urgent", "alarm", R, SH)
    assert (due.on_site, due.resolve, due.continuous) == (R + m(20), R + m(240), True)
    assert sla.due_times("hot_water", "urgent", "alarm", R, SH).on_site == R + m(15)


def test_high_priority_resolves_within_a_day() -> None:
    assert sla.due_times("electrical", "high", "alarm", R, SH).resolve == R + m(1440)


def test_complaint_has_feedback_in_24_hours_and_closes_in_12_days() -> None:
    due = sla.due_times("other", "normal", "complaint", R, SH)
    assert due.on_site is None
    assert due.feedback == R + m(1440)
    assert due.resolve == R + timedelta(days=12)


def test_patrol_findings_are_fixed_within_a_week() -> None:
    due = sla.due_times("civil", "normal", "patrol", R, SH)
    assert (due.on_site, due.resolve) == (None, R + timedelta(days=7))
    assert sla.due_times("civil", "urgent", "patrol", R, SH).on_site == R + m(20)


def test_callback_is_same_day_for_hot_water_else_24_hours() -> None:
    resolved = datetime(2026, 11, 26, 6, 17, tzinfo=UTC)  # 14:17 local
    assert sla.callback_due("hot_water", resolved, SH) == datetime(2026, 11, 26, 15, 59, tzinfo=UTC)
    assert sla.callback_due("electrical", resolved, SH) == resolved + m(1440)


def test_estate_policy_overrides_merge_over_defaults_and_bad_values_are_ignored() -> None:
    policy = sla.policy_from(
        {
            "sla": {
                "on_site_minutes": 30,
                "resolve_minutes_normal": 600,
                "minor_due_local": "18:00",
                "bogus": 1,
                "on_site_minutes_hot_water": "ten",
                "escalation_step_minutes": True,
            }
        }
    )
    assert policy.on_site_minutes == 30
    assert policy.on_site_minutes_hot_water == 15  # "ten" ignored
    assert policy.escalation_step_minutes == 30  # a boolean is not a number of minutes
    due = sla.due_times("electrical", "normal", "resident", R, SH, policy)
    assert (due.on_site, due.resolve) == (R + m(30), R + m(600))
    assert sla.due_times("water", "minor", "resident", R, SH, policy).resolve == datetime(
        2026, 11, 26, 10, 0, tzinfo=UTC
    )
    assert sla.policy_from(None) == sla.policy_from({"sla": "nonsense"}) == sla.DEFAULT_POLICY


def test_escalation_levels_at_the_exact_minutes() -> None:
    due = R + m(20)
    assert sla.escalation_level(due, due - timedelta(seconds=1), 30) == 0
    assert sla.escalation_level(due, due, 30) == 1
    assert sla.escalation_level(due, due + m(29), 30) == 1
    assert sla.escalation_level(due, due + m(30), 30) == 2
    assert sla.level_due_at(due, 2, 30) == due + m(30)


def test_running_clocks_follow_the_status() -> None:
    t = SimpleNamespace(
        status="dispatched",
        on_site_due_at=R + m(20),
        on_site_at=None,
        resolve_due_at=R + m(60),
        resolved_at=None,
        callback_due_at=None,
        callback_at=None,
        feedback_due_at=None,
        feedback_at=None,
    )
    assert sla.running_clocks(t) == {Clock.on_site: R + m(20), Clock.resolve: R + m(60)}
    assert sla.breached_clocks(t, R + m(20)) == {Clock.on_site: R + m(20)}
    t.status, t.on_site_at = "on_site", R + m(5)
    assert sla.running_clocks(t) == {Clock.resolve: R + m(60)}
    t.status = "closed"
    assert sla.running_clocks(t) == {}


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        sla.due_times("water", "normal", "resident", datetime(2026, 1, 1), SH)  # noqa: DTZ001


def test_every_status_has_a_transition_row() -> None:
    assert set(TRANSITIONS) == set(TicketStatus)
    assert TicketStatus.closed not in TRANSITIONS[TicketStatus.on_site]
