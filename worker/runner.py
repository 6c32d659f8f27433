"""The worker process: periodic jobs, each one transaction under a PostgreSQL advisory lock.

`Worker.run(stop)` loops until `stop` is set, running every job when its period has elapsed
(monotonic time; a job that overran is not run twice to catch up). `Worker.run_once(now)` runs each
job once, for tests and for `steward run worker --once`. A job that raises is logged and rolled back;
the others carry on and it runs again next period. Business time comes from `core.clock.now()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core import clock
from core.settings import Settings
from worker.jobs import Job, default_jobs, on_raised_hook

log = logging.getLogger(__name__)

# Called after each attempt with the job name and whether it ran (False: another worker held its lock).
OnResult = Callable[[str, bool], None]


class Worker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        jobs: Sequence[Job],
        *,
        on_result: OnResult | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.factory = factory
        self.jobs = list(jobs)
        self.on_result = on_result
        self.runs: dict[str, int] = {j.name: 0 for j in self.jobs}
        self.failures: dict[str, int] = {j.name: 0 for j in self.jobs}
        # Unix time of each job's last successful run in this process (worker/metrics.py). Until the first
        # one it is the start: a job that never succeeds turns late one threshold after the start, not never.
        self.wall = wall
        self.started_at = wall()
        self.last_success: dict[str, float] = {j.name: self.started_at for j in self.jobs}
        # Jobs whose last run said it left work for the next (a result with ``more`` true, e.g. the energy rollup's
        # first backfill): due again as soon as the other due jobs had their turn, not a period later.
        self.more: set[str] = set()
        # Jobs asked to run now (a NOTIFY said there is work, worker/wake.py) and the event that cuts the wait short.
        self._poked: set[str] = set()
        self._poke_lock = threading.Lock()
        self._wake = threading.Event()

    def poke(self, *names: str) -> None:
        """Run these jobs as soon as the loop is free instead of at their next period (any thread)."""
        with self._poke_lock:
            self._poked.update(n for n in names if n in self.runs)
        self._wake.set()

    def run_job(self, job: Job, now: datetime | None = None) -> bool:
        """Run one job in its own transaction if no other worker holds its lock; True if it ran."""
        ran = False
        result: object = None
        try:
            with self.factory() as session, session.begin():
                if not session.scalar(select(func.pg_try_advisory_xact_lock(job.lock_key))):
                    log.debug("job %s is running in another worker; skipped", job.name)
                else:
                    result = job.fn(session, now or clock.now())
                    ran = True
        except Exception:
            self.failures[job.name] += 1
            log.exception("job %s failed (rolled back); next try in %.0f s", job.name, job.period_s)
            ran = False
        else:
            if ran:
                self.runs[job.name] += 1
                self.last_success[job.name] = self.wall()
                if getattr(result, "more", False) is True:
                    self.more.add(job.name)
                else:
                    self.more.discard(job.name)
        if self.on_result is not None:
            self.on_result(job.name, ran)
        return ran

    def run_once(self, now: datetime | None = None) -> dict[str, bool]:
        """Run every job once (in order); returns which ran."""
        return {job.name: self.run_job(job, now) for job in self.jobs}

    def run(self, stop: threading.Event) -> None:
        """Run jobs on their periods until `stop` is set; the job in progress finishes first."""
        next_due = {job.name: 0.0 for job in self.jobs}
        log.info("worker started: %s", ", ".join(f"{j.name}/{j.period_s:g}s" for j in self.jobs))
        while not stop.is_set():
            self._wake.clear()
            with self._poke_lock:
                poked, self._poked = self._poked, set()
            for job in self.jobs:
                if stop.is_set():
                    break
                if job.name in poked or time.monotonic() >= next_due[job.name]:
                    self.run_job(job)
                    next_due[job.name] = time.monotonic() + (0.0 if job.name in self.more else job.period_s)
            wait = min(next_due.values()) - time.monotonic()
            if wait > 0 and not stop.is_set():
                # A poke (or stop, which the caller's watcher turns into a poke) ends the wait early.
                self._wake.wait(wait)
        log.info("worker stopped: runs %s, failures %s", self.runs, self.failures)


def run_worker(settings: Settings, engine: Engine, stop: threading.Event, *, mqtt: bool = True) -> Worker:
    """The `steward run worker` process: default jobs, alarms open tickets, outbox published over MQTT,
    notification deliveries sent on the channels the settings switch on."""
    from notifications.channels import channels_from_settings
    from storage.db import make_sessionmaker
    from worker.jobs import notifications_job
    from worker.metrics import serve_metrics
    from worker.outbox import MqttPublisher, OutboxDispatcher
    from worker.wake import WakeListener, conninfo

    publisher = MqttPublisher.from_settings(settings).start() if mqtt else None
    try:
        on_raised = on_raised_hook()
        dispatcher = (
            OutboxDispatcher(
                publisher,
                ack_timeout_s=settings.outbox_ack_timeout_s,
                max_attempts=settings.outbox_max_attempts,
                on_raised=on_raised,
            )
            if publisher is not None
            else None
        )
        factory = make_sessionmaker(engine)
        notify = notifications_job(
            factory,
            channels_from_settings(settings),
            max_attempts=settings.notify_max_attempts,
            backoff_max_s=settings.notify_backoff_max_s,
        )
        heartbeat = settings.worker_heartbeat_file
        worker = Worker(
            factory,
            default_jobs(dispatcher, on_raised=on_raised, notifications=notify),
            on_result=(lambda name, ran: heartbeat.touch()) if heartbeat else None,
        )
        listener = WakeListener(conninfo(engine), worker.poke).start()
        port = settings.worker_metrics_port
        metrics = serve_metrics(worker, port, settings.metrics_host) if port else None

        def wake_on_stop() -> None:
            stop.wait()
            worker.poke()

        threading.Thread(target=wake_on_stop, name="worker-stop", daemon=True).start()
        try:
            worker.run(stop)
        finally:
            listener.stop()
            if metrics is not None:
                metrics.shutdown()
        return worker
    finally:
        if publisher is not None:
            publisher.stop()


__all__ = ["OnResult", "Worker", "run_worker"]
