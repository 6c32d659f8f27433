#!/usr/bin/env python
"""A billing run killed with SIGKILL at random points 50 times, then rerun, gives exactly one clean run:
the same charges, balances, holds, ledger transactions and quarterly statements.

The scenario and its checks are tests/billing/test_crash.py's (30 meters with rollovers, a reset held
for a person, a tariff change and tiers restarting at a month boundary; `python -m billing.tasks` as
the killed process): one clean run gives the expected charges, balances, holds and transaction count;
then ``--rounds`` rounds each start from empty billing tables, kill ``--kills`` runs at a random point
within the clean run's duration (each time checking that what committed is balanced and a subset of
the clean run), and finish with one run that must leave exactly the clean run's snapshot.

The killed process is the quarter's statement run (`python -m billing.statements`), which charges up to
the quarter's end and then writes every household's statement, so a kill lands in either half;
``--charges-only`` kills the plain billing run (`python -m billing.tasks`) instead.

    .venv/bin/python bench/billing_kill.py                  # 10 rounds × 5 kills = 50
    .venv/bin/python bench/billing_kill.py --rounds 2 --kills 2 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import log, pick_server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=10, help="rounds, each ending with a completing run (10)")
    ap.add_argument("--kills", type=int, default=5, help="SIGKILLs per round (5)")
    ap.add_argument("--seed", type=int, help="random seed for the kill points (default: time)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--charges-only", action="store_true", help="kill the billing run, not the statement run")
    args = ap.parse_args(argv)

    from devkit.billing_crash import load, snapshot, spawn, truncate
    from devkit.postgres import create_database, drop_database
    from storage.migrate import upgrade

    server, origin = pick_server()
    url = create_database(server, prefix="steward_bench_kill")
    seed = args.seed if args.seed is not None else int(time.time())
    rnd = random.Random(seed)
    failures: list[str] = []
    kills = 0
    try:
        log(f"database on {origin}; loading the scenario")
        upgrade(url)
        load(url)
        t = time.monotonic()
        proc = spawn(url, statements=not args.charges_only)
        if proc.wait(timeout=600) != 0:
            raise SystemExit("the clean run failed")
        clean_s = time.monotonic() - t
        expected = snapshot(url)
        log(
            f"clean run: {len(expected['charges'])} charges, {len(expected['statements'])} statements"
            f" in {clean_s:.1f} s"
        )
        for r in range(args.rounds):
            truncate(url)
            for _ in range(args.kills):
                proc = spawn(url, statements=not args.charges_only)
                time.sleep(rnd.uniform(0, clean_s))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                kills += 1
                partial = snapshot(url)  # asserts balanced ledger and cached balances
                if not set(partial["charges"]) <= set(expected["charges"]):
                    failures.append(f"round {r + 1}: a killed run committed a charge the clean run does not have")
            proc = spawn(url, statements=not args.charges_only)
            if proc.wait(timeout=600) != 0:
                failures.append(f"round {r + 1}: the completing run failed")
            elif snapshot(url) != expected:
                failures.append(f"round {r + 1}: the rerun differs from the clean run")
            log(f"round {r + 1}/{args.rounds}: {kills} kills so far, {len(failures)} failures")
    finally:
        if args.keep:
            log(f"kept {url}")
        else:
            drop_database(server, url)
    result = {"kills": kills, "rounds": args.rounds, "seed": seed, "clean_run_s": round(clean_s, 2)}
    result |= {"charges": len(expected["charges"]), "statements": len(expected["statements"])}
    result |= {"killed": "billing run" if args.charges_only else "statement run"}
    result |= {"failures": failures, "ok": not failures}
    print(json.dumps({"bench": "billing-kill", **result}))
    return 0 if not failures else 2


if __name__ == "__main__":
    sys.exit(main())
