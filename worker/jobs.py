"""The worker's periodic jobs: what runs, how often, and under which advisory-lock key.

Each job is ``fn(session, now)`` run in a transaction of its own by `worker.runner.Worker`, which
takes ``pg_try_advisory_xact_lock(lock_key)`` first: with several workers running, each job runs in
at most one of them at a time (the others skip that tick).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from alarms.store import OnRaised

if TYPE_CHECKING:
    from notifications.channels import Channel

log = logging.getLogger(__name__)

JobFn = Callable[[Session, datetime], object]

# Advisory-lock keys: one 64-bit namespace for Steward's worker ("STWD" in the high half), one per job.
LOCK_NAMESPACE = 0x5354_5744 << 32
STALE_LOCK = LOCK_NAMESPACE | 1
ROUNDS_LOCK = LOCK_NAMESPACE | 2
ESCALATION_LOCK = LOCK_NAMESPACE | 3
OUTBOX_LOCK = LOCK_NAMESPACE | 4
METERS_LOCK = LOCK_NAMESPACE | 5
PURGE_LOCK = LOCK_NAMESPACE | 6
NOTICES_LOCK = LOCK_NAMESPACE | 7
BILLING_LOCK = LOCK_NAMESPACE | 8
DUNNING_LOCK = LOCK_NAMESPACE | 0x13
NOTIFICATIONS_LOCK = LOCK_NAMESPACE | 0x4E  # 'N'
ACCESS_EXPIRY_LOCK = LOCK_NAMESPACE | 0x41  # 'A'
ACCESS_RETENTION_LOCK = LOCK_NAMESPACE | 0x72  # 'r'
ACCESS_SYNC_LOCK = LOCK_NAMESPACE | 0x53  # 'S'
ACCESS_RECONCILE_LOCK = LOCK_NAMESPACE | 0x52  # 'R'
WARRANTY_LOCK = LOCK_NAMESPACE | 0xB0
DAILY_SUMMARY_LOCK = LOCK_NAMESPACE | 0xD5
ENERGY_LOCK = LOCK_NAMESPACE | 0xE7  # provisional key (issue 15 §4): the energy reports' daily rollup


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    period_s: float
    lock_key: int
    fn: JobFn


def on_raised_hook() -> OnRaised:
    """`tickets.from_alarms.open_for_alarms`: every alarm raised by a job opens its ticket in the same transaction."""
    from tickets.from_alarms import open_for_alarms

    return open_for_alarms


def stale_job(on_raised: OnRaised | None) -> JobFn:
    from alarms.stale import check_stale, watching_since

    def run(session: Session, now: datetime) -> object:
        return check_stale(session, now, on_raised=on_raised, watching_since=watching_since(session, now))

    return run


def rounds_job(on_raised: OnRaised | None) -> JobFn:
    """Equipment rounds (windows, telemetry, manual-round tickets), the missed step of every round, then the
    customer-service rounds' new windows and their tasks: one engine, one lock, one transaction."""
    from alarms.rounds import evaluate_rounds
    from alarms.service_rounds import evaluate_service_rounds

    def run(session: Session, now: datetime) -> object:
        return evaluate_rounds(session, now, on_raised=on_raised), evaluate_service_rounds(session, now)

    return run


def meters_job(on_raised: OnRaised | None) -> JobFn:
    """Meter anomalies that need days of history: night leak, continuous flow, stuck meter, building balance."""
    from alarms.meter_jobs import detect_periodic

    def run(session: Session, now: datetime) -> object:
        return detect_periodic(session, now, on_raised=on_raised)

    return run


def escalation_job(session: Session, now: datetime) -> object:
    """SLA clocks: escalate breached tickets (steward → supervisor → project manager)."""
    from tickets.escalation import escalate_due

    return escalate_due(session, now)


def warranty_job(session: Session, now: datetime) -> object:
    """Warranty tickets whose developer missed the due date: a charge-back to the developer, once each."""
    from tickets.warranty import charge_missed

    return charge_missed(session, now)


def daily_summary_job(session: Session, now: datetime) -> object:
    """Each estate's day (tickets, complaints, rounds, alarms, callbacks) sent at 18:30 local time, once a day."""
    from alarms.daily_summary_notices import send_due

    return send_due(session, now)


