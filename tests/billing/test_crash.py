"""A billing run killed with SIGKILL at random points, then rerun, gives exactly one clean run's charges;
two concurrent runs produce one set. Real PostgreSQL, real processes (`python -m billing.tasks`)."""

from __future__ import annotations

import random
import signal
import threading
import time

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from billing.tasks import billing_run
from devkit.billing_crash import (
    KILLS_PER_ROUND,
    METERS,
    READINGS,
    ROUNDS,
    UP_TO,
    load,
    snapshot,
    spawn,
    truncate,
)


def test_sigkill_at_random_points_then_rerun_gives_one_clean_run(fresh_database: str) -> None:
    load(fresh_database)
    started = time.monotonic()
    proc = spawn(fresh_database)
    ready = time.monotonic()
    assert proc.wait(timeout=300) == 0
    run_s = time.monotonic() - ready
    expected = snapshot(fresh_database)
    # One charge per stretch of like intervals (billing.coalesce), not one per reading: a month, a tariff
    # version, a rollover or the interval across the tariff change each start a new one.
    assert METERS * 2 <= len(expected["charges"]) < METERS * READINGS / 4
    assert [h[3] for h in expected["holds"]] == ["held"]
    assert any(c[3] == "rollover" for c in expected["charges"])
    rnd = random.Random(int(started))
    kills = 0
    for _ in range(ROUNDS):
        truncate(fresh_database)
        for _ in range(KILLS_PER_ROUND):
            proc = spawn(fresh_database)
            time.sleep(rnd.uniform(0, run_s))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
            partial = snapshot(fresh_database)  # whatever committed is balanced and a prefix of the clean run
            assert set(partial["charges"]) <= set(expected["charges"])
        proc = spawn(fresh_database)
        assert proc.wait(timeout=300) == 0
        assert snapshot(fresh_database) == expected
    assert kills >= 20


def test_two_concurrent_runs_produce_one_set(fresh_database: str) -> None:
    load(fresh_database)
    engine = create_engine(fresh_database)
    factory = sessionmaker(engine, expire_on_commit=False)
    billing_run(factory, UP_TO)
    expected = snapshot(fresh_database)
    truncate(fresh_database)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            billing_run(factory, UP_TO)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert snapshot(fresh_database) == expected
    billing_run(factory, UP_TO)  # and a third, later, adds nothing
    assert snapshot(fresh_database) == expected
    engine.dispose()
