"""Device reports through the ingest pipeline (issue 12 §3): a controller's whitelist state from its status and its
acks lands in ``device_whitelist_states`` (newest report wins, redeliveries change nothing); a command the device
answers with anything but "applied" closes as 'refused' with the reason (the first answer wins); refusals and
changed states are announced on ``DEVICE_REPORTS_CHANNEL``.

Each test has an estate of its own (``estate`` fixture) and a Pipeline prepared after it was imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from core import clock
from ingest.messages import RawMessage
from storage.notify import DEVICE_REPORTS_CHANNEL
from storage.whitelist_states import reported_whitelists
from tests.ingest.conftest import Estate, Harness, raw

NOW = clock.now().replace(microsecond=0)
A, B, C = "a" * 64, "b" * 64, "c" * 64


def state(version: int, digest: str, entries: int) -> dict[str, Any]:
    return {"version": version, "digest": digest, "entries": entries}


def status(est: Estate, ts: datetime, wl: dict[str, Any], *, received_at: datetime | None = None) -> RawMessage:
    body = {"v": 1, "ts": ts.isoformat(), "online": True, "whitelist": wl}
    return raw(est.topic(est.controller, "status"), body, received_at=received_at or NOW)


def ack(
    est: Estate, cid: int | str, answer: str, *, at: datetime, device: str | None = None, **extra: Any
) -> RawMessage:
    body = {"v": 1, "command_id": str(cid), "status": answer, **extra}
    return raw(est.topic(device or est.controller, "ack"), body, received_at=at)


def command(est: Estate, device: str, name: str = "whitelist") -> int:
    with est.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO outbox (device_id, topic, payload, attempts, status, sent_at, next_attempt_at) "
                    "VALUES (:d, :t, '{}', 1, 'sent', :at, :due) RETURNING id"
                ),
                {
                    "d": est.device_id(device),
                    "t": f"steward/{est.code}/down/{device}/{name}",
                    "at": NOW,
                    "due": NOW + timedelta(seconds=60),
                },
            ).scalar_one()
        )


def outbox_row(est: Estate, cid: int) -> Any:
    return est.rows("SELECT status, last_error, acked_at, next_attempt_at FROM outbox WHERE id = :i", i=cid)[0]


def stored(est: Estate) -> tuple[int, str, int, datetime, str] | None:
    with Session(est.engine) as s:
        got = reported_whitelists(s, device_ids=[est.device_id(est.controller)]).get(est.device_id(est.controller))
    return None if got is None else (got.version, got.digest, got.entries, got.reported_at, got.via)


@pytest.fixture
def listener(engine: Engine) -> Iterator[psycopg.Connection]:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {DEVICE_REPORTS_CHANNEL}")
        yield conn


def notified(conn: psycopg.Connection, wait_s: float = 0.5) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait_s, stop_after=None)]


# --- whitelist state -----------------------------------------------------------------------------


def test_the_status_on_reconnect_is_stored_and_only_a_newer_report_replaces_it(
    harness: Harness, estate: Estate
) -> None:
    t1, t2 = NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)
    assert stored(estate) is None
    first = status(estate, t1, state(3, A, 10))
    assert harness.commit([first])
    assert stored(estate) == (3, A, 10, t1, "status")
    assert harness.commit([status(estate, t2, state(4, B, 11))])
    assert stored(estate) == (4, B, 11, t2, "status")
    # A late status (older device time) and the first one redelivered never move it back.
    assert harness.commit([status(estate, t1 + timedelta(seconds=30), state(0, C, 0)), first])
    assert stored(estate) == (4, B, 11, t2, "status")


def test_the_newest_report_of_one_batch_wins_whatever_the_order(harness: Harness, estate: Estate) -> None:
    t1, t2 = NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)
    assert harness.commit([status(estate, t2, state(7, B, 2)), status(estate, t1, state(6, A, 1))])
    assert stored(estate) == (7, B, 2, t2, "status")


def test_a_reset_controller_reporting_version_0_is_stored(harness: Harness, estate: Estate) -> None:
    """Newest device time wins, not the highest version: a wiped controller must be seen as wiped."""
    assert harness.commit([status(estate, NOW - timedelta(minutes=5), state(9, A, 300))])
    assert harness.commit([status(estate, NOW - timedelta(minutes=1), state(0, C, 0))])
    assert stored(estate) == (0, C, 0, NOW - timedelta(minutes=1), "status")


def test_an_ack_reports_the_state_once_as_the_first_answer(harness: Harness, estate: Estate) -> None:
    c1, c2 = command(estate, estate.controller), command(estate, estate.controller)
    t = NOW - timedelta(seconds=30)
    assert harness.commit([ack(estate, c1, "applied", at=t, acl_version=8, whitelist=state(8, A, 5))])
    assert stored(estate) == (8, A, 5, t, "ack")
    assert harness.commit([ack(estate, c2, "applied", at=t + timedelta(seconds=5), whitelist=state(9, B, 6))])
    assert stored(estate) == (9, B, 6, t + timedelta(seconds=5), "ack")
    # c1's ack redelivered (QoS 1) later: it arrives last but is no answer any more, so its old state is ignored.
    assert harness.commit([ack(estate, c1, "applied", at=t + timedelta(seconds=9), whitelist=state(8, A, 5))])
    assert stored(estate) == (9, B, 6, t + timedelta(seconds=5), "ack")


def test_an_ack_for_no_outbox_command_or_another_devices_reports_nothing(harness: Harness, estate: Estate) -> None:
    valve = command(estate, estate.meter(0), "valve")
    forged = ack(estate, valve, "applied", at=NOW, whitelist=state(5, A, 1))  # on the controller's topic
    assert harness.commit([forged, ack(estate, "not-ours", "applied", at=NOW, whitelist=state(5, A, 1))])
    assert stored(estate) is None
    assert outbox_row(estate, valve).acked_at is None


def test_a_status_and_an_ack_are_ordered_by_report_time(harness: Harness, estate: Estate) -> None:
    cid = command(estate, estate.controller)
    reconnect = NOW - timedelta(minutes=2)
    assert harness.commit([ack(estate, cid, "applied", at=NOW - timedelta(minutes=1), whitelist=state(5, B, 3))])
    # The reconnect status was published before that ack (device time) but arrives after it.
    assert harness.commit([status(estate, reconnect, state(4, A, 2))])
    assert stored(estate)[:3] == (5, B, 3)  # type: ignore[index]


def test_reads_by_estate(harness: Harness, estate: Estate) -> None:
    assert harness.commit([status(estate, NOW - timedelta(minutes=1), state(2, A, 4))])
    with Session(estate.engine) as s:
        estate_id = s.execute(text("SELECT id FROM estates WHERE code = :c"), {"c": estate.code}).scalar_one()
        got = reported_whitelists(s, estate_id=estate_id)
    assert [(d, w.version, w.via) for d, w in got.items()] == [(estate.device_id(estate.controller), 2, "status")]


# --- refusals ------------------------------------------------------------------------------------


def test_a_refusal_closes_the_command_with_its_reason_and_a_later_applied_is_ignored(
    harness: Harness, estate: Estate
) -> None:
    cid = command(estate, estate.controller)
    refusal = ack(estate, cid, "rejected", at=NOW, reason="version_gap", acl_version=5, whitelist=state(5, A, 9))
    assert harness.commit([refusal])
    row = outbox_row(estate, cid)
    assert (row.status, row.last_error, row.next_attempt_at) == ("refused", "version_gap", None)
    assert row.acked_at is not None
    assert stored(estate) == (5, A, 9, NOW, "ack")  # a refusal says what the controller holds too
    assert harness.commit([ack(estate, cid, "applied", at=NOW + timedelta(seconds=1), whitelist=state(6, B, 9))])
    assert outbox_row(estate, cid).status == "refused"
    assert stored(estate) == (5, A, 9, NOW, "ack")


def test_the_first_answer_in_one_batch_wins(harness: Harness, estate: Estate) -> None:
    refused, applied = command(estate, estate.controller), command(estate, estate.controller)
    assert harness.commit(
        [
            ack(estate, refused, "rejected", at=NOW, reason="stale_version"),
            ack(estate, refused, "applied", at=NOW),
            ack(estate, applied, "applied", at=NOW, reason="staged"),
            ack(estate, applied, "rejected", at=NOW, reason="digest_mismatch"),
        ]
    )
    assert (outbox_row(estate, refused).status, outbox_row(estate, refused).last_error) == ("refused", "stale_version")
    assert (outbox_row(estate, applied).status, outbox_row(estate, applied).last_error) == ("acknowledged", None)


@pytest.mark.parametrize("answer", ["rejected", "expired"])
def test_a_valve_refusal_closes_the_command_with_the_answer_as_reason(
    harness: Harness, estate: Estate, answer: str
) -> None:
    """A valve ack carries no reason (simulators/commands.py): the answer itself is the reason."""
    cid = command(estate, estate.meter(0), "valve")
    assert harness.commit([ack(estate, cid, answer, at=NOW, device=estate.meter(0))])
    row = outbox_row(estate, cid)
    assert (row.status, row.last_error) == ("refused", answer)
    assert stored(estate) is None


def test_a_late_refusal_still_closes_an_expired_command(harness: Harness, estate: Estate) -> None:
    cid = command(estate, estate.controller)
    with estate.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'expired', expired_at = :t WHERE id = :i"), {"t": NOW, "i": cid})
    assert harness.commit([ack(estate, cid, "rejected", at=NOW, reason="invalid")])
    assert (outbox_row(estate, cid).status, outbox_row(estate, cid).last_error) == ("refused", "invalid")


# --- NOTIFY --------------------------------------------------------------------------------------


def test_refusals_and_changed_states_notify_the_device_unchanged_reports_do_not(
    harness: Harness, estate: Estate, listener: psycopg.Connection
) -> None:
    ctl, meter = estate.device_id(estate.controller), estate.device_id(estate.meter(0))
    t1 = NOW - timedelta(minutes=3)
    assert harness.commit([status(estate, t1, state(1, A, 1))])
    assert notified(listener) == [str(ctl)]  # a first report
    assert harness.commit([status(estate, t1 + timedelta(minutes=1), state(1, A, 1))])
    assert notified(listener) == []  # newer, but the same state
    assert harness.commit([status(estate, t1 + timedelta(minutes=2), state(1, B, 1))])
    assert notified(listener) == [str(ctl)]  # the list changed behind the platform's back
    valve, wl = command(estate, estate.meter(0), "valve"), command(estate, estate.controller)
    assert harness.commit(
        [ack(estate, valve, "rejected", at=NOW, device=estate.meter(0)), ack(estate, wl, "applied", at=NOW)]
    )
    assert notified(listener) == [str(meter)]  # the refusal only; an applied ack without a state says nothing
    assert harness.commit([ack(estate, valve, "rejected", at=NOW, device=estate.meter(0))])
    assert notified(listener) == []  # a redelivered refusal closes nothing
