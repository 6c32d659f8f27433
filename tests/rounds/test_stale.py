"""The stale-data watchdog: a silent equipment device raises one warning (and one ticket), a report clears it.

Every test runs at each of the INSTANTS (tests/support/clock.py): the watchdog must not care about the hour."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from alarms.stale import (
    DEFAULT_STALE_RULES,
    WATCH_GAP,
    WATCHING_ALL_ALONG,
    check_stale,
    ensure_default_stale_rules,
    watching_since,
)
from tests.support.world import RoomsEstate

RULE = DEFAULT_STALE_RULES[0].code


def seen(est: RoomsEstate, suffix: str, last_ts: Any) -> None:
    est.session.execute(
        text(
            "INSERT INTO device_state (device_id, last_seen_at, last_ts) VALUES (:d, :t, :t) "
            "ON CONFLICT (device_id) DO UPDATE SET last_ts = excluded.last_ts, last_seen_at = excluded.last_seen_at"
        ),
        {"d": est.device(suffix).id, "t": last_ts},
    )


def stale_alarms(est: RoomsEstate) -> dict[int, str]:
    rows = est.session.execute(
        text(
            "SELECT a.point_id, a.state, a.severity, a.subject, a.device_id, a.room_id FROM alarms a "
            "JOIN alarm_rules r ON r.id = a.rule_id WHERE r.code = :c AND a.estate_id = :e ORDER BY a.id"
        ),
        {"c": RULE, "e": est.id},
    ).all()
    for r in rows:
        # The default rule watches every metric, so it judges (and alarms) the device, not each point.
        assert r.subject == f"device:{r.device_id}"
        assert r.point_id is None
        assert r.severity == "warning"
    return {r.device_id: r.state for r in rows}


def test_stale_raise_once_and_clear(est: RoomsEstate, instant: datetime) -> None:
    ensure_default_stale_rules(est.session)
    ensure_default_stale_rules(est.session)  # idempotent
    now = instant + timedelta(minutes=60)
    seen(est, "LV1", now - timedelta(seconds=20))  # interval 15 s → limit 22.5 s: fresh
    seen(est, "CAP1", now - timedelta(seconds=200))  # interval 60 s → limit 90 s: stale
    seen(est, "ENV", now - timedelta(seconds=44))  # interval 30 s → limit 45 s: fresh
    # TR1 never reported and has no installed_at: not judged. HX1 was installed long ago and never reported.
    est.device("HX1").installed_at = instant - timedelta(minutes=600)
    est.session.flush()

    raised: list[int] = []
    res = check_stale(est.session, now, on_raised=lambda conn, ids: raised.extend(ids))
    cap, env, lv = est.device("CAP1").id, est.device("ENV").id, est.device("LV1").id
    hx = est.device("HX1").id
    assert stale_alarms(est) == {cap: "active", hx: "active"}
    assert res.raised >= 2
    assert len(raised) >= 2
    row = est.session.execute(
        text("SELECT device_id, room_id, detail FROM alarms WHERE subject = :s"), {"s": f"device:{cap}"}
    ).one()
    assert (row.device_id, row.room_id) == (est.device("CAP1").id, est.room("PR1").id)
    assert row.detail["limit_s"] == 90

    # 30 s later: nothing new for CAP1/HX1; ENV (74 s) and LV1 (50 s) are now silent too.
    raised.clear()
    check_stale(est.session, now + timedelta(seconds=30), on_raised=lambda conn, ids: raised.extend(ids))
    assert stale_alarms(est) == {cap: "active", hx: "active", env: "active", lv: "active"}
    assert len(raised) >= 2

    # CAP1 reports again: its alarm clears; the episode stays in the history.
    seen(est, "CAP1", now + timedelta(seconds=55))
    seen(est, "ENV", now + timedelta(seconds=55))
    seen(est, "LV1", now + timedelta(seconds=55))
    check_stale(est.session, now + timedelta(seconds=60))
    assert stale_alarms(est) == {cap: "cleared", hx: "active", env: "cleared", lv: "cleared"}


def test_a_disabled_override_clears_and_silences(est: RoomsEstate, instant: datetime) -> None:
    ensure_default_stale_rules(est.session)
    now = instant + timedelta(minutes=60)
    seen(est, "CAP1", now - timedelta(seconds=200))
    check_stale(est.session, now)
    cap = est.device("CAP1").id
    assert stale_alarms(est)[cap] == "active"
    est.session.execute(
        text(
            "INSERT INTO alarm_rule_overrides (rule_id, scope, scope_id, enabled) "
            "SELECT id, 'device', :d, false FROM alarm_rules WHERE code = :c"
        ),
        {"d": est.device("CAP1").id, "c": RULE},
    )
    check_stale(est.session, now + timedelta(seconds=10))
    assert stale_alarms(est)[cap] == "cleared"


def test_household_meters_and_unroomed_devices_are_not_watched(est: RoomsEstate, instant: datetime) -> None:
    ensure_default_stale_rules(est.session)
    check_stale(est.session, instant + timedelta(minutes=60))
    ids = est.session.execute(
        text("SELECT d.code FROM alarms a JOIN devices d ON d.id = a.device_id WHERE a.estate_id = :e"), {"e": est.id}
    ).scalars()
    assert not any(code.endswith("-HW1") for code in ids)


def test_watching_since_restarts_after_a_gap(est: RoomsEstate, instant: datetime) -> None:
    name = f"stale-test-{est.id}"
    t = instant
    assert watching_since(est.session, t, name) == WATCHING_ALL_ALONG  # a new installation judges by its data
    assert watching_since(est.session, t + timedelta(seconds=30), name) == WATCHING_ALL_ALONG
    assert watching_since(est.session, t + timedelta(seconds=30) + WATCH_GAP, name) == WATCHING_ALL_ALONG
    resumed = t + timedelta(minutes=20)  # nobody watched for 17 minutes
    assert watching_since(est.session, resumed, name) == resumed
    assert watching_since(est.session, resumed + timedelta(seconds=30), name) == resumed


def test_after_a_gap_silence_must_last_a_full_limit_to_raise_and_open_alarms_stay(
    est: RoomsEstate, instant: datetime
) -> None:
    ensure_default_stale_rules(est.session)
    now = instant + timedelta(minutes=60)
    seen(est, "ENV", now - timedelta(seconds=300))  # interval 30 s → limit 45 s: stale by its data
    check_stale(est.session, now)
    env = est.device("ENV").id
    assert stale_alarms(est) == {env: "active"}
    seen(est, "CAP1", now - timedelta(seconds=600))  # limit 90 s: stale by its data, silent during the gap
    restarted = now + timedelta(minutes=30)
    check_stale(est.session, restarted, watching_since=restarted)
    assert stale_alarms(est) == {env: "active"}  # CAP1 not raised yet; ENV's open alarm not cleared
    check_stale(est.session, restarted + timedelta(seconds=80), watching_since=restarted)
    assert stale_alarms(est) == {env: "active"}
    check_stale(est.session, restarted + timedelta(seconds=91), watching_since=restarted)
    assert stale_alarms(est) == {env: "active", est.device("CAP1").id: "active"}
