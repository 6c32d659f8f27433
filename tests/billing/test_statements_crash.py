"""The statement run (charging up to the quarter's end, then every household's statement) killed with SIGKILL
at random points and rerun gives exactly the charges and statements of one clean run; two concurrent runs
produce one set. Real PostgreSQL, real processes (`python -m billing.statements`)."""

from __future__ import annotations

import random
import signal
import threading
import time

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from billing import periods, statements
from devkit.billing_crash import KILLS_PER_ROUND, METERS, QUARTER, ROUNDS, load, snapshot, spawn, truncate


def test_sigkill_during_the_statement_run_then_rerun_gives_one_clean_run(fresh_database: str) -> None:
    load(fresh_database)
    started = time.monotonic()
    proc = spawn(fresh_database, statements=True)
    ready = time.monotonic()
    assert proc.wait(timeout=300) == 0
    run_s = time.monotonic() - ready
    expected = snapshot(fresh_database)
    assert len(expected["statements"]) == METERS
    assert sum(s[3] for s in expected["statements"]) == sum(c[6] for c in expected["charges"])
    rnd = random.Random(int(started))
    kills = 0
    for _ in range(ROUNDS):
        truncate(fresh_database)
        for _ in range(KILLS_PER_ROUND):
            proc = spawn(fresh_database, statements=True)
            time.sleep(rnd.uniform(0, run_s))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            kills += 1
            partial = snapshot(fresh_database)  # whatever committed is balanced and a part of the clean run
            assert set(partial["charges"]) <= set(expected["charges"])
        proc = spawn(fresh_database, statements=True)
        assert proc.wait(timeout=300) == 0
        assert snapshot(fresh_database) == expected
    assert kills >= 20


def test_two_concurrent_statement_runs_produce_one_set(fresh_database: str) -> None:
    load(fresh_database)
    engine = create_engine(fresh_database)
    factory = sessionmaker(engine, expire_on_commit=False)
    quarter = periods.parse(QUARTER)
    statements.statement_run(factory, quarter)
    expected = snapshot(fresh_database)
    truncate(fresh_database)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            statements.statement_run(factory, quarter)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert snapshot(fresh_database) == expected
    again = statements.statement_run(factory, quarter)  # and a third, later, rewrites nothing
    assert again.written == 0
    assert snapshot(fresh_database) == expected
    engine.dispose()
