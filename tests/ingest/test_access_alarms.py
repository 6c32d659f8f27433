"""Access alarms raised in the ingest batch (alarms/access_evaluator.py, issue 12 §4), through the pipeline.

Swipes and door events go in as RawMessages; alarms of the estate's own controller come out. Each test
uses its own estate (and the property tests a fresh door per example), so the shared database's other
rows never count.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from alarms.access_evaluator import (
    FORCED_RULE,
    HELD_RULE,
    LOST_CARD_RULE,
    STREAK_RULE,
    AccessEvaluator,
    door_subject,
)
from alarms.access_pack import ensure_access_rules
from core import clock
from dashboards.alarms_view import alarm_list
from ingest.messages import RawMessage
from tests.ingest.conftest import Estate, Harness, make_harness, raw

NOW = clock.now().replace(microsecond=0)
T0 = NOW - timedelta(hours=6)
DOOR = "1-1-main"
_cards = itertools.count(0x10000000)


@pytest.fixture
def access(engine: Engine, estate: Estate) -> Iterator[Harness]:
    """The pipeline with only the access evaluator hooked in, the access rules installed."""
    with Session(engine) as s:
        ensure_access_rules(s)
        s.commit()
    h = make_harness(engine)
    h.pipeline.hooks.append(AccessEvaluator())
    yield h
    h.stop.set()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def swipe(est: Estate, ts: datetime, granted: bool, card: str | None = None, door: str = DOOR) -> RawMessage:
    uid = card or f"{next(_cards):08X}"
    body = {"v": 1, "ts": ts.isoformat(), "door": door, "card": uid, "granted": granted}
    if not granted:
        body["reason"] = "not_in_acl"
    return raw(est.topic(est.controller, "swipe"), body)


def door_event(est: Estate, ts: datetime, event: str, door: str = DOOR) -> RawMessage:
    return raw(est.topic(est.controller, "door"), {"v": 1, "ts": ts.isoformat(), "door": door, "event": event})


def alarms(est: Estate, rule: str, subject: str | None = None) -> list[tuple[Any, ...]]:
    """(state, raised_at, cleared_at, severity) of this estate's alarms of `rule`, oldest first."""
    rows = est.rows(
        "SELECT a.state, a.raised_at, a.cleared_at, a.severity, a.subject, a.detail FROM alarms a "
        "JOIN alarm_rules r ON r.id = a.rule_id JOIN estates e ON e.id = a.estate_id "
        "WHERE e.code = :estate AND r.code = :rule AND (CAST(:subject AS text) IS NULL OR a.subject = :subject) "
        "ORDER BY a.raised_at, a.id",
        rule=rule,
        subject=subject,
    )
    return [tuple(r) for r in rows]


def subject(est: Estate, door: str = DOOR) -> str:
    return door_subject(est.device_id(est.controller), door)


# --- denied streak --------------------------------------------------------------------------------


def test_five_denied_swipes_raise_once_and_four_do_not(access: Harness, estate: Estate) -> None:
    assert access.commit([swipe(estate, at(i), False) for i in range(4)])
    assert alarms(estate, STREAK_RULE) == []
    assert access.commit([swipe(estate, at(4), False)])
    assert access.commit([swipe(estate, at(5), False), swipe(estate, at(6), False)])  # the run goes on: same episode
    rows = alarms(estate, STREAK_RULE)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [("active", at(4), None, "alarm", subject(estate))]
    assert rows[0][5]["door"] == DOOR


def test_a_granted_swipe_clears_and_breaks_the_run(access: Harness, estate: Estate) -> None:
    assert access.commit([swipe(estate, at(i), False) for i in range(5)])
    assert access.commit([swipe(estate, at(10), True)])
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(4), at(10))]
    # Four more denied after the granted swipe are a new run of four: nothing.
    assert access.commit([swipe(estate, at(20 + i), False) for i in range(4)])
    assert len(alarms(estate, STREAK_RULE)) == 1


