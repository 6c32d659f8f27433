#!/usr/bin/env python
"""Card revocation → the door controller denies the card, while the estate's normal load runs (issue 12).

One run, all throwaway unless --keep:

1. a fresh, migrated database (as the other benches: $STEWARD_BENCH_DATABASE_URL, the local server or the
   embedded one); the sample estate (``--estate``, default examples/estate.yaml) imported, its doors made,
   and the simulated residents' cards (``Fleet.cards()``) issued on the platform (steward/demo_cards.py);
2. a Mosquitto with Steward's configuration on a free port, ``steward run ingest`` and ``steward run worker``
   (outbox dispatcher woken by NOTIFY, the access_sync job) as child processes;
3. the simulator in a thread, realtime: every meter, sensor and door controller of the estate publishing its
   normal load (readings, heartbeats, residents' swipes) through Mosquitto into ingest; the controllers start
   with empty whitelists (``initial_cards=False``) and the bench waits until every one holds the platform's
   list (access_controller_sync: applied = desired, nothing pending);
4. ``--revocations`` cards picked at random (``--seed``) are reported lost (`access.service.report_lost`, the
   card desk's 挂失) at random times (gaps uniform in [0, 2 × ``--gap``] s, so some overlap). For each, the
   clock starts just before the transaction's COMMIT (pessimistic by the commit's own few ms) and stops when
   the controller publishes its decision DENYING that card: from the commit on, the bench presents the card at
   its controller every ``--present-interval`` s (`simulators.DoorControls.present`) and a bench MQTT
   subscriber on the controller's ``swipe`` channel takes the arrival of the first ``granted: false`` for it.

Why presenting repeatedly rather than watching the controller's applied version: the figure is what a
person at the door sees — the controller's own decision, from its own list, as it goes out on the wire —
not the platform's bookkeeping (an ack, a version number) that could say "applied" for a list that still
grants the card. Its resolution is the present interval (50 ms by default: the figure is at most that much
late, never early), plus the loopback hop from the simulator to the bench through Mosquitto (≈1 ms).

Prints a Rich table and, last, one JSON line: p50, p99, max and the count of measured revocations (target
p99 ≤ 3 s), the ones that never denied within ``--timeout`` (exit 2 when any), the load the simulator
published meanwhile and the sync state at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/: put the repository first (as bench/billing.py does).
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench.common import BenchError, Harness, figures_table, log, run_bench  # noqa: E402

TARGET_P99_S = 3.0
SAMPLE_ESTATE = ROOT / "examples" / "estate.yaml"


@dataclass
class Probe:
    uid: str
    controller: str
    card_id: int
    committed: float = 0.0  # time.time() just before COMMIT
    denied: float | None = None  # arrival of the controller's first denial of the card


@dataclass
class Figures:
    config: dict[str, Any]
    probes: list[Probe] = field(default_factory=list)
    cards: int = 0
    controllers: int = 0
    converge_s: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)
    synced_at_end: bool = False
    presents: int = 0

    def latencies(self) -> list[float]:
        return sorted(p.denied - p.committed for p in self.probes if p.denied is not None)

    def missed(self) -> list[Probe]:
        return [p for p in self.probes if p.denied is None]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (the p99 of 100 is the 99th value, not an interpolation)."""
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * q // 100))
    return values[int(rank) - 1]