def purge_job(session: Session, now: datetime) -> object:
    """Expired browser sessions and login failures no limit counts any more."""
    from accounts.service import purge_expired

    return purge_expired(session, now)


def notices_job(session: Session, now: datetime) -> object:
    """Hot-water notices: draft renewal notices, and restrict/suspend only where and when the law allows."""
    from billing.notices import evaluate_all

    return evaluate_all(session, now)


def dunning_job(session: Session, now: datetime) -> object:
    """Property-fee dunning ladder: each estate's letters and tasks due on its local date (idempotent)."""
    from billing.dunning import advance_all

    return advance_all(session, now)


def notifications_job(
    factory: sessionmaker[Session],
    channels: Mapping[str, Channel],
    *,
    max_attempts: int | None = None,
    backoff_max_s: int | None = None,
) -> JobFn:
    """Send due notification deliveries (`notifications.service.dispatch_due`).

    The job's own session only holds the advisory lock: dispatch_due claims, sends and records in short
    transactions of its own from `factory`, so a slow SMTP server never holds row locks.
    """
    from notifications.service import BACKOFF_MAX, MAX_ATTEMPTS, dispatch_due

    cap = timedelta(seconds=backoff_max_s) if backoff_max_s is not None else BACKOFF_MAX
    tries = max_attempts if max_attempts is not None else MAX_ATTEMPTS

    def run(session: Session, now: datetime) -> object:
        return dispatch_due(factory, channels, now, max_attempts=tries, backoff_cap=cap)

    return run


def access_expiry_job(session: Session, now: datetime) -> object:
    """Access cards whose validity ended become expired; renovation deposits not returned in time are kept."""
    from access.service import expire_due

    return expire_due(session, now)


def access_sync_job(on_raised: OnRaised | None) -> JobFn:
    """Controller sync: applied versions follow the controllers' acks and reports, refusals and mismatches get a
    snapshot, new controllers their first list; then the unsynced alarm (15 min behind) is raised or cleared."""
    from access.sync import track
    from alarms.access_sync import check_unsynced

    def run(session: Session, now: datetime) -> object:
        result = track(session, now)
        return result, check_unsynced(session, now, on_raised=on_raised)

    return run


def access_reconcile_job(session: Session, now: datetime) -> object:
    """The nightly reconciliation: each controller is asked for its whitelist report in its estate's small hours
    (once a night); `access_sync` compares the reported digest and repairs a mismatch with a snapshot."""
    from access.sync import request_reports

    return request_reports(session, now)


def billing_job(session: Session, now: datetime) -> object:
    """Charge every household hot-water meter up to now (catches up meters ingest skipped or never saw),
    then write the statements of each estate's last ended quarter until someone closes it.

    `billing_run` commits meter by meter in sessions of its own (resumable), so it takes the job
    session's engine; the job's transaction only holds the worker lock while it runs. The statements
    come after the charging, so the quarter's charges are all in (ingest charges as readings land; this
    run catches up the rest up to now, past the quarter's end); an open quarter's statements are
    rewritten only where a figure moved (a late reading of a meter that was offline)."""
    from sqlalchemy.orm import sessionmaker

    from billing.statements import statements_due
    from billing.tasks import billing_run

    factory = sessionmaker(session.get_bind(), expire_on_commit=False)
    result = billing_run(factory, now)
    if result.charges:
        log.info(
            "billing run: %d charges, %d fen over %d meters", result.charges, result.amount_fen, len(result.meters)
        )
    for done in statements_due(factory, now):
        if done.written:
            log.info("statements %s: %d written over estates %s", done.quarter, done.written, done.estates)
    return result


def energy_job(session: Session, now: datetime) -> object:
    """Every meter's new readings folded into its consumption per day (facility/energy_rollup.py)."""
    from facility.energy_rollup import refresh

    result = refresh(session, now)
    if result.more:
        log.info("energy rollup: %d readings of %d meters folded, more to come", result.readings, result.meters)
    return result


def access_retention_job(session: Session, now: datetime) -> object:
    """Swipe logs older than their estate's retention (180 days by default) are deleted (PIPL)."""
    from access.retention import purge_swipes

    return purge_swipes(session, now)


