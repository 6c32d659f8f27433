"""Ingest counters and health, served as JSON (/health) and Prometheus text (/metrics)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

# A batch commit taking longer than this is a stall (a healthy one takes well under a second at full load).
COMMIT_STALL_S = 10.0


@dataclass
class Counters:
    received: int = 0
    stored: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    quarantined: int = 0
    batches: int = 0
    commit_failures: int = 0
    queue_overflow: int = 0
    seq_gaps: int = 0
    rate_limited: int = 0  # quarantined over a device's rate limit (also counted in `quarantined`)
    broker_id_reuse: int = 0  # the broker sent a packet id that was still unacknowledged


@dataclass
class Health:
    counters: Counters = field(default_factory=Counters)
    mqtt_connected: bool = False
    database_ok: bool = True
    last_error: str = ""
    last_commit_at: float | None = None
    first_commit_at: float | None = None  # a partition's takeover gap: claim (started_at) → first commit
    queue_depth: int = 0
    started_at: float = field(default_factory=time.time)
    # When the batch being written now started (None between batches): a commit that hangs — a lock held on
    # a written table, a database that answers but crawls (matrix M8) — is "degraded" after COMMIT_STALL_S,
    # as an outage is, while ingest stays connected and holds its backlog unacked.
    writing_since: float | None = None
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)  # tests pass their own

    def commit_stalled_s(self) -> float:
        since = self.writing_since
        return 0.0 if since is None else max(0.0, self.clock() - since)

    @property
    def status(self) -> str:
        """ok, degraded (database failing or a commit stalled: not acking, retrying) or disconnected (no broker)."""
        if not self.database_ok or self.commit_stalled_s() > COMMIT_STALL_S:
            return "degraded"
        if not self.mqtt_connected:
            return "disconnected"
        return "ok"

    def snapshot(self) -> dict[str, object]:
        return {
            "status": self.status,
            "mqtt_connected": self.mqtt_connected,
            "database_ok": self.database_ok,
            "last_error": self.last_error,
            "last_commit_at": self.last_commit_at,
            "first_commit_at": self.first_commit_at,
            "queue_depth": self.queue_depth,
            "commit_stalled_s": round(self.commit_stalled_s(), 1),
            "uptime_s": round(time.time() - self.started_at, 1),
            "counters": asdict(self.counters),
        }

    def prometheus(self) -> str:
        lines = []
        for name, value in asdict(self.counters).items():
            lines.append(f"# TYPE steward_ingest_{name}_total counter")
            lines.append(f"steward_ingest_{name}_total {value}")
        lines.append("# TYPE steward_ingest_up gauge")
        lines.append(f"steward_ingest_up {1 if self.status == 'ok' else 0}")
        lines.append("# TYPE steward_ingest_queue_depth gauge")
        lines.append(f"steward_ingest_queue_depth {self.queue_depth}")
        lines.append("# TYPE steward_ingest_commit_stalled_seconds gauge")
        lines.append(f"steward_ingest_commit_stalled_seconds {self.commit_stalled_s():.1f}")
        return "\n".join(lines) + "\n"


class HealthView(Protocol):
    """What /health and /metrics serve: one ingest (Health) or a process's partitions (PartitionedHealth)."""

    @property
    def status(self) -> str: ...

    def snapshot(self) -> dict[str, object]: ...

    def prometheus(self) -> str: ...


_WORST = {"ok": 0, "disconnected": 1, "degraded": 2}


class PartitionedHealth:
    """The health of one ingest process of a partitioned deployment (STEWARD_INGEST_PARTITIONS > 1): each partition
    it owns has its own Health; a process owning none (a standby) is ok as long as it can hold locks."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.owned: dict[int, Health] = {}
        self.estates: dict[int, list[str]] = {}  # each owned partition's estates, as subscribed
        self.locks_ok = False  # the advisory-lock connection is up
        self.takeovers = 0  # partitions claimed after this process started (includes the first claims)
        self.started_at = time.time()
        self._lock = threading.Lock()

    def add(self, k: int, health: Health) -> None:
        with self._lock:
            self.owned = {**self.owned, k: health}
            self.takeovers += 1

    def drop(self, k: int) -> None:
        with self._lock:
            self.owned = {p: h for p, h in self.owned.items() if p != k}

    @property
    def status(self) -> str:
        if not self.locks_ok:
            return "degraded"
        owned = self.owned
        return max((h.status for h in owned.values()), key=lambda s: _WORST.get(s, 2), default="ok")

    def snapshot(self) -> dict[str, object]:
        owned = self.owned
        total = Counters()
        for h in owned.values():
            for name, value in asdict(h.counters).items():
                setattr(total, name, getattr(total, name) + value)
        return {
            "status": self.status,
            "partitions": self.partitions,
            "owned": sorted(owned),
            "role": "owner" if owned else "standby",
            "mqtt_connected": all(h.mqtt_connected for h in owned.values()),
            "database_ok": self.locks_ok and all(h.database_ok for h in owned.values()),
            "uptime_s": round(time.time() - self.started_at, 1),
            "takeovers": self.takeovers,
            "counters": asdict(total),
            "by_partition": {
                str(k): {**h.snapshot(), "estates": self.estates.get(k, [])} for k, h in sorted(owned.items())
            },
        }

    def prometheus(self) -> str:
        owned = sorted(self.owned.items())
        lines = []
        for name in asdict(Counters()):
            lines.append(f"# TYPE steward_ingest_{name}_total counter")
            lines.extend(
                f'steward_ingest_{name}_total{{partition="{k}"}} {getattr(h.counters, name)}' for k, h in owned
            )
        lines.append("# TYPE steward_ingest_up gauge")
        lines.extend(f'steward_ingest_up{{partition="{k}"}} {1 if h.status == "ok" else 0}' for k, h in owned)
        lines.append("# TYPE steward_ingest_queue_depth gauge")
        lines.extend(f'steward_ingest_queue_depth{{partition="{k}"}} {h.queue_depth}' for k, h in owned)
        lines.append("# TYPE steward_ingest_commit_stalled_seconds gauge")
        lines.extend(
            f'steward_ingest_commit_stalled_seconds{{partition="{k}"}} {h.commit_stalled_s():.1f}' for k, h in owned
        )
        lines.append("# TYPE steward_ingest_partitions_owned gauge")
        lines.append(f"steward_ingest_partitions_owned {len(owned)}")
        lines.append("# TYPE steward_ingest_partition_locks_up gauge")
        lines.append(f"steward_ingest_partition_locks_up {1 if self.locks_ok else 0}")
        return "\n".join(lines) + "\n"


def serve_health(health: HealthView, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start a tiny HTTP server on host:port in a daemon thread (port 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype = health.prometheus().encode(), "text/plain; version=0.0.4"
            elif self.path.startswith("/health"):
                body, ctype = json.dumps(health.snapshot()).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200 if health.status == "ok" or self.path.startswith("/metrics") else 503)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="ingest-health", daemon=True).start()
    return server
