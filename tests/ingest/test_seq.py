"""Per-device ``seq`` gap detection (SeqTracker): unit tests on hand-built batches, and state loading."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from ingest.decode import DecodedBatch
from ingest.seq import RESTART_BELOW, SeqTracker
from tests.ingest.conftest import Estate, new_estate_code
from tests.support.estate import load_small_estate

TS = datetime(2026, 11, 26, tzinfo=UTC)


def batch(**seqs: list[int]) -> DecodedBatch:
    """seqs per device id, written d<id>=[...] in receipt order."""
    out = DecodedBatch()
    for key, values in seqs.items():
        out.seen[int(key[1:])] = (TS, list(values))
    return out


def tracker(**last: int) -> SeqTracker:
    t = SeqTracker()
    t.last = {int(k[1:]): v for k, v in last.items()}
    return t


def scan_commit(t: SeqTracker, b: DecodedBatch) -> list[tuple[int, int, int]]:
    gaps, updates = t.scan(b)
    t.commit(updates)
    return gaps


def test_first_sight_of_a_device_is_no_gap() -> None:
    t = tracker()
    assert scan_commit(t, batch(d1=[17, 18])) == []
    assert t.last == {1: 18}


def test_first_sight_with_a_hole_inside_the_batch() -> None:
    t = tracker()
    assert scan_commit(t, batch(d1=[5, 9])) == [(1, 6, 8)]
    assert t.last == {1: 9}


def test_consecutive_seqs_are_no_gap() -> None:
    t = tracker(d1=10)
    assert scan_commit(t, batch(d1=[11, 12, 13])) == []
    assert scan_commit(t, batch(d1=[14])) == []
    assert t.last == {1: 14}


def test_jump_forward_is_a_gap() -> None:
    t = tracker(d1=10)
    assert scan_commit(t, batch(d1=[11, 15, 16, 20])) == [(1, 12, 14), (1, 17, 19)]
    assert t.last == {1: 20}


def test_gap_between_batches() -> None:
    t = tracker()
    assert scan_commit(t, batch(d1=[1, 2])) == []
    assert scan_commit(t, batch(d1=[5])) == [(1, 3, 4)]


def test_reordering_within_a_batch_is_no_gap() -> None:
    t = tracker(d1=2)
    assert scan_commit(t, batch(d1=[6, 3, 5, 4])) == []
    assert t.last == {1: 6}


def test_duplicates_and_late_seqs_are_no_gap_and_do_not_move_back() -> None:
    t = tracker(d1=50)
    assert scan_commit(t, batch(d1=[50, 50, 49, 12])) == []
    assert t.last == {1: 50}
    assert scan_commit(t, batch(d1=[51, 51])) == []
    assert t.last == {1: 51}


def test_late_seq_after_a_gap_does_not_report_it_again() -> None:
    t = tracker(d1=10)
    assert scan_commit(t, batch(d1=[13])) == [(1, 11, 12)]
    assert scan_commit(t, batch(d1=[11, 12])) == []  # the missing ones arrived late: no new gap
    assert t.last == {1: 13}


def test_device_restart_resets_without_a_gap() -> None:
    t = tracker(d1=5_000)
    assert scan_commit(t, batch(d1=[0, 1, 2])) == []
    assert t.last == {1: 2}
    assert scan_commit(t, batch(d1=[3, 5])) == [(1, 4, 4)]  # detection continues from the new counter


def test_small_step_back_is_late_not_a_restart() -> None:
    prev = RESTART_BELOW + 10
    t = tracker(d1=prev)
    assert scan_commit(t, batch(d1=[11])) == []  # 11 + RESTART_BELOW is not below prev
    assert t.last == {1: prev}
    t = tracker(d1=prev)
    assert scan_commit(t, batch(d1=[9])) == []  # 9 + RESTART_BELOW < prev: a restart
    assert t.last == {1: 9}


def test_restart_inside_one_batch_is_no_gap() -> None:
    # After a database outage a backlog batch holds many messages per device: a restart in it is likely.
    t = tracker(d1=5_000)
    assert scan_commit(t, batch(d1=[5_001, 0, 1])) == []
    assert t.last == {1: 1}


def test_devices_are_independent() -> None:
    t = tracker(d1=1, d2=100)
    gaps = scan_commit(t, batch(d1=[2, 4], d2=[101], d3=[7]))
    assert gaps == [(1, 3, 3)]
    assert t.last == {1: 4, 2: 101, 3: 7}


def test_frames_without_seq_leave_the_state_alone() -> None:
    t = tracker(d1=9)
    gaps, updates = t.scan(batch(d1=[], d2=[]))
    assert (gaps, updates) == ([], {})


def test_scan_remembers_nothing_until_commit() -> None:
    # The batch transaction may roll back: a retry must see the same gaps again.
    t = tracker(d1=1)
    first = t.scan(batch(d1=[5]))
    assert t.last == {1: 1}
    assert t.scan(batch(d1=[5])) == first == ([(1, 2, 4)], {1: 5})


def test_load_reads_last_seq_from_device_state(engine: Engine) -> None:
    est = Estate(new_estate_code("iseq"), engine)
    load_small_estate(engine, est.code, sensors=2, meters=0)
    a, b = est.device_id(est.sensor(0)), est.device_id(est.sensor(1))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO device_state (device_id, last_seen_at, last_seq) VALUES (:a, now(), 41), (:b, now(), NULL)"
            ),
            {"a": a, "b": b},
        )
    t = SeqTracker()
    with engine.connect() as conn:
        t.load(conn)
    assert t.last[a] == 41
    assert b not in t.last
    assert scan_commit(t, batch(**{f"d{a}": [43]})) == [(a, 42, 42)]