def test_granted_swipes_between_denied_ones_mean_no_streak(access: Harness, estate: Estate) -> None:
    msgs = [swipe(estate, at(i), i % 3 == 2) for i in range(12)]  # D D G D D G …
    assert access.commit(msgs)
    assert alarms(estate, STREAK_RULE) == []


def test_door_events_and_other_doors_do_not_break_or_feed_a_run(access: Harness, estate: Estate) -> None:
    msgs = [swipe(estate, at(i), False) for i in range(3)]
    msgs += [swipe(estate, at(3), True, door="other"), door_event(estate, at(3.5), "closed")]
    msgs += [swipe(estate, at(4 + i), False) for i in range(2)]
    assert access.commit(msgs)
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("active", at(5), None)]
    assert alarms(estate, STREAK_RULE, subject(estate, "other")) == []


def test_redelivered_batch_raises_nothing_new(access: Harness, estate: Estate) -> None:
    batch = [swipe(estate, at(i), False) for i in range(5)]
    assert access.commit(batch)
    assert access.commit([swipe(estate, at(10), True)])
    first = alarms(estate, STREAK_RULE)
    # The broker delivers the first batch again (and the granted one): both are duplicates.
    again = [raw(m.topic, m.payload) for m in batch]
    assert access.commit(again)
    assert access.commit([*again, swipe(estate, at(20), False)])
    assert alarms(estate, STREAK_RULE) == first
    assert access.health.counters.duplicate == 10


def test_device_time_decides_consecutive_under_late_arrival(access: Harness, estate: Estate) -> None:
    # Four denied, then a granted later in device time; the fifth denied (between them) arrives late:
    # five consecutive in device time, an episode already over when it is seen.
    assert access.commit([swipe(estate, at(i), False) for i in range(4)] + [swipe(estate, at(10), True)])
    assert alarms(estate, STREAK_RULE) == []
    assert access.commit([swipe(estate, at(5), False)])
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(5), at(10))]
    # A later stray denied swipe inside that cleared episode raises nothing more.
    assert access.commit([swipe(estate, at(6), False)])
    assert len(alarms(estate, STREAK_RULE)) == 1


def test_a_late_granted_swipe_inside_the_run_clears_it(access: Harness, estate: Estate) -> None:
    assert access.commit([swipe(estate, at(i), False) for i in range(6)])
    assert [r[0] for r in alarms(estate, STREAK_RULE)] == ["active"]
    # A granted swipe at t=2.5 arrives late: the run after it is t3..t5, three swipes — no streak now.
    assert access.commit([swipe(estate, at(2.5), True)])
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(4), at(4))]
    # Two more denied complete a new run of five (t3..t7): a new episode from its fifth swipe.
    assert access.commit([swipe(estate, at(6), False), swipe(estate, at(7), False)])
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(4), at(4)), ("active", at(7), None)]


def test_late_denied_swipes_refilling_a_split_run_raise_again(access: Harness, estate: Estate) -> None:
    # Arrived: denied at 0-3 and 9 (five, raised at 9); then the granted swipe at 4 splits them; then the
    # denied 5-8 arrive: in device time the run 5..9 is five again, going on, so an alarm is open again.
    assert access.commit([swipe(estate, at(i), False) for i in (0, 1, 2, 3, 9)])
    assert access.commit([swipe(estate, at(4), True)])
    rows = estate.rows(
        "SELECT a.state, a.clear_reason FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
        "WHERE r.code = :rule AND a.subject = :s",
        rule=STREAK_RULE,
        s=subject(estate),
    )
    assert [tuple(r) for r in rows] == [("cleared", "late_event_split")]
    assert access.commit([swipe(estate, at(i), False) for i in (5, 6, 7, 8)])
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(9), at(9)), ("active", at(9), None)]