def default_jobs(
    dispatcher: JobFn | None = None, *, on_raised: OnRaised | None = None, notifications: JobFn | None = None
) -> list[Job]:
    """Stale check every 30 s, rounds every 60 s, SLA escalation every 60 s, periodic meter anomalies every
    15 min, purge of expired sessions and login failures every 10 min, hot-water notices every 15 min, the
    billing run and the dunning ladder hourly, access-card expiry every minute, swipe-log retention hourly,
    controller sync every 5 s, the nightly whitelist reconciliation checked every 15 min, developer charge-backs
    for missed warranty due dates every 5 min, the 18:30 daily summary checked every minute, the energy reports'
    day rows every 5 min,
    outbox every 2 s (with a dispatcher), notification deliveries
    every 10 s (with a `notifications_job`)."""
    jobs = [
        Job("stale", 30.0, STALE_LOCK, stale_job(on_raised)),
        Job("rounds", 60.0, ROUNDS_LOCK, rounds_job(on_raised)),
        Job("escalation", 60.0, ESCALATION_LOCK, escalation_job),
        # Night windows and daily balances move slowly; every 15 min keeps a new leak within the hour.
        Job("meters", 900.0, METERS_LOCK, meters_job(on_raised)),
        Job("purge", 600.0, PURGE_LOCK, purge_job),
        # Letters go out by the day; hourly means a new day's steps within the hour after midnight.
        Job("dunning", 3600.0, DUNNING_LOCK, dunning_job),
        # Balances move with readings; a restriction waits for a day hour anyway (payments restore at once).
        Job("notices", 900.0, NOTICES_LOCK, notices_job),
        # Ingest charges as readings land; the hourly run catches up what it skipped (a meter locked by
        # a run, a batch charged while the hook was off) and confirmed holds.
        Job("billing", 3600.0, BILLING_LOCK, billing_job),
        # Controllers check a card's end themselves; the status follows within the minute for the register.
        Job("access_expiry", 60.0, ACCESS_EXPIRY_LOCK, access_expiry_job),
        # Retention is counted in days: hourly keeps nothing more than an hour past its limit.
        Job("access_retention", 3600.0, ACCESS_RETENTION_LOCK, access_retention_job),
        # Acks arrive within a second of a change; a NOTIFY from ingest's reports wakes it earlier (worker/wake.py).
        Job("access_sync", 5.0, ACCESS_SYNC_LOCK, access_sync_job(on_raised)),
        # Asks only in each estate's 02:00–05:00 and once a night; every 15 min finds that window.
        Job("access_reconcile", 900.0, ACCESS_RECONCILE_LOCK, access_reconcile_job),
        # Developers' due dates are days away; within five minutes of one is soon enough to bill.
        Job("warranty", 300.0, WARRANTY_LOCK, warranty_job),
        # Due from 18:30 local time; every minute sends it within the minute (and after downtime that evening).
        Job("daily_summary", 60.0, DAILY_SUMMARY_LOCK, daily_summary_job),
        # The energy pages read day rows; five minutes behind the meters (read every 15 min) is current.
        Job("energy", 300.0, ENERGY_LOCK, energy_job),
    ]
    if dispatcher is not None:
        jobs.append(Job("outbox", 2.0, OUTBOX_LOCK, dispatcher))
    if notifications is not None:
        jobs.append(Job("notifications", 10.0, NOTIFICATIONS_LOCK, notifications))
    return jobs


__all__ = [
    "ACCESS_EXPIRY_LOCK",
    "ACCESS_RECONCILE_LOCK",
    "ACCESS_RETENTION_LOCK",
    "ACCESS_SYNC_LOCK",
    "BILLING_LOCK",
    "DAILY_SUMMARY_LOCK",
    "DUNNING_LOCK",
    "ENERGY_LOCK",
    "ESCALATION_LOCK",
    "LOCK_NAMESPACE",
    "METERS_LOCK",
    "NOTIFICATIONS_LOCK",
    "OUTBOX_LOCK",
    "PURGE_LOCK",
    "ROUNDS_LOCK",
    "STALE_LOCK",
    "WARRANTY_LOCK",
    "Job",
    "JobFn",
    "access_expiry_job",
    "access_reconcile_job",
    "access_sync_job",
    "billing_job",
    "daily_summary_job",
    "default_jobs",
    "dunning_job",
    "energy_job",
    "escalation_job",
    "meters_job",
    "notifications_job",
    "on_raised_hook",
    "purge_job",
    "rounds_job",
    "stale_job",
    "warranty_job",
]
