"""Ingest counters and health, served as JSON (/health) and Prometheus text (/metrics)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def serve_health(health: Health, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
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
