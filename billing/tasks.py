"""The billing run: resumable and idempotent, one transaction per meter.

`billing_run(factory, up_to)` charges every household hot-water meter up to `up_to`. Meters are
charged and committed in groups of `GROUP` (`coalesce.charge_meters_coalesced`, each meter under its advisory
lock, taken in id order), so a run killed at any point leaves every meter either fully charged up to
`up_to` or untouched since its group's last commit; running it again finishes the job and writes
nothing twice. Two runs at once take turns group by group and produce one set of charges. Groups,
not single meters, because a quarter's run over meters ingest has already charged is then a few
queries per 50 meters instead of some fifteen per meter.

`python -m billing.tasks DATABASE_URL UP_TO_ISO [ESTATE_ID]` runs it once (used by the crash tests).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from billing.charging import RunResult, meters_to_bill
from billing.coalesce import charge_meters_coalesced

GROUP = 50  # meters per transaction


def billing_run(
    factory: Callable[[], Session],
    up_to: datetime,
    *,
    estate_id: int | None = None,
    on_meter: Callable[[int], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> RunResult:
    """Charge every household hot-water meter up to `up_to`, committing meter by meter.

    ``shard=(k, n)`` charges only the meters with ``id % n == k``: n processes with k = 0…n−1 share
    one run (each meter is charged under its own lock either way)."""
    if up_to.tzinfo is None:
        raise ValueError("up_to needs a timezone")
    with factory() as session:
        meters = meters_to_bill(session, estate_id)
    if shard is not None:
        k, n = shard
        meters = [m for m in meters if m % n == k]
    run = RunResult()
    for i in range(0, len(meters), GROUP):
        group = meters[i : i + GROUP]
        with factory() as session, session.begin():
            run.meters.extend(charge_meters_coalesced(session, dict.fromkeys(group, up_to), wait=True))
        if on_meter is not None:
            for device_id in group:
                on_meter(device_id)
    return run


def main(argv: list[str]) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    url, up_to = argv[0], datetime.fromisoformat(argv[1])
    estate_id = int(argv[2]) if len(argv) > 2 else None
    engine = create_engine(url)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    result = billing_run(sessionmaker(engine, expire_on_commit=False), up_to, estate_id=estate_id)
    sys.stdout.write(f"done {result.charges} charges, {result.amount_fen} fen\n")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