def test_two_episodes_in_one_batch_are_both_recorded(access: Harness, estate: Estate) -> None:
    msgs = [swipe(estate, at(i), False) for i in range(5)] + [swipe(estate, at(5), True)]
    msgs += [swipe(estate, at(6 + i), False) for i in range(5)]
    random.Random(1).shuffle(msgs)  # arrival order within a batch does not matter, device time does
    assert access.commit(msgs)
    assert [r[:3] for r in alarms(estate, STREAK_RULE)] == [("cleared", at(4), at(5)), ("active", at(10), None)]


# --- door events ----------------------------------------------------------------------------------


def test_forced_open_is_critical_held_open_a_warning_closed_clears_both(access: Harness, estate: Estate) -> None:
    assert access.commit([door_event(estate, at(0), "held_open"), door_event(estate, at(1), "forced_open")])
    assert [r[:4] for r in alarms(estate, HELD_RULE)] == [("active", at(0), None, "warning")]
    assert [r[:4] for r in alarms(estate, FORCED_RULE)] == [("active", at(1), None, "critical")]
    assert access.commit([door_event(estate, at(30), "closed")])
    assert [r[:3] for r in alarms(estate, HELD_RULE)] == [("cleared", at(0), at(30))]
    assert [r[:3] for r in alarms(estate, FORCED_RULE)] == [("cleared", at(1), at(30))]
    # Redelivered: nothing new; a late forced_open inside the cleared episode: nothing new either.
    assert access.commit([door_event(estate, at(1), "forced_open"), door_event(estate, at(2), "forced_open")])
    assert len(alarms(estate, FORCED_RULE)) == 1
    # Forced again after it closed: a second episode.
    assert access.commit([door_event(estate, at(40), "forced_open")])
    assert [r[0] for r in alarms(estate, FORCED_RULE)] == ["cleared", "active"]


def test_a_late_closed_event_clears_and_a_late_forced_and_closed_pair_is_recorded(
    access: Harness, estate: Estate
) -> None:
    assert access.commit([door_event(estate, at(100), "forced_open")])
    assert access.commit([door_event(estate, at(130), "closed")])
    # An earlier episode (t=10..20) reaches us after the later one: recorded, already cleared.
    assert access.commit([door_event(estate, at(20), "closed"), door_event(estate, at(10), "forced_open")])
    assert [r[:3] for r in alarms(estate, FORCED_RULE)] == [("cleared", at(10), at(20)), ("cleared", at(100), at(130))]


# --- lost / revoked cards -------------------------------------------------------------------------


def _card(engine: Engine, estate: str, uid: str, status: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO access_cards (estate_id, card_type, format, uid, holder_name, valid_from, status, "
                    "status_at, status_by, issued_at, issued_by, free, staff_role) "
                    "SELECT id, 'staff', 'mifare4', :uid, '测试', :t, :st, :t, 'test', :t, 'test', true, 'security' "
                    "FROM estates WHERE code = :e RETURNING id"
                ),
                {"uid": uid, "t": T0 - timedelta(days=30), "st": status, "e": estate},
            ).scalar_one()
        )


