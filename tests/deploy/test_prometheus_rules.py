"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`),
the example scrape configuration passes `promtool check config`, every rule speaks Chinese and English, and
every Steward metric a rule uses is one the code really serves (scraped from the ingest and worker /metrics).

promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it these tests skip, unless
CI=true or STEWARD_REQUIRE_PROMTOOL=1, where a missing promtool fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from core.settings import Settings
from ingest.health import Health, serve_health
from steward.broker import free_port
from storage.db import make_sessionmaker
from worker.jobs import LOCK_NAMESPACE, Job, default_jobs
from worker.metrics import METRIC_NAMES, prometheus_text
from worker.runner import Worker, run_worker

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "steward-rules.yml"
REQUIRED = os.environ.get("CI", "").lower() == "true" or os.environ.get("STEWARD_REQUIRE_PROMTOOL") == "1"

# Metrics the rules use that the API serves only with a read replica configured (STEWARD_DATABASE_READ_URL):
# tests/api/test_read_replica.py scrapes them from the API's /metrics against a real streaming replica.
SERVED_WITH_A_REPLICA = {"steward_replica_lag_seconds": "tests/api/test_read_replica.py"}


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if REQUIRED:
            pytest.fail("promtool not found: apt-get install -y prometheus (CI requires it)")
        pytest.skip("promtool not installed (apt-get install -y prometheus); CI=true makes this a failure")
    return found


def run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}"
    return out


def test_the_rules_pass_promtool_check(promtool: str) -> None:
    out = run([promtool, "check", "rules", str(RULES)], PROM)
    assert "SUCCESS" in out


def test_the_rules_pass_their_unit_tests(promtool: str) -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests, "no promtool unit tests in deploy/prometheus/tests"
    out = run([promtool, "test", "rules", *map(str, tests)], PROM / "tests")
    assert "FAILED" not in out


def test_the_example_scrape_config_is_valid(promtool: str, tmp_path: Path) -> None:
    """The whole check (rule files loaded, the token file present), with the token path moved into tmp."""
    token = tmp_path / "steward-api-token"
    token.write_text("not-a-real-token\n")
    config = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/steward-api-token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(RULES, tmp_path / RULES.name)
    out = run([promtool, "check", "config", "prometheus.yml"], tmp_path)
    assert "SUCCESS" in out


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_rule_has_a_severity_and_chinese_and_english_annotations() -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    found = rules()
    assert {r["alert"] for r in found} >= {
        "StewardIngestDegraded",
        "StewardIngestBacklogGrowing",
        "StewardDeadLettersRising",
        "StewardWorkerJobLate",
        "StewardReplicaLagHigh",
    }
    for rule in found:
        a = rule["annotations"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for key in ("summary_zh", "description_zh"):
            assert cjk.search(a[key]), f"{rule['alert']}: {key} is not Chinese"
        for key in ("summary_en", "description_en"):
            assert a[key], f"{rule['alert']}: no {key}"
            assert not cjk.search(a[key]), f"{rule['alert']}: {key} is not English"
        assert cjk.search(a["summary"]), f"{rule['alert']}: summary has no Chinese"
        assert " / " in a["summary"], f"{rule['alert']}: summary is not 中文 / English"


def exposed_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            assert m, line
            names.add(m.group(0))
    return names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


@pytest.fixture
def db(fresh_database: str) -> Iterator[Engine]:
    eng = create_engine(fresh_database)
    yield eng
    eng.dispose()


def test_every_steward_metric_the_rules_use_is_served(db: Engine) -> None:
    # Ingest: its own exporter, over HTTP.
    server = serve_health(Health(), 0)
    try:
        served = exposed_names(scrape(server.server_address[1]))
    finally:
        server.shutdown()
    # Worker: `steward run worker`'s loop with its /metrics on (STEWARD_WORKER_METRICS_PORT).
    port = free_port()
    url = str(db.url.render_as_string(hide_password=False))
    settings = Settings(database_url=url, worker_metrics_port=port)
    stop = threading.Event()
    t = threading.Thread(target=run_worker, args=(settings, db, stop), kwargs={"mqtt": False})
    t.start()
    try:
        text = ""
        for _ in range(100):
            try:
                text = scrape(port)
                break
            except OSError:
                stop.wait(0.1)
        assert text, "the worker's /metrics never answered"
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    worker_names = exposed_names(text)
    assert worker_names == set(METRIC_NAMES)
    for job in default_jobs():
        assert f'steward_worker_job_period_seconds{{job_name="{job.name}"}} {job.period_s:g}' in text
    served |= worker_names

    used = {name for rule in rules() for name in re.findall(r"\bsteward_[a-z0-9_]+", rule["expr"])}
    assert used - served - set(SERVED_WITH_A_REPLICA) == set()
    for name, test in SERVED_WITH_A_REPLICA.items():
        assert f'"{name}" in metrics' in (ROOT / test).read_text(encoding="utf-8"), f"{test} must check {name}"


def test_worker_metrics_say_when_each_job_last_succeeded(db: Engine) -> None:
    """A job that succeeds moves its timestamp to the (injected) wall clock; one that fails keeps the start
    and counts the failure, so the "late" rule sees it age from the start."""
    wall = iter([1000.0, 1060.0, 1120.0, 1180.0])

    def ok(session: Session, now: datetime) -> None:
        pass

    def broken(session: Session, now: datetime) -> None:
        raise RuntimeError("boom")

    worker = Worker(
        make_sessionmaker(db),
        [Job("fine", 30.0, LOCK_NAMESPACE | 0x7C, ok), Job("broken", 60.0, LOCK_NAMESPACE | 0x7D, broken)],
        wall=lambda: next(wall),
    )
    worker.run_once()
    text = prometheus_text(worker)
    assert "steward_worker_started_timestamp_seconds 1000.000" in text
    assert 'steward_worker_job_last_success_timestamp_seconds{job_name="fine"} 1060.000' in text
    assert 'steward_worker_job_last_success_timestamp_seconds{job_name="broken"} 1000.000' in text
    assert 'steward_worker_job_runs_total{job_name="fine"} 1' in text
    assert 'steward_worker_job_failures_total{job_name="broken"} 1' in text
    assert 'steward_worker_job_period_seconds{job_name="broken"} 60' in text
