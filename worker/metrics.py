"""The worker's Prometheus text (/metrics): per job, when it last succeeded, its period, runs and failures.

Enough for "a job is late" (deploy/prometheus/steward-rules.yml: ``time() - last success`` against a
multiple of the period) and "a job keeps failing". With several workers each job runs in whichever one
takes its advisory lock first, so each process reports only its own successes; the rules take the
newest over all workers (``max by (job_name)``). The label is ``job_name`` because Prometheus owns ``job``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from worker.jobs import Job


class Worker(Protocol):
    """What the metrics read of `worker.runner.Worker` (a protocol: runner imports this module)."""

    jobs: list[Job]
    started_at: float
    last_success: dict[str, float]
    runs: dict[str, int]
    failures: dict[str, int]


# Every metric name this module writes (tests check the alert rules only use names that exist).
METRIC_NAMES = (
    "steward_worker_started_timestamp_seconds",
    "steward_worker_job_last_success_timestamp_seconds",
    "steward_worker_job_period_seconds",
    "steward_worker_job_runs_total",
    "steward_worker_job_failures_total",
)


def prometheus_text(worker: Worker) -> str:
    lines = [
        "# HELP steward_worker_started_timestamp_seconds Unix time this worker process started.",
        "# TYPE steward_worker_started_timestamp_seconds gauge",
        f"steward_worker_started_timestamp_seconds {worker.started_at:.3f}",
    ]
    per_job = (
        (
            "steward_worker_job_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the job's last successful run in this process (the start until the first).",
            lambda name: f"{worker.last_success[name]:.3f}",
        ),
        ("steward_worker_job_period_seconds", "gauge", "How often the job is due.", None),
        ("steward_worker_job_runs_total", "counter", "Successful runs in this process.", worker.runs.get),
        ("steward_worker_job_failures_total", "counter", "Runs that raised (rolled back).", worker.failures.get),
    )
    for metric, kind, help_text, value in per_job:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        for job in worker.jobs:
            v = f"{job.period_s:g}" if value is None else value(job.name)
            lines.append(f'{metric}{{job_name="{job.name}"}} {v}')
    return "\n".join(lines) + "\n"


def serve_metrics(worker: Worker, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve /metrics on host:port from a daemon thread (port 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith("/metrics"):
                self.send_error(404)
                return
            body = prometheus_text(worker).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


__all__ = ["METRIC_NAMES", "prometheus_text", "serve_metrics"]
