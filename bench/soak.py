#!/usr/bin/env python
"""Soak: the whole platform under a steady 4,000 msg/s for N minutes, and whether anything drifts.

One run, on this machine (issue 13, "a soak"):

1. a fresh database with an estate of D five-point transformer sensors in power rooms, the default rule
   packs installed as in production (ingest evaluates every reading against them; the load is quiet, so
   no alarm fires, as in a normal estate);
2. Mosquitto with Steward's configuration, ``steward run ingest`` (alarm evaluation and charging on, the
   defaults), ``steward run worker`` (every periodic job, its /metrics on) and ``steward run api``;
3. fastpub publishing telemetry paced at ``--rate`` msg/s for ``--minutes`` from one QoS 1 connection,
   fed line by line through a pipe (no frame file: 30 minutes would be 1.4 GB). Device times track the
   wall clock (frame j of every device at start + j × devices / rate), so the stale-data watchdog sees
   live devices, and each frame carries fastpub's send time as its ``load_pct`` value;
4. a reader, as a few operators would: ``--reads-per-s`` requests rotating over a point's 24 h series,
   a room's live values, the alarm list, the ingest status (bearer token) and a room page (cookie).

It prints a per-minute table (published and stored msg/s, publish → commit p50/p99, ingest / API /
worker RSS, ingest's queue depth, API reads and their p99) and the figures:

- lost: the oracle's count. Published = what the broker acknowledged to fastpub (QoS 1: the promise);
  stored = this run's ``load_pct`` rows (one per frame, unique per device and device time); lost =
  published − stored, with the devices that miss frames; duplicates are stored − published and ingest's
  duplicate counter;
- RSS of ingest and the API (all its processes) at the end of the first window and at the end, growth %;
- p99 publish → commit in the first and the last window, and their ratio. Commit = the arrival of the
  NOTIFY ingest sends inside each batch transaction (delivered exactly at commit); frames are assigned to
  batches in send order (one publisher, one connection, one ingest: the broker and ingest keep the order).

The window is 5 minutes, or a third of the run when it is shorter than 15 minutes (``--window-minutes``
overrides). Targets (issue 13): 0 lost, RSS growth < 10 %, last-window p99 ≤ 1.5 × the first.
Everything is throwaway, as in bench/ingest.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, where bench/api.py would shadow the ``api`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.api import ADMIN, ADMIN_PASSWORD, ApiProcess, create_admin, pick_targets  # noqa: E402
from bench.common import (  # noqa: E402
    CN,
    ESTATE,
    ROWS_PER_FRAME,
    SENT_METRIC,
    BenchError,
    CommitListener,
    Harness,
    build_fastpub,
    figures_table,
    import_bench_estate,
    libpq_url,
    log,
    percentile,
    quiet_value,
    run_bench,
)

TARGET_RSS_GROWTH_PCT = 10.0
TARGET_P99_RATIO = 1.5
DRAIN_S = 120.0  # after the last publish, how long the rest may take to commit before it counts as lost


@dataclass
class Minute:
    minute: int
    published: int = 0  # frames due in this minute by fastpub's pacing
    stored: int = 0  # frames committed during this minute
    ingest_rss: int = 0
    api_rss: int = 0
    worker_rss: int = 0
    queue_depth: int | None = None
    reads: int = 0
    read_errors: int = 0
    read_ms: list[float] = field(default_factory=list)
    lat_p50_ms: float | None = None
    lat_p99_ms: float | None = None
    lat_max_ms: float | None = None


@dataclass
class Figures:
    config: dict[str, Any] = field(default_factory=dict)
    minutes: list[Minute] = field(default_factory=list)
    oracle: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)


class Reader:
    """Reads the API at a steady pace from a thread of its own, counting per soak minute."""

    def __init__(self, api_url: str, token: str, points: list[int], rooms: list[int], per_s: float) -> None:
        import httpx2 as httpx  # the dev extra's HTTP client (pyproject.toml)

        self.bearer = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.browser = httpx.Client(base_url=api_url, timeout=30)
        login = self.browser.post("/api/auth/login", json={"username": ADMIN, "password": ADMIN_PASSWORD})
        if login.status_code != 200 or not self.browser.cookies:
            raise BenchError(f"login failed: {login.status_code} {login.text[:200]}")
        self.urls: list[tuple[str, str]] = []
        for i in range(max(len(points), len(rooms))):
            self.urls += [
                ("bearer", f"/api/points/{points[i % len(points)]}/series?bucket=1h"),
                ("bearer", f"/api/rooms/{rooms[i % len(rooms)]}/live"),
                ("bearer", "/api/alarms?limit=50"),
                ("bearer", "/api/ingest/status"),
                ("cookie", f"/rooms/{rooms[i % len(rooms)]}"),
            ]
        self.per_s = per_s
        self.errors: list[str] = []
        self.by_minute: dict[int, Minute] = {}
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-reader", daemon=True)

    def check(self) -> None:
        for auth, url in self.urls[:5]:
            r = (self.bearer if auth == "bearer" else self.browser).get(url)
            if r.status_code != 200:
                raise BenchError(f"reader: {url} answered {r.status_code} {r.text[:200]}")

    def start(self, t0: float, minutes: dict[int, Minute]) -> None:
        self.t0, self.by_minute = t0, minutes
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            due = self.t0 + n / self.per_s
            if (wait := due - time.time()) > 0 and self._stop.wait(wait):
                return
            auth, url = self.urls[n % len(self.urls)]
            n += 1
            m = self.by_minute.get(int((time.time() - self.t0) // 60))
            t = time.perf_counter()
            try:
                r = (self.bearer if auth == "bearer" else self.browser).get(url)
                ok, why = r.status_code == 200, f"HTTP {r.status_code}"
            except Exception as exc:  # counted, never fatal: the soak measures what the reader sees
                ok, why = False, repr(exc)
            dt = (time.perf_counter() - t) * 1000
            if m is not None:
                m.reads += 1
                m.read_ms.append(dt)
                if not ok:
                    m.read_errors += 1
            if not ok and len(self.errors) < 10:
                self.errors.append(f"{url}: {why}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(35)
        self.bearer.close()
        self.browser.close()


class Bench(Harness):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.figures = Figures()
        self.window_lat: dict[int, list[float]] = {}  # publish → commit (ms) of the first and last window's minutes

    def run(self) -> Figures:
        import psutil

        a = self.args
        cfg = self.figures.config
        per_device_per_min = 60 * a.rate / a.devices
        cfg.update(
            minutes=a.minutes,
            rate=a.rate,
            devices=a.devices,
            window_minutes=a.window_minutes,
            reads_per_s=a.reads_per_s,
            api_workers=a.api_workers,
            git=self._git_describe(),
            background_cpu_pct_before=self.check_idle(),
        )
        log("building fastpub")
        self.fastpub_bin = build_fastpub(self.tmp)
        db_url = self.create_database(cfg)
        points = import_bench_estate(db_url, a.devices, a.room_size, rules=True)
        log(f"estate imported: {a.devices} devices in rooms of {a.room_size}, {points} points, default rule packs")

        broker = self.start_broker("mosquitto")
        listener = CommitListener(db_url)
        self.on_cleanup("close listener", listener.close)
        log("starting ingest, worker and API")
        ingest = self.start_ingest(db_url, broker)
        worker, worker_port = self._start_worker(db_url, broker.url)
        api = ApiProcess(db_url, self.tmp / "logs", a.api_workers, {})
        self.on_cleanup("stop API", api.stop)
        api.start()
        token = create_admin(db_url)
        point_ids, rooms = pick_targets(db_url, 20, 10)
        reader = Reader(api.url, token, point_ids, [r for r, _ in rooms], a.reads_per_s)
        self.on_cleanup("stop reader", reader.stop)
        reader.check()

        step = timedelta(seconds=a.devices / a.rate)
        start_dt = datetime.now(CN).replace(microsecond=0)
        total = int(a.minutes * 60 * a.rate)

        # Warm-up: frame 0 of every device (not counted), proving the subscription and loading caches.
        time.sleep(0.5)
        mark = listener.mark()
        warm = self._launch_fastpub(broker.port, rate=0)
        self._feed(warm, start_dt, step, first_frame=0, count=a.devices, sent=False)
        self._fastpub_done(warm, timeout=60)
        listener.wait_rows(mark, a.devices * ROWS_PER_FRAME, timeout=60)
        log("warm-up committed; soaking")

        minutes = {m: Minute(m) for m in range(math.ceil(a.minutes))}
        for m in minutes.values():
            m.published = min(total, int((m.minute + 1) * 60 * a.rate)) - min(total, int(m.minute * 60 * a.rate))
        mark = listener.mark()
        procs = {
            "ingest": [psutil.Process(ingest.proc.pid)],
            "worker": [psutil.Process(worker.pid)],
            "api": [psutil.Process(p) for p in api.pids()],
        }
        pub = self._launch_fastpub(broker.port, rate=a.rate)
        t0 = time.time()
        feeder = threading.Thread(
            target=self._feed, args=(pub, start_dt, step, 1, total, True), name="soak-feed", daemon=True
        )
        feeder.start()
        reader.start(t0, minutes)
        first_ts = start_dt + step

        # One sample at the end of every minute.
        for m in minutes.values():
            end = t0 + min((m.minute + 1) * 60, a.minutes * 60)
            while (left := end - time.time()) > 0:
                time.sleep(min(left, 1.0))
                if pub["proc"].poll() is not None and pub["proc"].returncode != 0:
                    raise BenchError(f"fastpub exited with {pub['proc'].returncode}: {self._stderr(pub)}")
                if listener.error is not None:
                    raise BenchError(f"LISTEN connection failed: {listener.error}")
            self._sample(m, procs, ingest, listener, mark, t0)
            self._progress_line(m, per_device_per_min)

        feeder.join(60)
        result = self._fastpub_done(pub, timeout=120)
        reader.stop()
        log(f"fastpub: {result}; waiting for the last commits")
        with contextlib.suppress(BenchError):
            listener.wait_rows(mark, int(result["acked"]) * ROWS_PER_FRAME, timeout=DRAIN_S)
        events = [(at, n) for at, n in listener.since(mark) if n > 0]
        self._oracle(db_url, result, first_ts, step, ingest)
        self._latencies(db_url, events, first_ts, step, per_device_per_min, minutes)
        self.figures.minutes = list(minutes.values())
        self.figures.worker = self._worker_metrics(worker_port)
        self.figures.config["reader_errors"] = reader.errors
        self._summarise()
        ingest.stop()
        return self.figures

    # -- processes ------------------------------------------------------------------------------

    def _start_worker(self, db_url: str, mqtt_url: str) -> tuple[subprocess.Popen[bytes], int]:
        from steward.broker import free_port

        port = free_port()
        env = {
            **os.environ,
            "STEWARD_ENV": "testing",
            "STEWARD_DATABASE_URL": db_url,
            "STEWARD_MQTT_URL": mqtt_url,
            "STEWARD_MQTT_CLIENT_ID": f"soak-worker-{uuid.uuid4().hex[:8]}",
            "STEWARD_WORKER_METRICS_PORT": str(port),
            "STEWARD_LOG_LEVEL": "INFO",
        }
        (self.tmp / "logs").mkdir(parents=True, exist_ok=True)
        with (self.tmp / "logs" / "worker.log").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "steward", "run", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.running.append(proc)
        return proc, port

    def _launch_fastpub(self, port: int, *, rate: float) -> dict[str, Any]:
        assert self.fastpub_bin is not None
        cmd = [str(self.fastpub_bin), "-f", "-", "-p", str(port), "-q", "1", "-w", str(self.args.window)]
        cmd += ["-i", f"soak-pub-{uuid.uuid4().hex[:8]}"]
        if rate:
            cmd += ["-r", str(rate)]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1 << 16
        )
        self.running.append(proc)
        return {"proc": proc}

    def _feed(
        self, pub: dict[str, Any], start: datetime, step: timedelta, first_frame: int, count: int, sent: bool
    ) -> None:
        """Write ``count`` frames round-robin over the devices, frame j of each at ``start + j * step``;
        the pipe blocks while fastpub's pacing holds it, so this runs only a pipe's buffer ahead."""
        from devkit.estate import METRICS, sensor_code
        from protocol.topics import uplink

        d_count = self.args.devices
        topics = [uplink(ESTATE, sensor_code(ESTATE, d), "telemetry") for d in range(d_count)]
        stdin: IO[str] = pub["proc"].stdin
        try:
            lines: list[str] = []
            for n in range(count):
                d, j = n % d_count, first_frame + n // d_count
                if d == 0:  # n counts from 0, so the first frame sets it
                    stamp = (start + step * j).isoformat(timespec="milliseconds")
                values = ",".join(
                    f'"{m}":' + ("{sent}" if sent and m == SENT_METRIC else f"{quiet_value(m, d, j):.1f}")
                    for m in METRICS
                )
                lines.append(f'{topics[d]}\t{{"v":1,"ts":"{stamp}","seq":{j},"values":{{{values}}}}}\n')
                if len(lines) >= 200:
                    stdin.write("".join(lines))
                    lines.clear()
            stdin.write("".join(lines))
        except (BrokenPipeError, ValueError):
            return  # fastpub died; the main loop reports its exit
        finally:
            with contextlib.suppress(OSError, ValueError):
                stdin.close()
            pub["proc"].stdin = None  # closed: communicate() must not flush it

    @staticmethod
    def _stderr(pub: dict[str, Any]) -> str:
        with contextlib.suppress(Exception):
            return str(pub["proc"].stderr.read()).strip()[-500:]
        return ""

    def _fastpub_done(self, pub: dict[str, Any], timeout: float) -> dict[str, Any]:
        proc: subprocess.Popen[str] = pub["proc"]
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise BenchError("fastpub did not finish in time") from exc
        if proc.returncode != 0:
            raise BenchError(f"fastpub exited with {proc.returncode}: {err.strip()}")
        try:
            return dict(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError) as exc:
            raise BenchError(f"fastpub printed no result: {out!r} {err!r}") from exc

    # -- measuring ------------------------------------------------------------------------------

    @staticmethod
    def _rss(procs: list[Any]) -> int:
        import psutil

        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _sample(
        self, m: Minute, procs: dict[str, list[Any]], ingest: Any, listener: CommitListener, mark: int, t0: float
    ) -> None:
        m.ingest_rss = self._rss(procs["ingest"])
        m.api_rss = self._rss(procs["api"])
        m.worker_rss = self._rss(procs["worker"])
        lo, hi = t0 + m.minute * 60, t0 + (m.minute + 1) * 60
        m.stored = sum(n for at, n in listener.since(mark) if lo <= at < hi) // ROWS_PER_FRAME
        health = ingest.health() or {}
        depth = health.get("queue_depth")
        m.queue_depth = int(depth) if isinstance(depth, int) else None

    def _progress_line(self, m: Minute, per_device_per_min: float) -> None:
        if self.args.quiet:
            return
        reads = sorted(m.read_ms)
        log(
            f"minute {m.minute + 1}: published {m.published / 60:,.0f}/s, stored {m.stored / 60:,.0f}/s, "
            f"RSS ingest {m.ingest_rss / 2**20:.0f} MB, API {m.api_rss / 2**20:.0f} MB, "
            f"worker {m.worker_rss / 2**20:.0f} MB, "
            f"queue {m.queue_depth}, reads {m.reads} (p99 {percentile(reads, 99):.0f} ms, {m.read_errors} errors)"
        )

    def _oracle(self, db_url: str, pub: dict[str, Any], first_ts: datetime, step: timedelta, ingest: Any) -> None:
        import psycopg

        a = self.args
        frames_per_device = int(pub["sent"]) // a.devices  # round-robin: the first (sent % D) devices have one more
        with psycopg.connect(libpq_url(db_url)) as conn:
            per_device = conn.execute(
                "SELECT d.code, count(*) FROM samples s JOIN points p ON p.id = s.point_id "
                "JOIN devices d ON d.id = p.device_id WHERE p.metric = %s AND s.ts >= %s GROUP BY d.code",
                (SENT_METRIC, first_ts),
            ).fetchall()
            rows = conn.execute("SELECT count(*) FROM samples s WHERE s.ts >= %s", (first_ts,)).fetchone()
        stored = sum(int(c) for _, c in per_device)
        acked = int(pub["acked"])
        counters = dict((ingest.health() or {}).get("counters", {}))
        short = sorted(code for code, c in per_device if int(c) < frames_per_device)
        stored_rows = int(rows[0]) if rows else 0
        self.figures.oracle = {
            "published_sent": int(pub["sent"]),
            "published_acked": acked,
            "fastpub_rate": pub.get("rate"),
            "stored_frames": stored,
            "stored_rows": stored_rows,
            "expected_rows": acked * ROWS_PER_FRAME,
            "lost": max(0, acked - stored),
            "lost_readings": max(0, acked * ROWS_PER_FRAME - stored_rows),
            "extra": max(0, stored - acked),
            "devices_reporting": len(per_device),
            "devices_short": short[:10],
            "ingest_counters": {
                k: counters.get(k)
                for k in (
                    "received",
                    "stored",
                    "duplicate",
                    "dead_lettered",
                    "quarantined",
                    "queue_overflow",
                    "seq_gaps",
                )
            },
        }

    def _latencies(
        self,
        db_url: str,
        events: list[tuple[float, int]],
        first_ts: datetime,
        step: timedelta,
        per_device_per_min: float,
        minutes: dict[int, Minute],
    ) -> None:
        """Publish → commit per frame, minute by minute (send times read back a minute at a time, so a
        30-minute run never holds all 7 million in memory): the k-th frame sent is in the first batch
        whose cumulative frame count passes k."""
        import psycopg

        a = self.args
        w = a.window_minutes
        n_min = len(minutes)
        keep = set(range(min(w, n_min))) | set(range(max(0, n_min - w), n_min))
        self.window_lat.clear()
        # events[ev] is the batch that holds frame k once cum_end (frames committed through it) passes k.
        ev = 0
        cum_end = events[0][1] // ROWS_PER_FRAME if events else 0
        k = 0
        frames_per_min = int(per_device_per_min)
        with psycopg.connect(libpq_url(db_url)) as conn:
            for m in sorted(minutes):
                lo = first_ts + step * (m * frames_per_min)
                hi = first_ts + step * ((m + 1) * frames_per_min)
                sent = [
                    float(r[0])
                    for r in conn.execute(
                        "SELECT s.value FROM samples s JOIN points p ON p.id = s.point_id "
                        "WHERE p.metric = %s AND s.ts >= %s AND s.ts < %s ORDER BY s.value",
                        (SENT_METRIC, lo, hi),
                    )
                ]
                lat: list[float] = []
                for s in sent:
                    while ev < len(events) and cum_end <= k:
                        ev += 1
                        if ev < len(events):
                            cum_end += events[ev][1] // ROWS_PER_FRAME
                    if ev >= len(events):
                        break
                    lat.append((events[ev][0] - s) * 1000)
                    k += 1
                lat.sort()
                mm = minutes[m]
                if lat:
                    mm.lat_p50_ms = round(percentile(lat, 50), 1)
                    mm.lat_p99_ms = round(percentile(lat, 99), 1)
                    mm.lat_max_ms = round(lat[-1], 1)
                if m in keep:
                    self.window_lat[m] = lat

    def _worker_metrics(self, port: int) -> dict[str, Any]:
        """Each job's runs and failures from the worker's own /metrics (worker/metrics.py)."""
        out: dict[str, Any] = {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError as exc:
            return {"error": repr(exc)}
        for line in text.splitlines():
            for metric, key in (
                ("steward_worker_job_runs_total", "runs"),
                ("steward_worker_job_failures_total", "failures"),
            ):
                if line.startswith(metric + "{"):
                    job = line.split('job_name="', 1)[1].split('"', 1)[0]
                    out.setdefault(job, {})[key] = int(float(line.rsplit(" ", 1)[1]))
        return out

    def _summarise(self) -> None:
        a = self.args
        w = a.window_minutes
        mins = self.figures.minutes
        n = len(mins)
        first = sorted(x for m in range(min(w, n)) for x in self.window_lat.get(m, []))
        last = sorted(x for m in range(max(0, n - w), n) for x in self.window_lat.get(m, []))
        base = mins[min(w, n) - 1]
        end = mins[-1]

        def growth(b: int, e: int) -> float | None:
            return round(100 * (e - b) / b, 1) if b else None

        p99_first = percentile(first, 99) if first else None
        p99_last = percentile(last, 99) if last else None
        self.figures.summary = {
            "window_minutes": w,
            "rss_baseline_minute": base.minute + 1,
            "ingest_rss_mb": [round(base.ingest_rss / 2**20, 1), round(end.ingest_rss / 2**20, 1)],
            "ingest_rss_growth_pct": growth(base.ingest_rss, end.ingest_rss),
            "api_rss_mb": [round(base.api_rss / 2**20, 1), round(end.api_rss / 2**20, 1)],
            "api_rss_growth_pct": growth(base.api_rss, end.api_rss),
            "worker_rss_mb": [round(base.worker_rss / 2**20, 1), round(end.worker_rss / 2**20, 1)],
            "worker_rss_growth_pct": growth(base.worker_rss, end.worker_rss),
            "p99_first_ms": round(p99_first, 1) if p99_first is not None else None,
            "p99_last_ms": round(p99_last, 1) if p99_last is not None else None,
            "p99_ratio": round(p99_last / p99_first, 2) if p99_first and p99_last is not None else None,
            "frames_timed": sum(len(v) for v in self.window_lat.values()),
            "method": "commit = NOTIFY arrival of the batch; frames assigned to batches in send order",
        }


# --------------------------------------------------------------------------------------------------
# the report


def report(figures: Figures, args: argparse.Namespace) -> None:
    from rich.table import Table

    if args.json:
        out = {
            "config": figures.config,
            "oracle": figures.oracle,
            "summary": figures.summary,
            "worker": figures.worker,
            "minutes": [
                {k: v for k, v in vars(m).items() if k != "read_ms"} | {"read_p99_ms": _p99(m.read_ms)}
                for m in figures.minutes
            ],
        }
        print(json.dumps(out, indent=2, default=str))
        return
    console, figs, row = figures_table(
        f"Soak: {args.rate:g} msg/s for {args.minutes:g} min, rules + worker + API reads"
    )
    per = Table(title="per minute", show_lines=False)
    # pub/s: frames due by fastpub's pacing; stored/s: frames committed in that minute; p50/p99/max: publish →
    # commit of the frames sent in that minute; MB: RSS at the minute's end; reads: API requests, their p99.
    cols = ("min", "pub/s", "stored/s", "p50 ms", "p99 ms", "max ms", "ingest MB", "API MB", "worker MB", "queue")
    for col in (*cols, "reads", "read p99", "errs"):
        per.add_column(col, justify="right")
    for m in figures.minutes:
        per.add_row(
            str(m.minute + 1),
            f"{m.published / 60:,.0f}",
            f"{m.stored / 60:,.0f}",
            _fmt(m.lat_p50_ms),
            _fmt(m.lat_p99_ms),
            _fmt(m.lat_max_ms),
            f"{m.ingest_rss / 2**20:.0f}",
            f"{m.api_rss / 2**20:.0f}",
            f"{m.worker_rss / 2**20:.0f}",
            str(m.queue_depth),
            str(m.reads),
            _fmt(_p99(m.read_ms)),
            str(m.read_errors),
        )
    console.print(per)
    o, s = figures.oracle, figures.summary
    row("published (broker-acked frames)", f"{o['published_acked']:,}", "", None)
    row("stored frames", f"{o['stored_frames']:,}", "", None)
    row("lost", f"{o['lost']:,}", "0", o["lost"] == 0)
    row("lost readings (5 a frame)", f"{o['lost_readings']:,}", "0", o["lost_readings"] == 0)
    row("stored beyond published", f"{o['extra']:,}", "0", o["extra"] == 0)
    row("devices missing frames", str(len(o["devices_short"])), "0", not o["devices_short"])
    w = s["window_minutes"]
    for name, key in (("ingest", "ingest"), ("API", "api"), ("worker", "worker")):
        mb, g = s[f"{key}_rss_mb"], s[f"{key}_rss_growth_pct"]
        target = f"< {TARGET_RSS_GROWTH_PCT:g} %" if key != "worker" else ""
        ok = (g is not None and g < TARGET_RSS_GROWTH_PCT) if key != "worker" else None
        row(f"{name} RSS minute {s['rss_baseline_minute']} → end", f"{mb[0]} → {mb[1]} MB ({_fmt(g)} %)", target, ok)
    row(f"p99 publish → commit, first {w} min", f"{_fmt(s['p99_first_ms'])} ms", "", None)
    row(f"p99 publish → commit, last {w} min", f"{_fmt(s['p99_last_ms'])} ms", "", None)
    ratio = s["p99_ratio"]
    row("p99 last / first", _fmt(ratio), f"≤ {TARGET_P99_RATIO:g}", ratio is not None and ratio <= TARGET_P99_RATIO)
    console.print(figs)
    console.print(f"ingest counters: {o['ingest_counters']}")
    console.print(f"worker jobs (runs, failures): {figures.worker}")
    if figures.config.get("reader_errors"):
        console.print(f"reader errors (first): {figures.config['reader_errors']}")
    console.print(
        f"database: {figures.config.get('database')}, TimescaleDB: {figures.config.get('timescaledb')}; "
        f"background CPU before: {figures.config.get('background_cpu_pct_before')} %; git {figures.config.get('git')}"
    )


def _p99(values: list[float]) -> float | None:
    return round(percentile(sorted(values), 99), 1) if values else None


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def ok(figures: Figures) -> bool:
    s = figures.summary
    return (
        figures.oracle.get("lost") == 0
        and figures.oracle.get("lost_readings") == 0
        and figures.oracle.get("extra") == 0
        and (s.get("ingest_rss_growth_pct") or 0) < TARGET_RSS_GROWTH_PCT
        and (s.get("api_rss_growth_pct") or 0) < TARGET_RSS_GROWTH_PCT
        and s.get("p99_ratio") is not None
        and s["p99_ratio"] <= TARGET_P99_RATIO
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=30, help="how long the load runs (default 30)")
    ap.add_argument("--rate", type=float, default=4_000, help="msg/s (default 4000)")
    ap.add_argument("--devices", type=int, default=1_000, help="5-point sensors; must divide 60 × rate (default 1000)")
    ap.add_argument("--room-size", type=int, default=50, help="devices per power room (default 50)")
    ap.add_argument(
        "--window-minutes", type=int, help="first/last window for p99 and the RSS baseline (default 5, N/3 below 15)"
    )
    ap.add_argument("--reads-per-s", type=float, default=5, help="API requests per second (default 5)")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn workers (default 1)")
    ap.add_argument("--window", type=int, default=20_000, help="fastpub's unacked window (default 20000)")
    ap.add_argument(
        "--ingest-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for ingest, repeatable"
    )
    ap.add_argument("--no-broker-persistence", action="store_true", help="mosquitto without its persistence file")
    ap.add_argument("--tmp-dir", help="where the temporary directory goes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--quiet", action="store_true", help="no per-minute progress lines")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    for kv in args.ingest_env:
        if "=" not in kv:
            ap.error(f"--ingest-env wants KEY=VALUE, got {kv!r}")
    if args.minutes < 1 or args.rate <= 0 or args.devices < 1 or args.reads_per_s <= 0:
        ap.error("--minutes ≥ 1, --rate > 0, --devices ≥ 1, --reads-per-s > 0")
    if (60 * args.rate) % args.devices:
        ap.error("--devices must divide 60 × --rate (each device sends a whole number of frames a minute)")
    if args.window_minutes is None:
        args.window_minutes = 5 if args.minutes >= 15 else max(1, int(args.minutes // 3))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("STEWARD_ENV", "testing")
    return run_bench(Bench(args), lambda f: report(f, args), ok)


if __name__ == "__main__":
    sys.exit(main())