class DenialWatch:
    """A bench MQTT subscriber on the controllers' swipe channel: notes the first denial of each watched card."""

    def __init__(self, host: str, port: int, estate: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.watched: dict[str, Probe] = {}
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-cards-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_a: c.subscribe(f"steward/{estate}/up/+/swipe", qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def watch(self, probe: Probe) -> None:
        with self._lock:
            self.watched[probe.uid] = probe

    def pending(self) -> list[Probe]:
        with self._lock:
            return list(self.watched.values())

    def drop(self, probe: Probe) -> None:
        with self._lock:
            self.watched.pop(probe.uid, None)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        at = time.time()
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(body, dict) or body.get("granted") is not False:
            return
        with self._lock:
            probe = self.watched.pop(str(body.get("card", "")).upper(), None)
        if probe is not None:
            probe.denied = at

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CardsBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.h = Harness(args)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.figures = Figures(
            config={
                "estate": str(args.estate),
                "revocations": args.revocations,
                "gap_s": args.gap,
                "present_interval_s": args.present_interval,
                "seed": args.seed,
                "timeout_s": args.timeout,
            }
        )

    def cleanup(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)
        self.h.cleanup()

    # -- setup ----------------------------------------------------------------------------------

    def _worker(self, db_url: str, mqtt_url: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "STEWARD_ENV": "testing",
            "STEWARD_DATABASE_URL": db_url,
            "STEWARD_MQTT_URL": mqtt_url,
            "STEWARD_MQTT_CLIENT_ID": f"bench-worker-{uuid.uuid4().hex[:8]}",
            "STEWARD_LOG_LEVEL": "INFO",
        }
        log_file = open(self.h.tmp / "worker.log", "wb")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            [sys.executable, "-m", "steward", "run", "worker"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        self.h.running.append(proc)
        return proc

    def _sync_state(self, factory: Any, controller_ids: list[int]) -> tuple[int, int]:
        """(controllers synced, controllers tracked) among ``controller_ids``."""
        from sqlalchemy import select

        from storage.models import AccessControllerSync

        with factory() as s:
            rows = s.scalars(
                select(AccessControllerSync).where(AccessControllerSync.controller_id.in_(controller_ids))
            ).all()
        synced = sum(1 for r in rows if r.applied_version == r.desired_version > 0 and r.pending_since is None)
        return synced, len(rows)

    def run(self) -> Figures:
        from sqlalchemy import create_engine, select
        from sqlalchemy.orm import sessionmaker

        from core import clock
        from facility.importer import import_estate
        from protocol.estate_file import load_estate_file
        from simulators import Fleet, run_simulation
        from simulators.controls import DoorControls
        from simulators.run import RunStats
        from steward.demo_cards import issue_fleet_cards, report_lost
        from storage.models import Device, Estate

        args, f = self.args, self.figures
        self.h.check_idle()
        db_url = self.h.create_database(f.config)
        engine = create_engine(db_url)
        self.h.on_cleanup("dispose engine", engine.dispose)
        factory = sessionmaker(engine, expire_on_commit=False)
        doc = load_estate_file(args.estate)
        estate_code = doc.estate.code
        residents = Fleet(doc, seed=args.seed, start=clock.now(), initial_cards=False).cards()
        with factory() as s, s.begin():
            import_estate(s, doc)
            estate_id = s.scalars(select(Estate.id).where(Estate.code == estate_code)).one()
            issued, _ = issue_fleet_cards(s, estate_id, residents, clock.now())
            controller_ids = list(
                s.scalars(select(Device.id).where(Device.estate_id == estate_id, Device.kind == "door_controller"))
            )
        f.cards, f.controllers = len(issued), len(controller_ids)
        log(f"{estate_code}: {len(issued)} cards issued for {len(controller_ids)} controllers")
        if len(issued) < args.revocations:
            raise BenchError(f"only {len(issued)} cards to revoke, {args.revocations} asked")

        broker = self.h.start_broker("broker")
        self.h.start_ingest(db_url, broker)
        worker = self._worker(db_url, broker.url)
        watch = DenialWatch("127.0.0.1", broker.port, estate_code)
        self.h.on_cleanup("close the bench subscriber", watch.close)
        if not watch.subscribed.wait(10):
            raise BenchError("the bench's MQTT subscriber did not subscribe")

        controls = DoorControls()
        progress: list[RunStats] = []
        sim = threading.Thread(
            target=run_simulation,
            args=(args.estate, "127.0.0.1", broker.port),
            kwargs={
                "seed": args.seed,
                "speed": 1.0,
                "stop_event": self.stop,
                "on_progress": lambda s: progress.append(s) if not progress else None,
                "client_id": f"bench-cards-sim-{uuid.uuid4().hex[:8]}",
                "initial_cards": False,
                "controls": controls,
            },
            name="bench-cards-sim",
            daemon=True,
        )
        sim.start()
        self.threads.append(sim)

        started = time.monotonic()
        while True:
            synced, _ = self._sync_state(factory, controller_ids)
            if synced == len(controller_ids):
                break
            if worker.poll() is not None:
                raise BenchError(f"the worker exited with {worker.returncode}; see {self.h.tmp / 'worker.log'}")
            if time.monotonic() - started > args.converge_timeout:
                raise BenchError(f"only {synced} of {len(controller_ids)} controllers synced after the first issue")
            time.sleep(0.2)
        f.converge_s = time.monotonic() - started
        log(f"all {len(controller_ids)} controllers synced in {f.converge_s:.1f} s; revoking {args.revocations} cards")
        published0 = progress[0].published if progress else 0
        t_load0 = time.monotonic()

        # The prober: presents every watched card at its controller until the controller denies it.
        def present_loop() -> None:
            while not self.stop.wait(args.present_interval):
                for probe in watch.pending():
                    controls.present(probe.controller, probe.uid)
                    f.presents += 1

        prober = threading.Thread(target=present_loop, name="bench-cards-present", daemon=True)
        prober.start()
        self.threads.append(prober)

        rnd = random.Random(args.seed)
        picked = rnd.sample(issued, args.revocations)
        for card in picked:
            time.sleep(rnd.uniform(0, 2 * args.gap))
            probe = Probe(card.uid, card.controller, card.card_id)
            with factory() as s:
                report_lost(s, card.card_id)
                s.flush()
                probe.committed = time.time()
                s.commit()
            watch.watch(probe)
            f.probes.append(probe)
            self._expire(watch, args.timeout)
        deadline = time.monotonic() + args.timeout
        while watch.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._expire(watch, 0)
        wall = time.monotonic() - t_load0
        stats = progress[0] if progress else None
        if stats is not None:
            f.load = {
                "published": stats.published - published0,
                "msg_per_s": round((stats.published - published0) / wall, 1) if wall else 0.0,
                "seconds": round(wall, 1),
            }
        # Every controller converges on the revocations' lists too (nothing left pending behind the figure).
        end = time.monotonic() + 30
        while time.monotonic() < end:
            synced, _ = self._sync_state(factory, controller_ids)
            if synced == len(controller_ids):
                f.synced_at_end = True
                break
            time.sleep(0.2)
        return f

    @staticmethod
    def _expire(watch: DenialWatch, timeout: float) -> None:
        now = time.time()
        for probe in watch.pending():
            if now - probe.committed > timeout:
                watch.drop(probe)


def report(f: Figures, args: argparse.Namespace) -> None:
    lat = f.latencies()
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    worst = lat[-1] if lat else float("nan")
    console, table, row = figures_table("card revocation → controller denies the card")
    row("cards issued / controllers", f"{f.cards} / {f.controllers}")
    row("first sync (empty → every list)", f"{f.converge_s:.1f} s")
    row("revocations measured", f"{len(lat)} of {len(f.probes)}", str(len(f.probes)), len(lat) == len(f.probes))
    row("p50", f"{p50 * 1000:.0f} ms")
    row("p99", f"{p99 * 1000:.0f} ms", f"≤ {TARGET_P99_S * 1000:.0f} ms", p99 <= TARGET_P99_S)
    row("max", f"{worst * 1000:.0f} ms")
    row("load published meanwhile", f"{f.load.get('published', 0)} msgs ({f.load.get('msg_per_s', 0)}/s)")
    row("controllers synced at the end", str(f.synced_at_end), "True", f.synced_at_end)
    console.print(table)
    out = {
        "bench": "cards",
        "config": f.config,
        "cards": f.cards,
        "controllers": f.controllers,
        "converge_s": round(f.converge_s, 3),
        "revocations": len(f.probes),
        "count": len(lat),
        "missed": [p.uid for p in f.missed()],
        "p50_s": round(p50, 4) if lat else None,
        "p99_s": round(p99, 4) if lat else None,
        "max_s": round(worst, 4) if lat else None,
        "target_p99_s": TARGET_P99_S,
        "ok": bool(lat) and p99 <= TARGET_P99_S and not f.missed(),
        "presents": f.presents,
        "load": f.load,
        "synced_at_end": f.synced_at_end,
    }
    print(json.dumps(out), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--estate", type=Path, default=SAMPLE_ESTATE, help="estate file (default examples/estate.yaml)")
    ap.add_argument("--revocations", type=int, default=100, help="cards reported lost (default 100)")
    ap.add_argument("--gap", type=float, default=1.0, help="mean seconds between revocations (default 1)")
    ap.add_argument("--present-interval", type=float, default=0.05, help="seconds between presents of a card")
    ap.add_argument("--seed", type=int, default=7, help="which cards, when, and the simulator's seed")
    ap.add_argument("--timeout", type=float, default=30.0, help="a revocation not denied by then is missed")
    ap.add_argument("--converge-timeout", type=float, default=120.0, help="seconds for the first sync")
    ap.add_argument("--quick", action="store_true", help="a tiny run: 5 revocations, 0.3 s apart")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--tmp-dir", default=None, help="where the temp dir goes")
    args = ap.parse_args(argv)
    if args.quick:
        args.revocations, args.gap = 5, 0.3
    # What bench.common.Harness expects.
    args.window, args.ingest_env, args.no_broker_persistence = 1000, [], False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = CardsBench(args)
    return run_bench(bench, lambda f: report(f, args), lambda f: not f.missed() and f.synced_at_end)


if __name__ == "__main__":
    sys.exit(main())
