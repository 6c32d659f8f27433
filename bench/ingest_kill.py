#!/usr/bin/env python
"""M17: partitioned ingest (two partitions, two owners and a standby) with an owner SIGKILLed 10 times under
4,000 msg/s; the total-queue oracle must find 0 lost and 0 duplicated. Prints the takeover gap of each kill
(SIGKILL → the first commit of the process that claimed the partition). The scenario is
devkit/partition_kill.py, the one tests/e2e/test_partitions_e2e.py runs with 3 kills.

    .venv/bin/python bench/ingest_kill.py                       # 10 kills at 4,000 msg/s
    .venv/bin/python bench/ingest_kill.py --kills 3 --rate 2000
    .venv/bin/python bench/ingest_kill.py --python-publishers     # the test's publishers (one per estate)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import build_fastpub, log, pick_server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--kills", type=int, default=10, help="owner SIGKILLs (10)")
    ap.add_argument("--rate", type=float, default=4_000, help="publish rate, msg/s (4000)")
    ap.add_argument("--seed", type=int, default=17, help="random seed for the kill points")
    ap.add_argument(
        "--python-publishers",
        action="store_true",
        help="publish from one Python process per estate, as the test does, instead of fastpub",
    )
    ap.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = ap.parse_args(argv)
    os.environ.setdefault("STEWARD_ENV", "testing")

    from devkit.partition_kill import run_m17
    from devkit.postgres import create_database, drop_database
    from steward.broker import MosquittoProcess
    from storage.migrate import upgrade

    server, origin = pick_server()
    url = create_database(server, prefix="steward_bench_m17")
    tmp = Path(tempfile.mkdtemp(prefix="steward-m17-"))
    broker = MosquittoProcess(tmp / "mosquitto")
    try:
        log(f"database on {origin}; broker and three ingest processes under {tmp}")
        upgrade(url)
        broker.start()
        fastpub = None if args.python_publishers else build_fastpub(tmp)
        result = run_m17(
            url,
            "127.0.0.1",
            broker.port,
            tmp / "logs",
            kills=args.kills,
            rate=args.rate,
            seed=args.seed,
            fastpub=fastpub,
        )
    finally:
        broker.kill()
        if not args.keep:
            drop_database(server, url)
    v = result.verdict
    print(result)
    gaps = sorted(result.gaps_s)
    print(
        json.dumps(
            {
                "bench": "ingest-kill-m17",
                "kills": result.kills,
                "kills_under_load": result.kills_under_load,
                "published": result.published,
                "publish_rate": round(result.publish_rate, 1),
                "acked": v.acked,
                "lost": len(v.lost),
                "duplicated": len(v.duplicated),
                "unexpected": len(v.unexpected),
                "takeover_gap_s": {
                    "each": [round(g, 3) for g in result.gaps_s],
                    "median": round(statistics.median(gaps), 3) if gaps else None,
                    "max": round(gaps[-1], 3) if gaps else None,
                },
            }
        )
    )
    ok = not (v.lost or v.duplicated or v.unexpected) and result.kills == args.kills
    if result.kills_under_load < result.kills:
        log(f"warning: only {result.kills_under_load} of {result.kills} kills happened while the load ran")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
