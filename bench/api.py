#!/usr/bin/env python
"""API read latency under ingest load: ``steward run api`` answering while ingest stores 4,000 msg/s.

One run, on this machine:

1. a fresh database with an estate of D five-point sensors in power rooms of R devices each, and
   history for every point (one sample a minute for the last 26 h by default) written by PostgreSQL
   itself in time order, as ingest would have (``samples_hourly`` rolled up from it on plain
   PostgreSQL, the continuous aggregates refreshed on TimescaleDB);
2. Mosquitto, ``steward run ingest`` and fastpub publishing telemetry paced at ``--rate`` msg/s
   (device times "now") for the whole measurement;
3. ``steward run api`` (uvicorn) with 1 worker, then 2, against the same database; an admin with a
   bearer token (created through accounts.service) and a browser session (POST /api/auth/login);
4. sequential requests with httpx, interleaved across the endpoints (each turn goes to the endpoint
   that has had the least time so far): the 24 h series of a point by hour and by 5 minutes (rotating
   over 50 points), a room's live values, the room page (HTML) and the room's system diagram (rotating over 10
   rooms); and the energy report (issue 15 §4) of a second, metered estate with 90 days of history
   (``--energy-households`` households × electricity, cold- and hot-water meters plus building master meters),
   as the page (HTML) and as JSON, over its last three months.

Everything is throwaway, as in bench/ingest.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, where this very file would shadow the ``api`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CN,
    ESTATE,
    ROWS_PER_FRAME,
    BenchError,
    CommitListener,
    CpuMeter,
    FrameClock,
    Harness,
    build_fastpub,
    figures_table,
    import_bench_estate,
    libpq_url,
    log,
    percentile,
    run_bench,
    write_frames,
)

ADMIN = "bench-admin"
ADMIN_PASSWORD = "bench-password-not-secret"
SERIES_TARGET_P95_MS = 100.0
# Issue 15 acceptance: the estate overview (its 125 room cards with their alarm state), a room's diagram and the
# energy page, p95 ≤ 150 ms each with ingest running.
OVERVIEW_TARGET_P95_MS = 150.0
ENERGY_TARGET_P95_MS = 150.0  # issue 15 §4: the energy page for an estate with 90 days of history
ENERGY_ESTATE = "bench-energy"
LOAD_TOLERANCE = 0.95  # the load counts as sustained at ≥ 95 % of --rate
API_START_S = 60.0
# Frames beyond the measurement: ingest warm-up, API start-up and log-in per configuration, slack.
LOAD_MARGIN_S = 30.0
FRAMES_WRITTEN_PER_S = 80_000  # write_frames on this machine: 600,000 in 5.4 s; the estimate errs long
PER_CONFIG_OVERHEAD_S = 20.0


@dataclass
class Endpoint:
    name: str
    label: str
    urls: list[str]
    auth: str  # "bearer" or "cookie"
    check: Any  # (response) -> str | None: what is wrong with an answer
    target_ms: float | None = None
    latencies: list[float] = field(default_factory=list)
    spent: float = 0.0
    errors: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class Figures:
    config: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# history: written by PostgreSQL, in time order like ingest's batches


def load_history(db_url: str, *, end: datetime, hours: float, interval_s: int, timescale: bool) -> dict[str, Any]:
    """Samples for every gauge point from ``end - hours`` up to (not including) ``end``, one every
    ``interval_s`` seconds, inserted time-major (all points at t, then all at t + interval): the heap
    layout ingest produces, where one point's day is spread over many pages.

    On plain PostgreSQL the table's indexes are dropped for the load and rebuilt after it (a bulk
    build: 2 × faster, and the index comes out a little denser than one grown by ingest), then
    ``samples_hourly`` is computed from the rows exactly as ingest folds them in. On TimescaleDB the
    rows go into the hypertable as they are and the continuous aggregates are refreshed.
    """
    import psycopg

    started = time.monotonic()
    lo = end - timedelta(hours=hours)
    value = "40 + (p.id %% 37) + ((extract(epoch FROM t)::bigint / 60 + p.id) %% 101) / 10.0"
    # LATERAL on t makes t the outer loop, whatever the planner would prefer: rows come out time-major.
    insert = (
        f"INSERT INTO samples (ts, point_id, value) SELECT t, p.id, {value} "
        "FROM generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz, %(step)s::interval) AS t "
        "CROSS JOIN LATERAL (SELECT id FROM points WHERE kind <> 'state' AND t IS NOT NULL ORDER BY id) AS p"
    )
    params = {"lo": lo, "hi": end - timedelta(microseconds=1), "step": timedelta(seconds=interval_s)}
    timings: dict[str, float] = {}

    def timed(name: str, conn: Any, sql: str, args: dict[str, Any] | None = None) -> None:
        t = time.monotonic()
        conn.execute(sql, args)
        timings[name] = round(time.monotonic() - t, 1)

    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        if timescale:
            timed("insert", conn, insert, params)
            for view in ("samples_1h", "samples_1d"):
                timed(f"refresh {view}", conn, f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        else:
            constraints = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'samples'::regclass AND contype IN ('p', 'u')"
            ).fetchall()
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'samples' AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = 'samples'::regclass)"
            ).fetchall()
            with conn.transaction():
                for name, _ in indexes:
                    conn.execute(f'DROP INDEX "{name}"')
                for name, _ in constraints:
                    conn.execute(f'ALTER TABLE samples DROP CONSTRAINT "{name}"')
                timed("insert", conn, insert, params)
                t = time.monotonic()
                for name, definition in constraints:
                    conn.execute(f'ALTER TABLE samples ADD CONSTRAINT "{name}" {definition}')
                for _, definition in indexes:
                    conn.execute(definition)
                timings["indexes"] = round(time.monotonic() - t, 1)
            timed(
                "samples_hourly",
                conn,
                # ingest/writer.py SAMPLES_WITH_ROLLUP_SQL, over the whole table at once.
                "INSERT INTO samples_hourly (point_id, bucket, n, total, min, max, last_ts, last) "
                "SELECT point_id, date_trunc('hour', ts, 'UTC'), count(*), sum(value), min(value), max(value), "
                "max(ts), (array_agg(value ORDER BY ts DESC))[1] FROM samples GROUP BY 1, 2",
            )
        # A table that has been in service a while has been vacuumed and analysed: hint bits set,
        # visibility map current, statistics there.
        timed("vacuum analyze", conn, "VACUUM ANALYZE samples")
        if not timescale:
            conn.execute("VACUUM ANALYZE samples_hourly")
        rows = conn.execute("SELECT count(*) FROM samples").fetchone()
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('samples'))").fetchone()
        corr = conn.execute(
            "SELECT correlation FROM pg_stats WHERE tablename = 'samples' AND attname = 'ts' "
            "AND schemaname = current_schema()"
        ).fetchone()
    return {
        "rows": int(rows[0]) if rows else 0,
        "samples_size": size[0] if size else "?",
        "hours": hours,
        "interval_s": interval_s,
        "ts_correlation": round(float(corr[0]), 3) if corr and corr[0] is not None else None,
        "seconds": round(time.monotonic() - started, 1),
        "timings_s": timings,
    }


def load_energy(db_url: str, *, end: datetime, households: int, days: int) -> dict[str, Any]:
    """A metered estate: ``households`` units in buildings of 100, each with an electricity, a cold- and a
    hot-water meter, and an electricity and a cold-water master meter per building; and ``days`` of their day
    rows (`energy_meter_days`, what facility/energy_rollup.py folds the 15-minute registers into, and its sums
    per building and day and per meter and month), written by PostgreSQL as the rollup would have left them. The
    page reads only these, so the registers behind them (households × 3 × 96 a day) are not generated: the
    worker's rollup is not what is measured here."""
    import psycopg

    started = time.monotonic()
    buildings = -(-households // 100)
    first = (end.astimezone(CN).date() - timedelta(days=days - 1)).isoformat()
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn, conn.transaction():
        estate = conn.execute(
            "INSERT INTO estates (code, name, city, timezone, policy) "
            "VALUES (%s, '能耗基准苑', '杭州', 'Asia/Shanghai', '{}') RETURNING id",
            (ENERGY_ESTATE,),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO buildings (estate_id, code, name, floors) "
            "SELECT %s, b::text, b || '幢', 25 FROM generate_series(1, %s) AS b",
            (estate, buildings),
        )
        conn.execute(
            "INSERT INTO units (building_id, code, entrance, floor, area_m2, occupancy, registered_occupants, has_pv) "
            "SELECT b.id, b.code || '-1-' || (100 + n), '1', 1 + n / 4, 89.00, "
            "CASE WHEN n %% 17 = 0 THEN 'vacant' ELSE 'occupied' END, 2, false "
            "FROM buildings b CROSS JOIN generate_series(0, 99) AS n "
            "WHERE b.estate_id = %s AND (b.code::int - 1) * 100 + n < %s",
            (estate, households),
        )
        for kind, prefix, rmax, res in (
            ("electricity_meter", "BE", "999999.99", "0.01"),
            ("cold_water_meter", "BCW", "99999.999", "0.001"),
            ("hot_water_meter", "BHW", "99999.999", "0.001"),
        ):
            conn.execute(
                "INSERT INTO devices (estate_id, code, kind, name, unit_id, serial, register_max, multiplier, "
                "resolution, has_valve, expected_interval_s, attrs) "
                "SELECT %s, %s::text || '-' || u.code, %s, '', u.id, '', %s::numeric, 1, %s::numeric, false, 900, "
                "jsonb_build_object('building', b.code) "
                "FROM units u JOIN buildings b ON b.id = u.building_id WHERE b.estate_id = %s",
                (estate, prefix, kind, rmax, res, estate),
            )
        for kind, prefix in (("electricity_meter", "BEM"), ("cold_water_meter", "BCWM")):
            conn.execute(
                "INSERT INTO devices (estate_id, code, kind, name, serial, register_max, multiplier, resolution, "
                "has_valve, expected_interval_s, attrs) "
                "SELECT %s, %s::text || '-' || b.code, %s, '', '', 9999999.99, 1, 0.01, false, 900, "
                "jsonb_build_object('building', b.code, 'master_of', %s::text) FROM buildings b WHERE b.estate_id = %s",
                (estate, prefix, kind, kind, estate),
            )
        # A household's day: a few kWh / a few hundred litres, varying by meter and day; a master sees about
        # its building's hundred households plus 4 % of loss.
        conn.execute(
            "INSERT INTO energy_meter_days "
            "(device_id, day, estate_id, volume, held_from, last_ts, last_register, updated_at) "
            "SELECT d.id, g.day, d.estate_id, "
            "  round((CASE d.kind WHEN 'electricity_meter' THEN 6 ELSE 0.3 END) * (1 + ((d.id * 7 + g.i) %% 11) / 10.0)"
            "        * (CASE WHEN d.unit_id IS NULL THEN 104 ELSE 1 END), 3), "
            "  '{}', g.day + time '23:45', 1000 + g.i, now() "
            "FROM devices d CROSS JOIN LATERAL ("
            "  SELECT (%s::date + i) AS day, i FROM generate_series(0, %s - 1) AS i) g "
            "WHERE d.estate_id = %s",
            (first, days, estate),
        )
        # ... and the two sums the rollup keeps beside them (facility/energy_rollup.py), which the report reads.
        conn.execute(
            "INSERT INTO energy_building_days (estate_id, day, kind, building_id, master, volume, held) "
            "SELECT r.estate_id, r.day, dv.kind, COALESCE(u.building_id, b.id), dv.unit_id IS NULL, sum(r.volume), 0 "
            "FROM energy_meter_days r JOIN devices dv ON dv.id = r.device_id "
            "LEFT JOIN units u ON u.id = dv.unit_id "
            "LEFT JOIN buildings b ON dv.unit_id IS NULL AND b.estate_id = dv.estate_id "
            "AND b.code = dv.attrs->>'building' "
            "WHERE r.estate_id = %s GROUP BY 1, 2, 3, 4, 5",
            (estate,),
        )
        conn.execute(
            "INSERT INTO energy_meter_months (device_id, month, estate_id, volume) "
            "SELECT device_id, date_trunc('month', day)::date, estate_id, sum(volume) FROM energy_meter_days "
            "WHERE estate_id = %s GROUP BY 1, 2, 3",
            (estate,),
        )
        rows = conn.execute("SELECT count(*) FROM energy_meter_days WHERE estate_id = %s", (estate,)).fetchone()
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        for table in ("energy_meter_days", "energy_building_days", "energy_meter_months"):
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("ANALYZE devices")
        conn.execute("ANALYZE units")
    return {
        "households": households,
        "meters": households * 3 + buildings * 2,
        "days": days,
        "day_rows": int(rows[0]) if rows else 0,
        "seconds": round(time.monotonic() - started, 1),
    }


def energy_months(end: datetime) -> list[str]:
    """This month and the two before it (estate-local), the ones an engineer opens."""
    local = end.astimezone(CN).date()
    m = local.year * 12 + local.month - 1
    return [f"{(m - k) // 12:04d}-{(m - k) % 12 + 1:02d}" for k in range(3)]


def create_admin(db_url: str) -> str:
    """An all-estates admin (password login for the pages) and a bearer token for the JSON API."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from accounts.const import Role
    from accounts.service import create_token, create_user

    engine = create_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            user = create_user(session, username=ADMIN, password=ADMIN_PASSWORD, role=Role.admin, all_estates=True)
            return create_token(session, user, "bench")
    finally:
        engine.dispose()


def pick_targets(db_url: str, points: int, rooms: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Point ids spread evenly over the estate, and (room id, its gauge points) spread over the rooms."""
    import psycopg

    with psycopg.connect(libpq_url(db_url)) as conn:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM points WHERE kind <> 'state' ORDER BY id")]
        room_rows = conn.execute(
            "SELECT r.id, count(p.id) FROM rooms r JOIN devices d ON d.room_id = r.id "
            "JOIN points p ON p.device_id = d.id GROUP BY r.id ORDER BY r.id"
        ).fetchall()
    if not ids or not room_rows:
        raise BenchError("the estate has no points or no rooms")

    def spread(items: list[Any], n: int) -> list[Any]:
        n = min(n, len(items))
        return [items[i * len(items) // n] for i in range(n)]

    return spread(ids, points), [(int(r), int(c)) for r, c in spread(room_rows, rooms)]


# --------------------------------------------------------------------------------------------------
# the API process


class ApiProcess:
    """``python -m steward run api --port P --workers W`` with its own log file."""

    def __init__(self, db_url: str, log_dir: Path, workers: int, extra_env: dict[str, str]) -> None:
        from steward.broker import free_port

        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"api-{workers}w.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "STEWARD_ENV": "testing",
            "STEWARD_DATABASE_URL": db_url,
            "STEWARD_LOG_LEVEL": "WARNING",
            **extra_env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiProcess:
        import httpx2 as httpx  # the dev extra's HTTP client (pyproject.toml)

        cmd = [sys.executable, "-m", "steward", "run", "api", "--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + API_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the API exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    if self.workers > 1:
                        self._wait_workers(deadline)
                    return self
            time.sleep(0.2)
        raise BenchError(f"the API did not answer /health within {API_START_S:.0f}s: {self.log_tail()}")

    def _wait_workers(self, deadline: float) -> None:
        """uvicorn's supervisor answers as soon as one worker listens: wait for the others to start."""
        import psutil

        assert self.proc is not None
        while time.monotonic() < deadline:
            kids = [p for p in self.pids() if p != self.proc.pid]
            listening = 0
            for pid in kids:
                with contextlib.suppress(psutil.Error):
                    if any(c.laddr and c.laddr.port == self.port for c in psutil.Process(pid).net_connections()):
                        listening += 1
            # The socket is inherited from the supervisor, so "listening" shows up in every worker as
            # soon as it exists; give the last one a moment to finish importing the app.
            if len(kids) >= self.workers and listening >= self.workers:
                time.sleep(2.0)
                return
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The uvicorn process and its workers (and their multiprocessing helpers)."""
        import psutil

        if self.proc is None:
            return []
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent.pid] + [c.pid for c in parent.children(recursive=True)]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return
        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for child in children:  # only the processes this API started
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()


# --------------------------------------------------------------------------------------------------
# checks of the answers (a fast wrong answer is not a result)


def check_series(min_buckets: int) -> Any:
    def check(r: Any) -> str | None:
        body = r.json()
        n = len(body.get("items", []))
        return None if n >= min_buckets else f"{n} buckets (expected ≥ {min_buckets}) from {body.get('source')}"

    return check


def check_live(expected: dict[str, int]) -> Any:
    def check(r: Any) -> str | None:
        room = r.url.path.split("/")[3]
        body = r.json()
        if len(body) != expected[room]:
            return f"{len(body)} values for room {room} (expected {expected[room]})"
        missing = sum(1 for v in body if v.get("value") is None)
        return f"{missing} points without a value in room {room}" if missing else None

    return check


def check_page(r: Any) -> str | None:
    text = r.text
    if 'id="page-data"' not in text or "chart-box" not in text:
        return "the room page has no charts"
    return None


def check_diagram(r: Any) -> str | None:
    text = r.text
    if 'class="diagram' not in text or "data-device-id=" not in text or "data-point-id=" not in text:
        return "the diagram page draws no devices or values"
    return None


def check_overview(r: Any) -> str | None:
    if r.text.count("room-card") < 100:
        return "the estate overview lists fewer than 100 rooms"
    return None


def check_energy_page(r: Any) -> str | None:
    if 'id="energy-summary"' not in r.text or 'id="energy-data"' not in r.text:
        return "the energy page has no summary or no charts"
    return None


def check_energy_json(r: Any) -> str | None:
    body = r.json()
    if not body.get("usage") or not body.get("daily"):
        return "the energy report is empty"
    return None


# --------------------------------------------------------------------------------------------------
# the bench


class Bench(Harness):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.figures = Figures()
        self.energy_months: list[str] = []

    def run(self) -> Figures:
        a = self.args
        cfg = self.figures.config
        cfg.update(
            devices=a.devices,
            room_size=a.room_size,
            rate=a.rate,
            workers=a.workers,
            duration_s=a.duration,
            max_requests=a.requests,
            warmup_requests=a.warmup,
            points_rotated=a.points,
            rooms_rotated=a.rooms,
            energy_households=a.energy_households,
            energy_days=a.energy_days,
        )
        cfg["git"] = self._git_describe()
        cfg["background_cpu_pct_before"] = self.check_idle()

        if a.rate > 0:
            log("building fastpub")
            self.fastpub_bin = build_fastpub(self.tmp)

        db_url = self.create_database(cfg)
        timescale = cfg["timescaledb"]
        t = time.monotonic()
        points = import_bench_estate(db_url, a.devices, a.room_size)
        log(f"estate imported: {a.devices} devices, {points} points in {time.monotonic() - t:.1f}s")

        t0 = datetime.now(UTC).replace(microsecond=0)
        log(f"history: {a.history_hours:g} h, one sample every {a.history_interval} s for each of {points} points")
        history = load_history(
            db_url, end=t0, hours=a.history_hours, interval_s=a.history_interval, timescale=timescale
        )
        self.figures.setup["history"] = history
        log(f"history: {history['rows']:,} rows ({history['samples_size']}) in {history['seconds']} s")

        if a.energy_households > 0:
            log(f"energy: {a.energy_households:,} households × 3 meters, {a.energy_days} days of day rows")
            energy = load_energy(db_url, end=t0, households=a.energy_households, days=a.energy_days)
            self.figures.setup["energy"] = energy
            log(f"energy: {energy['day_rows']:,} day rows in {energy['seconds']} s")
        self.energy_months = energy_months(t0) if a.energy_households > 0 else []
        token = create_admin(db_url)
        point_ids, rooms = pick_targets(db_url, a.points, a.rooms)
        self.figures.setup.update(points=points, rooms_total=-(-a.devices // a.room_size), points_per_room=rooms[0][1])

        listener = CommitListener(db_url)
        self.on_cleanup("close listener", listener.close)
        ingest = broker = pub = None
        if a.rate > 0:
            broker = self.start_broker("mosquitto")
            log("starting ingest")
            ingest = self.start_ingest(db_url, broker)
            self.figures.config["ingest_settings"] = self._ingest_settings(ingest.env)
            frames = self.write_load(a.rate)
            log(f"load: fastpub at {a.rate:g} msg/s ({a.rate * ROWS_PER_FRAME:,.0f} readings/s)")
            pub = self.fastpub(frames, broker.port, rate=a.rate, timeout=3600)
            mark = listener.mark()
            listener.wait_rows(mark, int(a.rate * ROWS_PER_FRAME * 3), timeout=60)
            log("load: ingest is committing")

        for workers in a.workers:
            self.figures.runs.append(
                self.measure(db_url, workers, token, point_ids, rooms, listener, ingest, broker, pub)
            )

        if pub is not None:
            proc = pub["proc"]
            if proc.poll() is not None:
                raise BenchError(f"fastpub ended before the measurement did (exit {proc.returncode})")
            proc.kill()
            proc.wait(5)
        self.final_checks(ingest)
        return self.figures

    def write_load(self, rate: float) -> Path:
        """The frames fastpub publishes, with device times that run with the wall clock from the moment the load
        starts (frame k of every device at start + k × devices / rate), as a live estate's would: the overview
        counts the last seconds' rows and calls a point stale 90 s after its last sample, so frames stamped
        with the time the setup began (a minute or more earlier) measured a different page. Written after the
        history, then the load waits for its first device time."""
        a = self.args
        seconds = LOAD_MARGIN_S + len(a.workers) * (a.duration + PER_CONFIG_OVERHEAD_S)
        count = int(rate * seconds)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2 + count / FRAMES_WRITTEN_PER_S)
        frames = self.tmp / "load.txt"
        log(f"writing {count:,} frames ({seconds:.0f} s of load), device times from {start:%H:%M:%S} UTC")
        clock = FrameClock(start.astimezone(CN), timedelta(seconds=a.devices / rate))
        write_frames(frames, devices=a.devices, count=count, first_frame=0, clock=clock)
        time.sleep(max(0.5, (start - datetime.now(UTC)).total_seconds()))  # ≥ 0.5 s: ingest's SUBSCRIBE follows CONNACK
        return frames

    def measure(
        self,
        db_url: str,
        workers: int,
        token: str,
        point_ids: list[int],
        rooms: list[tuple[int, int]],
        listener: CommitListener,
        ingest: Any,
        broker: Any,
        pub: dict[str, Any] | None,
    ) -> dict[str, Any]:
        import httpx2 as httpx  # the dev extra's HTTP client (pyproject.toml)

        a = self.args
        log(f"API with {workers} worker{'s' if workers > 1 else ''}: starting")
        api_env = dict(kv.split("=", 1) for kv in a.api_env)
        api = ApiProcess(db_url, self.tmp / "logs", workers, api_env)
        self.on_cleanup(f"stop API ({workers} workers)", api.stop)
        api.start()
        bearer = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        browser = httpx.Client(base_url=api.url, timeout=30)
        try:
            login = browser.post("/api/auth/login", json={"username": ADMIN, "password": ADMIN_PASSWORD})
            if login.status_code != 200 or not browser.cookies:
                raise BenchError(f"login failed: {login.status_code} {login.text[:200]}")
            endpoints = self._endpoints(point_ids, rooms)
            clients = {"bearer": bearer, "cookie": browser}
            for ep in endpoints:  # connections, caches, the first compile of each query path
                for i in range(a.warmup):
                    r = clients[ep.auth].get(ep.urls[i % len(ep.urls)])
                    if r.status_code != 200:
                        raise BenchError(f"{ep.name}: warm-up got {r.status_code} {r.text[:200]}; {api.log_tail()}")

            pids: dict[str, list[int]] = {"api": api.pids(), "postgres": self._backend_pids(db_url)}
            if ingest is not None and pub is not None:
                pids.update(ingest=[ingest.proc.pid], mosquitto=[broker.proc.pid], fastpub=[pub["proc"].pid])
            meter = CpuMeter(pids)
            self_cpu0 = time.process_time()
            health0 = ingest.health() if ingest is not None else None
            mark, started = listener.mark(), time.time()
            log(f"API with {workers} worker{'s' if workers > 1 else ''}: measuring for up to {a.duration:g} s")
            self._requests(endpoints, clients, deadline=time.monotonic() + a.duration)
            ended = time.time()
            cpu = meter.stop()
            bench_cpu = time.process_time() - self_cpu0
            health1 = ingest.health() if ingest is not None else None
        finally:
            bearer.close()
            browser.close()
        api.stop()
        if pub is not None and pub["proc"].poll() is not None:
            raise BenchError(f"fastpub ended during the measurement (exit {pub['proc'].returncode}): load stopped")

        cpu.pop("ingest_threads_cpu_s", None)
        accounted = sum(v for k, v in cpu.items() if k.endswith("_cpu_s") and k != "machine_busy_cpu_s") + bench_cpu
        cpu["bench_cpu_s"] = round(bench_cpu, 3)
        cpu["other_cpu_s"] = round(cpu.get("machine_busy_cpu_s", accounted) - accounted, 2)
        if cpu["other_cpu_s"] > 0.1 * cpu["wall_s"] * cpu["cpus"]:
            log(
                f"warning: other processes used {cpu['other_cpu_s']:.1f} CPU-s during the measurement "
                f"({cpu['other_cpu_s'] / cpu['wall_s']:.2f} CPUs): latencies are skewed high"
            )
        run: dict[str, Any] = {"workers": workers, "endpoints": {}, "cpu": cpu}
        for ep in endpoints:
            lat = sorted(x * 1000 for x in ep.latencies)
            run["endpoints"][ep.name] = {
                "label": ep.label,
                "n": len(lat),
                "p50_ms": round(percentile(lat, 50), 1),
                "p95_ms": round(percentile(lat, 95), 1),
                "p99_ms": round(percentile(lat, 99), 1),
                "max_ms": round(lat[-1], 1) if lat else None,
                "mean_ms": round(sum(lat) / len(lat), 1) if lat else None,
                "mean_kb": round(ep.bytes / len(lat) / 1024, 1) if lat else None,
                "target_p95_ms": ep.target_ms,
                "errors": len(ep.errors),
                "first_errors": ep.errors[:3],
            }
        if ingest is not None:
            events = [(at, n) for at, n in listener.since(mark) if started <= at <= ended]
            stored = sum(n for _, n in events)
            wall = ended - started
            c0, c1 = (health0 or {}).get("counters", {}), (health1 or {}).get("counters", {})
            run["load"] = {
                "target_messages_per_s": a.rate,
                "messages_per_s": round(stored / ROWS_PER_FRAME / wall, 1),
                "readings_per_s": round(stored / wall, 1),
                "received_per_s": round((c1.get("received", 0) - c0.get("received", 0)) / wall, 1),
                "batches": len(events),
                "queue_depth_end": (health1 or {}).get("queue_depth"),
                "sustained": stored / ROWS_PER_FRAME / wall >= LOAD_TOLERANCE * a.rate,
            }
            if not run["load"]["sustained"]:
                log(f"warning: ingest stored {run['load']['messages_per_s']:,.0f} msg/s, below {a.rate:g}")
        summary = ", ".join(
            f"{name} p95 {e['p95_ms']} ms (n={e['n']})" for name, e in run["endpoints"].items() if e["n"]
        )
        log(f"API with {workers} worker{'s' if workers > 1 else ''}: {summary}")
        return run

    def _endpoints(self, point_ids: list[int], rooms: list[tuple[int, int]]) -> list[Endpoint]:
        # A 24 h range from now holds 24 or 25 hourly buckets and 288 or 289 five-minute buckets.
        return [
            Endpoint(
                "series_1h",
                "series 24 h / 1 h buckets",
                [f"/api/points/{p}/series?bucket=1h" for p in point_ids],
                "bearer",
                check_series(24),
                target_ms=SERIES_TARGET_P95_MS,
            ),
            Endpoint(
                "series_5m",
                "series 24 h / 5 min buckets",
                [f"/api/points/{p}/series?bucket=5m" for p in point_ids],
                "bearer",
                check_series(288),
            ),
            Endpoint(
                "room_live",
                "room live values (JSON)",
                [f"/api/rooms/{r}/live" for r, _ in rooms],
                "bearer",
                check_live({str(r): n for r, n in rooms}),
            ),
            Endpoint("room_page", "room page (HTML, cookie)", [f"/rooms/{r}" for r, _ in rooms], "cookie", check_page),
            Endpoint(
                "room_diagram",
                "room diagram (SVG page, cookie)",
                [f"/rooms/{r}/diagram" for r, _ in rooms],
                "cookie",
                check_diagram,
                target_ms=OVERVIEW_TARGET_P95_MS,
            ),
            Endpoint(
                "estate_overview",
                "estate overview, 125 rooms with alarm state (HTML, cookie)",
                [f"/estates/{ESTATE}"],
                "cookie",
                check_overview,
                target_ms=OVERVIEW_TARGET_P95_MS,
            ),
            *(
                [
                    Endpoint(
                        "energy_page",
                        "energy page, 90 days of history (HTML, cookie)",
                        [f"/energy?estate={ENERGY_ESTATE}&month={m}" for m in self.energy_months],
                        "cookie",
                        check_energy_page,
                        target_ms=ENERGY_TARGET_P95_MS,
                    ),
                    Endpoint(
                        "energy_json",
                        "energy report (JSON)",
                        [f"/api/estates/{ENERGY_ESTATE}/energy?month={m}" for m in self.energy_months],
                        "bearer",
                        check_energy_json,
                        target_ms=ENERGY_TARGET_P95_MS,
                    ),
                ]
                if self.energy_months
                else []
            ),
        ]

    def _requests(self, endpoints: list[Endpoint], clients: dict[str, Any], deadline: float) -> None:
        """Sequential requests until each endpoint has --requests answers or the time is up; the next turn
        always goes to the endpoint with the least time spent, so a slow one cannot starve the others."""
        import httpx2 as httpx  # the dev extra's HTTP client (pyproject.toml)

        a = self.args
        turn = {ep.name: 0 for ep in endpoints}
        while time.monotonic() < deadline:
            todo = [ep for ep in endpoints if len(ep.latencies) < a.requests]
            if not todo:
                break
            ep = min(todo, key=lambda e: e.spent)
            url = ep.urls[turn[ep.name] % len(ep.urls)]
            turn[ep.name] += 1
            t = time.perf_counter()
            try:
                r = clients[ep.auth].get(url)
                body = r.content
            except httpx.HTTPError as exc:
                ep.spent += time.perf_counter() - t
                ep.errors.append(f"{url}: {exc!r}")
                continue
            dt = time.perf_counter() - t
            ep.spent += dt
            ep.latencies.append(dt)
            ep.bytes += len(body)
            if r.status_code != 200:
                ep.errors.append(f"{url}: HTTP {r.status_code} {r.text[:200]}")
            elif (problem := ep.check(r)) is not None:
                ep.errors.append(f"{url}: {problem}")

    def final_checks(self, ingest: Any) -> None:
        errors = {name: e["errors"] for run in self.figures.runs for name, e in run["endpoints"].items()}
        bad_answers = sum(errors.values())
        counters = dict((ingest.health() or {}).get("counters", {})) if ingest is not None else {}
        bad_counters = ("duplicate", "dead_lettered", "quarantined", "queue_overflow")
        ingest_ok = all(counters.get(k, 0) == 0 for k in bad_counters)
        self.figures.checks = {
            "bad_answers": bad_answers,
            "ingest_counters": counters,
            "ok": bad_answers == 0 and ingest_ok,
        }
        for run in self.figures.runs:
            for name, e in run["endpoints"].items():
                if e["errors"]:
                    log(f"warning: {run['workers']} workers, {name}: {e['errors']} bad answers: {e['first_errors']}")
        if not ingest_ok:
            log(f"warning: ingest counters: {counters}")


# --------------------------------------------------------------------------------------------------
# report


def report(figures: Figures, args: argparse.Namespace) -> None:
    console, table, row = figures_table("Steward API latency under ingest load")

    cfg, setup = figures.config, figures.setup
    h = setup.get("history", {})
    row(
        "estate",
        f"{args.devices:,} devices × 5 points in {setup.get('rooms_total')} rooms of {args.room_size} "
        f"({setup.get('points_per_room')} points)",
    )
    row("database", f"{cfg.get('database')}{' + TimescaleDB' if cfg.get('timescaledb') else ' (plain tables)'}")
    row(
        "history",
        f"{h.get('rows', 0):,} samples ({h.get('samples_size')}), {h.get('hours'):g} h × 1/{h.get('interval_s')} s",
    )
    if setup.get("energy"):
        en = setup["energy"]
        row("energy estate", f"{en['meters']:,} meters, {en['days']} days: {en['day_rows']:,} day rows")
    if args.rate > 0:
        s = cfg.get("ingest_settings", {})
        row(
            "ingest load",
            f"{args.rate:,.0f} msg/s ({args.rate * ROWS_PER_FRAME:,.0f} readings/s), batch {s.get('batch_size')}",
        )
    else:
        row("ingest load", "none (--rate 0)")
    row("requests", f"sequential, ≤ {args.requests} per endpoint, ≤ {args.duration:g} s per API configuration")
    for run in figures.runs:
        w = run["workers"]
        row(f"[bold]API, {w} uvicorn worker{'s' if w > 1 else ''}[/]", "p50 / p95 / p99 ms (n)")
        for e in run["endpoints"].values():
            target = e["target_p95_ms"]
            row(
                f"  {e['label']}",
                f"{e['p50_ms']:.1f} / {e['p95_ms']:.1f} / {e['p99_ms']:.1f} ({e['n']})",
                f"p95 ≤ {target:g} ms" if target else "",
                e["p95_ms"] <= target if target and e["n"] else None,
            )
        if "load" in run:
            ld = run["load"]
            row(
                "  ingest pace during the measurement",
                f"{ld['messages_per_s']:,.0f} msg/s ({ld['readings_per_s']:,.0f} readings/s)",
                f"≥ {LOAD_TOLERANCE * args.rate:,.0f} msg/s",
                ld["sustained"],
            )
        cpu = run["cpu"]
        names = [k[: -len("_cpu_s")] for k in cpu if k.endswith("_cpu_s") and k not in ("machine_busy_cpu_s",)]
        names = [n for n in names if n not in ("bench", "other")]
        row(
            f"  CPU s: {' / '.join(names)} / bench client",
            " / ".join(f"{cpu[f'{n}_cpu_s']:.1f}" for n in names) + f" / {cpu['bench_cpu_s']:.1f}",
        )
        row("  machine busy", f"{cpu['machine_busy_pct']}% of {cpu['cpus']} CPUs over {cpu['wall_s']:.0f} s")
        row("  CPU s used by other processes (noise)", f"{cpu['other_cpu_s']:.1f}")
    if figures.checks:
        ch = figures.checks
        k = ch["ingest_counters"]
        row("bad answers (non-200, missing buckets or values)", f"{ch['bad_answers']:,}", "0", ch["bad_answers"] == 0)
        if k:
            row(
                "  ingest duplicates / queue overflows / quarantined",
                f"{k.get('duplicate', 0):,} / {k.get('queue_overflow', 0):,} / {k.get('quarantined', 0):,}",
                "0 / 0 / 0",
                not (k.get("duplicate") or k.get("queue_overflow") or k.get("quarantined")),
            )
    console.print(table)
    print(json.dumps({"bench": "api", **{k: v for k, v in vars(figures).items() if v}}, default=str))


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=1_000, help="simulated 5-point sensors (default 1000)")
    ap.add_argument("--room-size", type=int, default=8, help="devices per power room (default 8: 40 points)")
    ap.add_argument("--rate", type=float, default=4_000, help="ingest load in msg/s, 0 = none (default 4000)")
    ap.add_argument("--workers", default="1,2", help="uvicorn worker counts to measure, comma-separated (default 1,2)")
    ap.add_argument("--duration", type=float, default=40, help="seconds of requests per worker count (default 40)")
    ap.add_argument("--requests", type=int, default=500, help="at most this many requests per endpoint (default 500)")
    ap.add_argument("--warmup", type=int, default=10, help="uncounted requests per endpoint first (default 10)")
    ap.add_argument("--points", type=int, default=50, help="points the series requests rotate over (default 50)")
    ap.add_argument("--rooms", type=int, default=10, help="rooms the room requests rotate over (default 10)")
    ap.add_argument("--history-hours", type=float, default=26, help="history before the run (default 26)")
    ap.add_argument("--history-interval", type=int, default=60, help="seconds between samples (default 60)")
    ap.add_argument(
        "--energy-households", type=int, default=1_000, help="households of the metered estate, 0 = none (default 1000)"
    )
    ap.add_argument("--energy-days", type=int, default=90, help="days of the metered estate's history (default 90)")
    ap.add_argument("--window", type=int, default=20_000, help="fastpub's unacked window (default 20000)")
    ap.add_argument(
        "--ingest-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for ingest, repeatable"
    )
    ap.add_argument(
        "--api-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for the API, repeatable"
    )
    ap.add_argument("--no-broker-persistence", action="store_true", help="mosquitto without its persistence file")
    ap.add_argument("--tmp-dir", help="where the temporary directory goes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    for kv in args.ingest_env + args.api_env:
        if "=" not in kv:
            ap.error(f"--ingest-env / --api-env want KEY=VALUE, got {kv!r}")
    try:
        args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    except ValueError:
        ap.error("--workers wants e.g. 1 or 1,2")
    if not args.workers or min(args.workers) < 1:
        ap.error("--workers wants positive counts")
    if min(args.devices, args.room_size, args.requests, args.points, args.rooms, args.history_interval) < 1:
        ap.error("--devices, --room-size, --requests, --points, --rooms and --history-interval must be positive")
    if args.rate < 0 or args.duration <= 0 or args.history_hours < 24:
        ap.error("--rate ≥ 0, --duration > 0 and --history-hours ≥ 24 (the series covers 24 h)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("STEWARD_ENV", "testing")
    return run_bench(Bench(args), lambda f: report(f, args), lambda f: bool(f.checks.get("ok", True)))


if __name__ == "__main__":
    sys.exit(main())