def test_a_lost_card_used_raises_a_security_event_naming_it(access: Harness, estate: Estate, engine: Engine) -> None:
    lost, revoked, reissued = (f"{uuid.uuid4().int % 2**32:08X}" for _ in range(3))
    lost_id = _card(engine, estate.code, lost, "lost")
    _card(engine, estate.code, revoked, "revoked")
    _card(engine, estate.code, reissued, "lost")
    _card(engine, estate.code, reissued, "active")  # the same UID issued again: the holder's card now
    unknown = f"{uuid.uuid4().int % 2**32:08X}"
    msgs = [swipe(estate, at(1), False, lost), swipe(estate, at(2), False, lost), swipe(estate, at(3), False, revoked)]
    msgs += [swipe(estate, at(4), True, reissued), swipe(estate, at(5), False, unknown)]
    assert access.commit(msgs)
    rows = alarms(estate, LOST_CARD_RULE)
    assert [(r[0], r[1], r[3], r[5]["card"]) for r in rows] == [
        ("active", at(1), "warning", lost[:4] + "****"),
        ("active", at(3), "warning", revoked[:4] + "****"),
    ]
    assert rows[0][4] == f"card:{lost_id}"
    assert lost not in str(rows[0][5])  # the full UID is not in the alarm
    # Used again, redelivered, late: the open alarm stands, nothing new.
    assert access.commit([swipe(estate, at(6), False, lost), swipe(estate, at(0), False, lost)])
    assert len(alarms(estate, LOST_CARD_RULE)) == 2
    # Lost, revoked and unknown cards' denied swipes count toward the door's streak like any other:
    # after the granted swipe at t=4 come t=5 (unknown) and t=6 (lost): with t=7 and t=8, four; t=9 is five.
    assert access.commit([swipe(estate, at(7), False, unknown), swipe(estate, at(8), False, revoked)])
    assert alarms(estate, STREAK_RULE) == []
    assert access.commit([swipe(estate, at(9), False, unknown)])
    assert [r[:2] for r in alarms(estate, STREAK_RULE)] == [("active", at(9))]


# --- property: random sequences against a simple model ---------------------------------------------


def model(decisions: Sequence[bool], threshold: int = 5) -> list[tuple[int, int | None]]:
    """Episodes (index of the threshold-th denied swipe, index of the granted swipe ending it or None)."""
    out: list[tuple[int, int | None]] = []
    run = 0
    for i, granted in enumerate(decisions):
        if granted:
            if run >= threshold:
                out[-1] = (out[-1][0], i)
            run = 0
        else:
            run += 1
            if run == threshold:
                out.append((i, None))
    return out


_doors = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # Mostly denied (a granted swipe one time in six), so runs of five are common.
    decisions=st.lists(st.integers(min_value=0, max_value=5).map(lambda n: n == 0), min_size=0, max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=40),
    redeliver=st.lists(st.booleans(), min_size=1, max_size=40),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_streak_alarms_match_the_model_in_order_with_redeliveries(
    access: Harness,
    estate: Estate,
    decisions: list[bool],
    cuts: list[int],
    redeliver: list[bool],
    seed: int,
) -> None:
    rng = random.Random(seed)
    door = f"p{next(_doors)}"
    msgs = [swipe(estate, at(i), g, door=door) for i, g in enumerate(decisions)]
    # Device-time order, cut into random batches; some batches delivered twice, later and shuffled.
    done: list[RawMessage] = []
    pos = 0
    for k in itertools.count():
        if pos >= len(msgs):
            break
        part = msgs[pos : pos + cuts[k % len(cuts)]]
        pos += len(part)
        batch = list(part)
        if redeliver[k % len(redeliver)] and done:
            batch += [raw(m.topic, m.payload) for m in rng.sample(done, min(len(done), 3))]
        rng.shuffle(batch)
        assert access.commit(batch)
        done += part
    expected = [
        ("active" if end is None else "cleared", at(start), None if end is None else at(end))
        for start, end in model(decisions)
    ]
    assert [r[:3] for r in alarms(estate, STREAK_RULE, subject(estate, door))] == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    decisions=st.lists(st.integers(min_value=0, max_value=4).map(lambda n: n == 0), min_size=0, max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=30),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_streak_alarms_out_of_order_end_in_the_models_state(
    access: Harness, estate: Estate, decisions: list[bool], cuts: list[int], seed: int
) -> None:
    """Any arrival order: at most one open alarm, open exactly when the model's last episode is going,
    and every episode the model has overlaps a recorded alarm (none is missed)."""
    rng = random.Random(seed)
    door = f"q{next(_doors)}"
    msgs = [swipe(estate, at(i), g, door=door) for i, g in enumerate(decisions)]
    rng.shuffle(msgs)
    pos = 0
    for k in itertools.count():
        if pos >= len(msgs):
            break
        part = msgs[pos : pos + cuts[k % len(cuts)]]
        pos += len(part)
        assert access.commit(part)
    rows = alarms(estate, STREAK_RULE, subject(estate, door))
    episodes = model(decisions)
    going = bool(episodes) and episodes[-1][1] is None
    assert [r[0] for r in rows].count("active") == (1 if going else 0)
    for start, end in episodes:
        assert any(
            r[1] <= (at(end) if end is not None else at(10**6)) and (r[2] is None or r[2] >= at(start)) for r in rows
        ), (start, end, rows)


