"""Run ``steward run ingest`` as a child process, so tests can SIGKILL and restart it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from steward.broker import free_port


class IngestProcess:
    def __init__(
        self, database_url: str, mqtt_url: str, log_dir: Path, *, client_id: str = "steward-ingest-test", **env: str
    ) -> None:
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "STEWARD_ENV": "testing",
            "STEWARD_DATABASE_URL": database_url,
            "STEWARD_MQTT_URL": mqtt_url,
            "STEWARD_MQTT_CLIENT_ID": client_id,
            "STEWARD_INGEST_HEALTH_PORT": str(self.health_port),
            "STEWARD_LOG_LEVEL": "INFO",
            # The tests' and benches' load stamps a reading every second for each device (60× a 60 s device's
            # rate, far more at bench rates): the per-device rate limit (ingest/ratelimit.py) would quarantine
            # it. Off here; the M15 fault test switches it on.
            "STEWARD_INGEST_RATE_LIMIT_FACTOR": "0",
            **env,
        }
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> IngestProcess:
        self.starts += 1
        log = open(self.log_dir / f"ingest-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "steward", "run", "ingest"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_healthy()
        return self

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/health", timeout=1) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:  # 503 still carries the JSON body
            return dict(json.load(err))
        except OSError:
            return None

    def wait_healthy(self, timeout: float = 30, status: str = "ok") -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h is not None and h.get("status") == status:
                return h
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {self.proc.returncode}; see {self.log_dir}")
            time.sleep(0.1)
        raise TimeoutError(f"ingest not {status} within {timeout}s (last health: {self.health()})")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
