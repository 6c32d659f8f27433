"""Helpers for a ``simulate`` command, and a plain argparse entry point (``python -m simulators.cli``).

The ``steward simulate`` Typer command lives in the composition root (``steward/``); it should only
parse its options with these helpers and call ``simulators.run.run_simulation``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit

from simulators.clock import parse_duration
from simulators.run import RunStats, run_simulation
from simulators.scenarios import SCENARIOS, ScenarioSpec, parse_scenario


def parse_scenarios(values: Sequence[str]) -> list[ScenarioSpec]:
    """Repeated ``--scenario`` options (each may also be comma-separated) → specs; ValueError if unknown."""
    return [parse_scenario(part) for value in values for part in value.split(",") if part.strip()]


def parse_duration_s(text: str | None) -> float | None:
    """``--duration`` text (``3600``, ``90m``, ``6h``, ``2d``) → seconds; None/empty → unbounded."""
    return parse_duration(text).total_seconds() if text else None


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://host:1883`` or ``host:port`` → (host, port)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    return parts.hostname or "localhost", parts.port or 1883


def scenario_help() -> str:
    return "\n".join(f"  {name:<22} {s.summary}" for name, s in SCENARIOS.items())


def format_progress(stats: RunStats) -> str:
    """One status line, e.g. for a live terminal display."""
    f = stats.frames
    return (
        f"sim {stats.sim_now.isoformat(timespec='seconds')}  frames {f.total}  acked {stats.acked}/"
        f"{stats.published}  in-flight {stats.in_flight} (max {stats.max_in_flight})  "
        f"dead-letter {f.by_expect.get('dead_letter', 0)}  quarantine {f.by_expect.get('quarantine', 0)}  "
        f"duplicate {f.by_expect.get('duplicate', 0)}"
        + (f"  valve commands {c.received} (applied {c.applied})" if (c := stats.commands).received else "")
        + (f"  whitelist commands {d.received} (applied {d.applied})" if (d := stats.door_commands).received else "")
        + (f"  [{stats.last_error}]" if stats.last_error else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.cli",
        description="Publish a simulated estate's device traffic to an MQTT broker.",
        epilog="scenarios (NAME[:DEVICE][@OFFSET]):\n" + scenario_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("estate_file")
    parser.add_argument("--broker", default="localhost:1883", help="mqtt://host:port (default localhost:1883)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="max messages/s, 0 = unlimited")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--duration", default=None, help="simulated time to cover, e.g. 3600, 90m, 6h")
    parser.add_argument("--scenario", action="append", default=[], help="repeatable")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument(
        "--empty-whitelists",
        action="store_true",
        help="door controllers start with an empty list (the platform issues every card) instead of made-up cards",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        specs = parse_scenarios(args.scenario)
        duration_s = parse_duration_s(args.duration)
    except ValueError as exc:
        parser.error(str(exc))
    host, port = parse_broker(args.broker)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stats = run_simulation(
        args.estate_file,
        host,
        port,
        seed=args.seed,
        rate=args.rate,
        speed=args.speed,
        duration_s=duration_s,
        scenarios=specs,
        stop_event=stop,
        username=args.username,
        password=args.password,
        initial_cards=not args.empty_whitelists,
        on_progress=lambda s: print(format_progress(s), file=sys.stderr, flush=True),  # noqa: T201
    )
    return 0 if stats.drained else 1


if __name__ == "__main__":
    raise SystemExit(main())
