"""Reliability matrix M17: partitioned ingest with an owner SIGKILLed under load, shared by
tests/e2e/test_partitions_e2e.py (a few kills, CI-sized) and bench/ingest_kill.py (10 kills at 4,000 msg/s).

Two partitions, three ``steward run ingest`` processes that may own one partition each (two owners and a
standby), estates in both partitions, and a QoS 1 publisher keyed for the total-queue oracle. Each kill SIGKILLs
the owner of one partition (alternating), measures the takeover gap (the kill → the first commit of the process
that claimed the partition, from its /health), then restarts the killed process, which becomes the next standby.
The verdict: every publish the broker acknowledged is stored exactly once.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from core import clock
from devkit.estate import load_small_estate
from devkit.ingest_process import IngestProcess
from devkit.oracle import Verdict, judge, telemetry_traffic, wait_quiescent
from devkit.publisher import OraclePublisher
from ingest.partitions import partition_of

PARTITIONS = 2
CLIENT_ID = "m17-ingest"


@dataclass
class M17Result:
    kills: int
    verdict: Verdict
    gaps_s: list[float] = field(default_factory=list)
    published: int = 0
    kills_under_load: int = 0
    publish_rate: float = 0.0
    killed_partitions: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        gaps = sorted(self.gaps_s)
        summary = (
            f"takeover gap (kill → standby's first commit) median {statistics.median(gaps):.3f} s, max {gaps[-1]:.3f} s"
            if gaps
            else "no takeover measured"
        )
        return (
            f"M17: {self.kills} owner SIGKILLs ({self.kills_under_load} while publishing) under "
            f"{self.publish_rate:,.0f} msg/s ({self.published:,} published); "
            f"{self.verdict}; {summary}; gaps {[round(g, 3) for g in self.gaps_s]}"
        )


def estates_for(prefix: str, partitions: int = PARTITIONS, per_partition: int = 1) -> list[str]:
    """Estate codes ``{prefix}-{i}``, ``per_partition`` of them in each partition."""
    found: dict[int, list[str]] = {k: [] for k in range(partitions)}
    for i in itertools.count():
        code = f"{prefix}-{i}"
        k = partition_of(code, partitions)
        if len(found[k]) < per_partition:
            found[k].append(code)
        if all(len(v) == per_partition for v in found.values()):
            return [c for k in sorted(found) for c in found[k]]
    raise AssertionError("unreachable")


def _publish_child(
    host: str,
    port: int,
    estate: str,
    devices: int,
    frames: int,
    rate: float,
    start: str,
    ready: Any,
    stop: Any,
    out: Any,
) -> None:
    """One publisher process per estate (a Python publisher tops out near 3,000 msg/s on a busy 2-core machine):
    publishes the estate's keyed frames at ``rate`` until ``stop``, then sends back (acked keys, sent keys)."""
    pub = OraclePublisher(host, port, client_id=f"m17-oracle-{estate}", window=2_000)
    ready.set()
    items = telemetry_traffic(estate, devices=devices, frames=frames, start=datetime.fromisoformat(start))
    pub.publish_all(items, rate=rate, stop=stop)
    pub.drain()
    pub.close()
    out.send((sorted(pub.log.acked), pub.log.all_keys))
    out.close()


class Publishers:
    """The load: one child process per estate, each at its share of the rate."""

    def __init__(self, host: str, port: int, estates: list[str], *, devices: int, frames: int, rate: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        start = (clock.now().replace(microsecond=0) - timedelta(hours=12)).isoformat()
        self.stop_event = ctx.Event()
        self.children = []
        for estate in estates:
            ready = ctx.Event()
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_publish_child,
                args=(host, port, estate, devices, frames, rate / len(estates), start, ready, self.stop_event, send),
                daemon=True,
            )
            self.children.append((proc, ready, recv))
        self.acked: set[str] = set()
        self.sent: list[str] = []

    def start(self) -> Publishers:
        for proc, _, _ in self.children:
            proc.start()
        for _, ready, _ in self.children:
            if not ready.wait(30):
                raise TimeoutError("a publisher did not connect")
        return self

    def finish(self, timeout: float = 60) -> None:
        self.stop_event.set()
        for proc, _, recv in self.children:
            if recv.poll(timeout):
                acked, sent = recv.recv()
                self.acked.update(acked)
                self.sent.extend(sent)
            proc.join(10)

    @property
    def running(self) -> bool:
        return not self.stop_event.is_set() and any(proc.is_alive() for proc, _, _ in self.children)

    def kill(self) -> None:
        self.stop_event.set()
        for proc, _, _ in self.children:
            if proc.is_alive():
                proc.kill()


