"""Helpers for the dashboard tests: in-process ingest, a background feeder, and the app under uvicorn."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from core import clock
from ingest.decode import Decoder
from ingest.messages import RawMessage
from ingest.registry import DeviceRegistry
from ingest.writer import write_batch
from steward.broker import free_port
from storage.timescale import has_timescale

ROOT = Path(__file__).resolve().parents[2]


class InProcessIngest:
    """Decode and write messages exactly as ``steward run ingest`` does after the broker (same decoder,
    same writer, same ``NOTIFY steward_ingest`` on commit), without a broker in between."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = DeviceRegistry()
        with engine.connect() as conn:
            self.registry.load(conn)
            self.keep_rollup = not has_timescale(conn)
        self.decoder = Decoder(
            self.registry,
            accept_past=timedelta(days=30),
            accept_future=timedelta(minutes=5),
            max_payload_bytes=256 * 1024,
        )
        self._mid = 0
        self.stored = 0
        self.received = 0
        self.lock = threading.Lock()

    def send(self, messages: Iterable[tuple[str, bytes | dict[str, Any]]]) -> int:
        with self.lock:
            now = clock.now()
            raw = []
            for topic, payload in messages:
                self._mid += 1
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                raw.append(RawMessage(topic, body, self._mid, 1, now, 0))
            batch = self.decoder.decode(raw)
            with self.engine.begin() as conn:
                result = write_batch(conn, batch, now=now, gaps=[], last_seq={}, keep_rollup=self.keep_rollup)
                self.received += len(raw)
                self.stored += result.stored
                # Ingest reports its counters like this (ingest/pipeline.py), so the ingest page has a process.
                conn.execute(
                    text(
                        "INSERT INTO ingest_status (instance, updated_at, status, counters) "
                        "VALUES ('ingest-test-1', now(), 'ok', CAST(:c AS jsonb)) ON CONFLICT (instance) DO UPDATE "
                        "SET updated_at = excluded.updated_at, status = excluded.status, counters = excluded.counters"
                    ),
                    {
                        "c": json.dumps(
                            {"received": self.received, "stored": self.stored, "duplicate": 0, "batches": self._mid}
                        )
                    },
                )
            return result.stored


def telemetry(estate: str, device: str, values: dict[str, float], ts: datetime | None = None) -> tuple[str, dict]:
    stamp = (ts or clock.now()).isoformat()
    return f"steward/{estate}/up/{device}/telemetry", {"v": 1, "ts": stamp, "values": values}


class Feeder(threading.Thread):
    """Plays the room devices' simulators: every ``period`` seconds one telemetry frame per device, near
    each point's nominal value. ``overrides`` pins chosen (device, metric) values; ``silent`` devices
    never report (so the pages keep something stale to show)."""

    def __init__(
        self,
        ingest: InProcessIngest,
        estate: str,
        nominal: dict[str, dict[str, tuple[float, float]]],
        *,
        silent: set[str] | None = None,
        period: float = 2.0,
    ) -> None:
        super().__init__(daemon=True, name="dashboard-feeder")
        self.ingest, self.estate, self.nominal, self.period = ingest, estate, nominal, period
        self.silent = silent if silent is not None else set()
        self.overrides: dict[tuple[str, str], float] = {}
        self.stop_event = threading.Event()
        self.rng = random.Random(7)
        self.errors: list[BaseException] = []

    def frame(self) -> list[tuple[str, dict]]:
        msgs = []
        for device, points in self.nominal.items():
            if device in set(self.silent):
                continue
            values = {}
            for metric, (nominal, noise) in points.items():
                pinned = self.overrides.get((device, metric))
                values[metric] = pinned if pinned is not None else round(nominal + self.rng.gauss(0, noise), 3)
            msgs.append(telemetry(self.estate, device, values))
        return msgs

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.ingest.send(self.frame())
            except BaseException as exc:  # reported by the test, not lost in a thread
                self.errors.append(exc)
                return
            self.stop_event.wait(self.period)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class AppServer:
    """``uvicorn steward.asgi:app`` in a child process on a free port, as ``steward run api`` serves it."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "api.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "STEWARD_ENV": "testing",
            "STEWARD_DATABASE_URL": database_url,
            "STEWARD_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> AppServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it until it exits
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "steward.asgi:app", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/login", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"api not up within {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn drains, sse-starlette ends the open streams
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