# --- the alarm list shows them by name -------------------------------------------------------------


def test_alarm_list_names_the_rule_the_door_and_the_masked_card(
    access: Harness, estate: Estate, engine: Engine
) -> None:
    uid = f"{uuid.uuid4().int % 2**32:08X}"
    _card(engine, estate.code, uid, "lost")
    msgs = [swipe(estate, at(i), False) for i in range(4)] + [swipe(estate, at(4), False, uid)]
    assert access.commit([*msgs, door_event(estate, at(5), "forced_open"), door_event(estate, at(6), "held_open")])
    (estate_id,) = estate.rows("SELECT id FROM estates WHERE code = :estate")[0]
    with Session(engine) as s:
        zh = alarm_list(s, {estate_id}, "zh", ZoneInfo("Asia/Shanghai"), estate=None, state="open", severity=None)
        en = alarm_list(s, {estate_id}, "en", ZoneInfo("Asia/Shanghai"), estate=None, state="open", severity=None)
    shown_zh = sorted((a["title"], a["metric"], a["severity"]) for a in zh["alarms"])
    assert shown_zh == sorted(
        [
            ("门禁连续刷卡失败（疑似试卡）", f"门 {DOOR}", "alarm"),
            ("门被强行打开", f"门 {DOOR}", "critical"),
            ("门长时间未关", f"门 {DOOR}", "warning"),
            ("挂失/注销卡被使用（安全事件）", f"卡 {uid[:4]}**** · 门 {DOOR}", "warning"),
        ]
    )
    shown_en = sorted((a["title"], a["metric"]) for a in en["alarms"])
    assert shown_en == sorted(
        [
            ("Repeated denied swipes at a door (possible card probing)", f"Door {DOOR}"),
            ("Door forced open", f"Door {DOOR}"),
            ("Door held open", f"Door {DOOR}"),
            ("Lost or revoked card used (security event)", f"Card {uid[:4]}**** · Door {DOOR}"),
        ]
    )
    assert not any("door:" in a["metric"] or "card:" in a["metric"] or uid in a["metric"] for a in zh["alarms"])


def _set_params(engine: Engine, code: str, params: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE alarm_rules SET params = CAST(:p AS jsonb) WHERE code = :c"),
            {"p": json.dumps(params), "c": code},
        )


def test_threshold_is_a_rule_param_and_bad_params_never_stop_ingest(
    access: Harness, estate: Estate, engine: Engine
) -> None:
    try:
        _set_params(engine, STREAK_RULE, {"severity": "alarm", "threshold": 3})
        access.pipeline.hooks[-1] = AccessEvaluator()  # a fresh cache reads the edited row
        assert access.commit([swipe(estate, at(i), False) for i in range(3)])
        assert [r[:2] for r in alarms(estate, STREAK_RULE)] == [("active", at(2))]
        _set_params(engine, STREAK_RULE, {"severity": "alarm", "threshold": "three"})
        access.pipeline.hooks[-1] = AccessEvaluator()
        assert access.commit([swipe(estate, at(10), True), door_event(estate, at(11), "forced_open")])
        assert [r[0] for r in alarms(estate, STREAK_RULE)] == ["active"]  # the bad rule sat this batch out
        assert [r[0] for r in alarms(estate, FORCED_RULE)] == ["active"]  # the others did not
    finally:
        with Session(engine) as s:
            ensure_access_rules(s)  # the pack's params back, for every other test
            s.commit()