class FastpubLoad:
    """The load from fastpub (C, /work/shared/tools/fastpub; the bench builds it): the keyed frames of every estate,
    round-robin, at ``rate`` from a file sized for the run. The broker never restarts in M17, so a fastpub that
    exits 0 with acked == sent had every publish acknowledged: the oracle's acked set is the whole file."""

    def __init__(
        self,
        binary: Path,
        host: str,
        port: int,
        estates: list[str],
        *,
        devices: int,
        frames: int,
        rate: float,
        work: Path,
    ) -> None:
        start = clock.now().replace(microsecond=0) - timedelta(hours=12)
        streams = [telemetry_traffic(e, devices=devices, frames=frames, start=start) for e in estates]
        self.file = work / "m17-frames.txt"
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.keys: list[str] = []
        with self.file.open("w", encoding="utf-8") as f:
            for group in zip(*streams, strict=True):
                for key, topic, payload in group:
                    self.keys.append(key)
                    f.write(f"{topic}\t{payload.decode()}\n")
        self.cmd = [str(binary), "-f", str(self.file), "-h", host, "-p", str(port), "-q", "1", "-w", "2000"]
        self.cmd += ["-r", str(rate), "-i", "m17-fastpub"]
        self.proc: subprocess.Popen[str] | None = None
        self.acked: set[str] = set()
        self.sent: list[str] = []
        self.rate = 0.0

    def start(self) -> FastpubLoad:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def finish(self, timeout: float = 600) -> None:
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"fastpub failed ({self.proc.returncode}): {err.strip()}")
        res = json.loads(out.strip().splitlines()[-1])
        if not res["sent"] == res["acked"] == len(self.keys):
            raise RuntimeError(f"fastpub: {res} for {len(self.keys)} frames: the acked set is not known")
        self.acked, self.sent, self.rate = set(self.keys), self.keys, float(res["rate"])

    def kill(self) -> None:
        if self.running and self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)


class Cluster:
    """Three partitioned ingest processes on one database and broker; each may own one of the two partitions."""

    def __init__(self, db_url: str, mqtt_url: str, log_dir: Path, env: dict[str, str], processes: int = 3) -> None:
        self.procs = [
            IngestProcess(
                db_url,
                mqtt_url,
                log_dir / f"ingest-{i}",
                client_id=CLIENT_ID,
                STEWARD_INGEST_PARTITIONS=str(PARTITIONS),
                STEWARD_INGEST_MAX_PARTITIONS="1",
                STEWARD_INGEST_CLAIM_POLL_S="0.2",
                **env,
            )
            for i in range(processes)
        ]

    def start(self) -> Cluster:
        for p in self.procs:
            p.start()
        self.wait_owned()
        return self

    def owners(self) -> dict[int, tuple[IngestProcess, dict[str, Any]]]:
        out: dict[int, tuple[IngestProcess, dict[str, Any]]] = {}
        for p in self.procs:
            h = p.health()
            if h is None or p.proc is None or p.proc.poll() is not None:
                continue
            for k in h.get("owned", []):  # type: ignore[attr-defined]
                out[int(k)] = (p, h)
        return out

    def wait_owned(self, timeout: float = 30) -> dict[int, tuple[IngestProcess, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owners = self.owners()
            if len(owners) == PARTITIONS:
                return owners
            time.sleep(0.05)
        raise TimeoutError(f"partitions not all owned within {timeout}s: {[p.health() for p in self.procs]}")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def takeover_gap(cluster: Cluster, k: int, killed: IngestProcess, killed_at: float, timeout: float = 30) -> float:
    """Seconds from the kill to the first commit of whichever process claimed partition ``k`` after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in cluster.procs:
            if p is killed:
                continue
            h = p.health()
            part = (h or {}).get("by_partition", {}).get(str(k))  # type: ignore[attr-defined]
            if part and part.get("first_commit_at") and part["first_commit_at"] > killed_at:
                return float(part["first_commit_at"]) - killed_at
        time.sleep(0.01)
    raise TimeoutError(f"nobody committed partition {k} within {timeout}s of the kill")


def run_m17(
    db_url: str,
    broker_host: str,
    broker_port: int,
    log_dir: Path,
    *,
    kills: int,
    rate: float,
    seed: int = 17,
    devices: int = 20,
    settle_s: tuple[float, float] = (1.0, 2.5),
    fastpub: Path | None = None,
    **env: str,
) -> M17Result:
    """Run the scenario; returns the oracle's verdict and the takeover gaps (see the module doc). With ``fastpub``
    (a built binary) the load comes from it, sized for 15 s per kill, and the run waits for it to end."""
    rng = random.Random(seed)
    estates = estates_for("m17")
    engine = create_engine(db_url)
    for code in estates:
        load_small_estate(engine, code, sensors=devices, meters=0)
    cluster = Cluster(db_url, f"mqtt://{broker_host}:{broker_port}", log_dir, env)
    # Enough frames for the whole run at the rate (the publishers stop when the kills are done).
    frames = int(rate * (kills * 8 + 30)) // len(estates) + devices
    frames -= frames % devices
    load: Publishers | FastpubLoad
    if fastpub is not None:
        frames = int(rate * (kills * 15 + 20)) // len(estates) + devices
        frames -= frames % devices
        load = FastpubLoad(
            fastpub, broker_host, broker_port, estates, devices=devices, frames=frames, rate=rate, work=log_dir
        )
    else:
        load = Publishers(broker_host, broker_port, estates, devices=devices, frames=frames, rate=rate)
    result = M17Result(kills=0, verdict=Verdict(0, 0, [], [], [], 0))
    try:
        cluster.start()
        load.start()
        started = time.monotonic()
        for n in range(kills):
            time.sleep(rng.uniform(*settle_s))
            k = n % PARTITIONS
            victim, _ = cluster.wait_owned()[k]
            killed_at = time.time()
            victim.kill()
            result.kills += 1
            result.kills_under_load += load.running
            result.killed_partitions.append(k)
            result.gaps_s.append(takeover_gap(cluster, k, victim, killed_at))
            victim.start()  # the next standby
        time.sleep(1.0)
        elapsed = time.monotonic() - started
        load.finish()
        result.published = len(load.sent)
        result.publish_rate = load.rate if isinstance(load, FastpubLoad) else result.published / elapsed
        wait_quiescent(engine, acked=load.acked, timeout=120)
        result.verdict = judge(engine, load.acked, set(load.sent))
    finally:
        load.kill()
        cluster.stop()
        engine.dispose()
    return result
