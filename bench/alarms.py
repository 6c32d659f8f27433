#!/usr/bin/env python
"""Alarm → ticket latency under ingest load: publish of a crossing reading → committed repair ticket.

One run, on this machine:

1. a fresh database with an estate of D load sensors + P probe sensors (5 points each) in power
   rooms, and the full default rule packs installed (``alarms.install.install_rule_packs``): every
   point of the estate is watched by a threshold rule;
2. Mosquitto, ``steward run ingest`` with ``STEWARD_ALARM_EVALUATION=1`` and fastpub publishing the
   D load sensors' telemetry paced at ``--rate`` msg/s (5 readings each, device times "now") for the
   whole measurement. Every load value stays below every level of the rules on its metric (checked
   against the installed rules before the run, and afterwards: no alarm on a load point), so the load
   is quiet and costs ingest what a healthy estate costs;
3. probes: one probe sensor at a time, every ``--probe-interval`` s, the bench publishes (paho, MQTT 5,
   QoS 1) a telemetry frame with ``winding_temp_a_c`` = 160 °C, above the 155 °C "alarm" level of
   ``dry_transformer.winding_temp_a.high``. Ingest raises the alarm and opens a repair ticket in the
   batch transaction (``tickets.from_alarms.open_for_alarms``), which sends
   ``pg_notify('steward_tickets', …)``: delivered when the batch commits. The bench LISTENs; latency =
   NOTIFY arrival − the time just before the publish (one clock: this machine's). A ticket is matched
   to its probe through the alarm linked to it (``alarms.ticket_id`` → point), whatever its source
   key. Each probe sensor is used once (a second crossing would attach to the already open ticket).

Afterwards, in SQL: exactly P alarm tickets, each probe alarm linked to its ticket, nothing raised
for a load point. Everything is throwaway, as in bench/ingest.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, where this very file would shadow the ``alarms`` package.
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
    NotifyListener,
    build_fastpub,
    figures_table,
    import_bench_estate,
    libpq_url,
    log,
    percentile,
    quiet_range,
    run_bench,
    write_frames,
)

PROBE_RULE = "dry_transformer.winding_temp_a.high"
PROBE_METRIC = "winding_temp_a_c"
PROBE_VALUE = 160.0  # above the rule's 155 °C alarm level, below its 170 °C critical level
TICKETS_CHANNEL = "steward_tickets"  # tickets.from_alarms.TICKETS_CHANNEL (bench stays off product imports)
TARGET_P99_MS = 250.0
LOAD_TOLERANCE = 0.95  # the load counts as sustained at ≥ 95 % of --rate
# Load frames beyond warm-up and probes: ingest start and first commits, the last tickets, slack.
LOAD_MARGIN_S = 35.0
TICKET_WAIT_S = 30.0  # after the last probe, wait this long at most for the missing tickets


@dataclass
class Figures:
    config: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


@dataclass
class Probe:
    index: int
    device: str
    topic: str
    point_id: int
    key: str | None = None  # the ticket's source_key (whatever open_for_alarms makes it)
    sent: float | None = None  # time.time() just before publish
    puback: float | None = None
    ticket_at: float | None = None  # NOTIFY arrival
    ticket: str | None = None
    ticket_id: int | None = None


# --------------------------------------------------------------------------------------------------
# load frames and probes


def probe_payload() -> str:
    ts = datetime.now(CN).isoformat(timespec="milliseconds")
    return json.dumps({"v": 1, "ts": ts, "seq": 1, "values": {PROBE_METRIC: PROBE_VALUE}}, separators=(",", ":"))


class TicketListener(NotifyListener):
    """Arrival time and content of every ``steward_tickets`` NOTIFY: ``open_for_alarms`` sends it inside
    the batch transaction, so PostgreSQL delivers it exactly when the ticket is committed."""

    def __init__(self, db_url: str) -> None:
        self.opened: list[tuple[float, dict[str, Any]]] = []  # (arrival, {"id", "number", "key"})
        super().__init__(db_url, TICKETS_CHANNEL, "bench-tickets")

    def record(self, at: float, payload: dict[str, Any]) -> None:
        self.opened.extend((at, dict(t)) for t in payload.get("opened", []))

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.opened)


# --------------------------------------------------------------------------------------------------
# the bench


class Bench(Harness):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.figures = Figures()
        self._acks: dict[int, float] = {}  # probe client: PUBACK time by message id

    def run(self) -> Figures:
        a = self.args
        cfg = self.figures.config
        cfg.update(
            load_devices=a.devices,
            probe_devices=a.probes,
            room_size=a.room_size,
            rate=a.rate,
            probe_interval_s=a.probe_interval,
            warmup_s=a.warmup,
            probe=f"{PROBE_METRIC} = {PROBE_VALUE:g} ({PROBE_RULE})",
            ingest_env=a.ingest_env,
        )
        cfg["git"] = self._git_describe()
        cfg["background_cpu_pct_before"] = self.check_idle()

        if a.rate > 0:
            log("building fastpub")
            self.fastpub_bin = build_fastpub(self.tmp)

        db_url = self.create_database(cfg)
        t = time.monotonic()
        points = import_bench_estate(db_url, a.devices + a.probes, a.room_size, rules=True)
        probes, rule_id = self.prepare_probes(db_url, points)
        log(
            f"estate imported: {a.devices} load + {a.probes} probe devices, {points} points, "
            f"{self.figures.setup['rules']} rules in {time.monotonic() - t:.1f}s"
        )

        # Device times run with the wall clock: frame k of every load device at t0 + k × devices / rate.
        frames = self.tmp / "load.txt"
        if a.rate > 0:
            seconds = a.warmup + a.probes * a.probe_interval + LOAD_MARGIN_S
            count = int(a.rate * seconds)
            clock = FrameClock(
                datetime.now(UTC).replace(microsecond=0).astimezone(CN), timedelta(seconds=a.devices / a.rate)
            )
            log(f"writing {count:,} load frames ({seconds:.0f} s at {a.rate:g} msg/s)")
            write_frames(frames, devices=a.devices, count=count, first_frame=0, clock=clock)

        tickets = TicketListener(db_url)
        self.on_cleanup("close ticket listener", tickets.close)
        commits = CommitListener(db_url)
        self.on_cleanup("close commit listener", commits.close)
        broker = self.start_broker("mosquitto")
        log("starting ingest (alarm evaluation on)")
        ingest = self.start_ingest(db_url, broker)
        cfg["ingest_settings"] = self._ingest_settings(ingest.env)
        time.sleep(0.5)  # health turns ok on CONNACK, just before the SUBSCRIBE
        pub: dict[str, Any] | None = None
        if a.rate > 0:
            log(f"load: fastpub at {a.rate:g} msg/s ({a.rate * ROWS_PER_FRAME:,.0f} readings/s)")
            pub = self.fastpub(frames, broker.port, rate=a.rate, timeout=3600)
            mark = commits.mark()
            commits.wait_rows(mark, int(a.rate * ROWS_PER_FRAME * 3), timeout=60)
            log(f"load: ingest is committing; warm-up {a.warmup:g} s")
        client = self.probe_client(broker.port)
        warm_mark, warm_start = commits.mark(), time.time()
        time.sleep(a.warmup)
        if pub is not None:
            warm_rows = sum(n for _, n in commits.since(warm_mark))
            warm_rate = warm_rows / ROWS_PER_FRAME / max(time.time() - warm_start, 1e-9)
            self.figures.load["warmup_messages_per_s"] = round(warm_rate, 1)
            log(f"warm-up: ingest committed {warm_rate:,.0f} msg/s")
            if warm_rate < LOAD_TOLERANCE * a.rate:
                log(f"warning: ingest is not keeping up with {a.rate:g} msg/s before the probes start")
            if pub["proc"].poll() is not None:
                raise BenchError(f"fastpub ended during the warm-up (exit {pub['proc'].returncode})")

        try:
            self.measure(db_url, probes, client, tickets, commits, ingest, broker, pub)
        finally:
            client.loop_stop()
            with contextlib.suppress(Exception):
                client.disconnect()
        if pub is not None and pub["proc"].poll() is None:
            pub["proc"].kill()
            pub["proc"].wait(5)
        time.sleep(0.5)  # let ingest commit what it holds before the checks read the tables
        self.final_checks(db_url, probes, rule_id, tickets, ingest)
        return self.figures

    # -- setup ----------------------------------------------------------------------------------

    def prepare_probes(self, db_url: str, points: int) -> tuple[list[Probe], int]:
        """The probe rule's id, the probe sensors' points, and a check that the load stays below every
        level of the installed rules on its metrics (else the "quiet" load would raise alarms)."""
        import psycopg

        from devkit.estate import METRICS, sensor_code
        from protocol.topics import uplink

        a = self.args
        codes = [sensor_code(ESTATE, a.devices + i) for i in range(a.probes)]
        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute(
                "SELECT id, params FROM alarm_rules WHERE code = %s AND enabled", [PROBE_RULE]
            ).fetchone()
            if row is None:
                raise BenchError(f"rule {PROBE_RULE} is not installed (or disabled): the rule packs changed?")
            rule_id, params = int(row[0]), dict(row[1])
            ids: dict[str, int] = dict(
                conn.execute(
                    "SELECT d.code, p.id FROM points p JOIN devices d ON d.id = p.device_id "
                    "WHERE p.metric = %s AND d.code = ANY(%s)",
                    [PROBE_METRIC, codes],
                ).fetchall()
            )
            rules = conn.execute(
                "SELECT code, kind, metric, params FROM alarm_rules WHERE enabled AND metric = ANY(%s) ORDER BY code",
                [list(METRICS)],
            ).fetchall()
            total = conn.execute("SELECT count(*) FROM alarm_rules WHERE enabled").fetchone()
        if len(ids) != a.probes:
            raise BenchError(f"found {len(ids)} of {a.probes} probe points")
        alarm_level = params.get("alarm")
        if alarm_level is None or float(alarm_level) >= PROBE_VALUE:
            raise BenchError(f"{PROBE_RULE}: probe value {PROBE_VALUE} does not cross its alarm level {alarm_level}")
        loud = []
        for code, kind, metric, p in rules:
            lo, hi = quiet_range(metric)
            levels = [float(p[k]) for k in ("warning", "alarm", "critical", "level") if p.get(k) is not None]
            if kind not in ("threshold", "repeat", "stale"):
                loud.append(f"{code} ({kind}: not checked)")
            elif kind != "stale" and levels:
                below = p.get("direction", "above") == "below"
                if (below and lo <= max(levels)) or (not below and hi >= min(levels)):
                    loud.append(f"{code} ({metric} {lo:g}–{hi:g} reaches {levels})")
        if loud:
            raise BenchError(f"the load would not be quiet under these rules: {', '.join(loud)}")
        self.figures.setup.update(
            points=points,
            rules=int(total[0]) if total else 0,
            rules_on_bench_metrics=[r[0] for r in rules],
            probe_rule_id=rule_id,
            probe_rule_levels={k: params.get(k) for k in ("warning", "alarm", "critical")},
        )
        probes = [Probe(i, code, uplink(ESTATE, code, "telemetry"), int(ids[code])) for i, code in enumerate(codes)]
        return probes, rule_id

    def probe_client(self, port: int) -> Any:
        """paho 2, MQTT 5, QoS 1 publisher; PUBACK times land on the probes through ``self._acks``."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )

        def on_publish(_c: Any, _u: Any, mid: int, _rc: Any, _props: Any) -> None:
            self._acks[mid] = time.time()

        client.on_publish = on_publish
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise BenchError("the probe client did not connect to the broker")
            time.sleep(0.02)
        return client

    # -- the measurement ------------------------------------------------------------------------

    def measure(
        self,
        db_url: str,
        probes: list[Probe],
        client: Any,
        tickets: TicketListener,
        commits: CommitListener,
        ingest: Any,
        broker: Any,
        pub: dict[str, Any] | None,
    ) -> None:
        a = self.args
        pids = {
            "ingest": [ingest.proc.pid],
            "postgres": self._backend_pids(db_url),
            "mosquitto": [broker.proc.pid],
        }
        if pub is not None:
            pids["fastpub"] = [pub["proc"].pid]
        meter = CpuMeter(pids)
        self_cpu0 = time.process_time()
        health0 = ingest.health() or {}
        mark = commits.mark()
        by_mid: dict[int, Probe] = {}
        log(f"probes: {len(probes)}, one every {a.probe_interval * 1000:g} ms")
        start = time.monotonic() + 0.05
        for p in probes:
            delay = start + p.index * a.probe_interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            payload = probe_payload()
            p.sent = time.time()
            info = client.publish(p.topic, payload, qos=1)
            by_mid[info.mid] = p
            if not a.quiet and (p.index + 1) % 50 == 0:
                seen = len(tickets.snapshot())
                log(f"probes: {p.index + 1} sent, {seen} tickets seen")
        last_sent = time.time()
        load_running = pub is None or pub["proc"].poll() is None
        first_sent = probes[0].sent or last_sent
        # The load is quiet, so every ticket is a probe's; which one is settled in SQL afterwards.
        deadline = time.monotonic() + TICKET_WAIT_S
        while True:
            if tickets.error is not None:
                raise BenchError(f"LISTEN {TICKETS_CHANNEL} failed: {tickets.error}")
            got = {t.get("id") for _, t in tickets.snapshot()}
            if len(got) >= len(probes) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        ended = time.time()
        cpu = meter.stop()
        bench_cpu = time.process_time() - self_cpu0
        health1 = ingest.health() or {}
        if pub is not None and not load_running:
            raise BenchError(f"fastpub ended before the last probe (exit {pub['proc'].returncode}): load stopped")

        for mid, p in by_mid.items():
            p.puback = self._acks.get(mid)

        if pub is not None:
            self.load_figures(commits.since(mark), first_sent, last_sent, ended, health0, health1)

        cpu.pop("ingest_threads_cpu_s", None)
        accounted = sum(v for k, v in cpu.items() if k.endswith("_cpu_s") and k != "machine_busy_cpu_s") + bench_cpu
        cpu["bench_cpu_s"] = round(bench_cpu, 3)
        cpu["other_cpu_s"] = round(cpu.get("machine_busy_cpu_s", accounted) - accounted, 2)
        if cpu["other_cpu_s"] > 0.1 * cpu["wall_s"] * cpu["cpus"]:
            log(
                f"warning: other processes used {cpu['other_cpu_s']:.1f} CPU-s during the measurement "
                f"({cpu['other_cpu_s'] / cpu['wall_s']:.2f} CPUs): latencies are skewed high"
            )
        self.figures.cpu = cpu

    def load_figures(
        self,
        commits: list[tuple[float, int]],
        first_sent: float,
        last_sent: float,
        ended: float,
        health0: dict[str, Any],
        health1: dict[str, Any],
    ) -> None:
        """The load during the probes: what ingest committed between the first and the last publish."""
        rate = self.args.rate
        events = [(at, n) for at, n in commits if first_sent <= at <= last_sent]
        window = max(last_sent - first_sent, 1e-9)
        rows = sum(n for _, n in events)
        gaps = sorted((b[0] - a[0]) * 1000 for a, b in itertools.pairwise(events))
        c0, c1 = health0.get("counters", {}), health1.get("counters", {})
        ld = self.figures.load
        ld.update(
            target_messages_per_s=rate,
            messages_per_s=round(rows / ROWS_PER_FRAME / window, 1),
            readings_per_s=round(rows / window, 1),
            received_per_s=round((c1.get("received", 0) - c0.get("received", 0)) / (ended - first_sent), 1),
            batches=len(events),
            mean_batch_rows=round(rows / len(events), 1) if events else None,
            commit_interval_ms={
                "p50": round(percentile(gaps, 50), 1),
                "p99": round(percentile(gaps, 99), 1),
                "max": round(gaps[-1], 1) if gaps else None,
            },
            queue_depth_end=health1.get("queue_depth"),
            sustained=rows / ROWS_PER_FRAME / window >= LOAD_TOLERANCE * rate,
        )
        if not ld["sustained"]:
            log(f"warning: ingest committed {ld['messages_per_s']:,.0f} msg/s, below {rate:g}")

    def final_checks(
        self, db_url: str, probes: list[Probe], rule_id: int, tickets: TicketListener, ingest: Any
    ) -> None:
        """Latency figures, the stage split from the rows' own timestamps, and the consistency checks."""
        import psycopg

        probe_points = [p.point_id for p in probes]
        probe_devices = [p.device for p in probes]
        with psycopg.connect(libpq_url(db_url)) as conn:
            # Each alarm ticket with the points of the alarms linked to it (a probe's: exactly its own).
            ticket_rows = conn.execute(
                "SELECT t.id, t.source_key, t.received_at, array_remove(array_agg(a.point_id), NULL) "
                "FROM tickets t LEFT JOIN alarms a ON a.ticket_id = t.id WHERE t.source = 'alarm' GROUP BY t.id"
            ).fetchall()
            other_tickets = conn.execute("SELECT count(*) FROM tickets WHERE source <> 'alarm'").fetchone()
            alarms = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE ticket_id IS NULL), "
                "count(*) FILTER (WHERE point_id IS NULL OR point_id <> ALL(%s) OR rule_id <> %s), "
                "count(*) FILTER (WHERE severity <> 'alarm') FROM alarms",
                [probe_points, rule_id],
            ).fetchone()
            seen_at: dict[str, datetime] = dict(
                conn.execute(
                    "SELECT d.code, s.last_seen_at FROM device_state s JOIN devices d ON d.id = s.device_id "
                    "WHERE d.code = ANY(%s)",
                    [probe_devices],
                ).fetchall()
            )
        by_point = {p.point_id: p for p in probes}
        ticket_probe: dict[int, Probe] = {}
        received: dict[int, datetime] = {}
        for tid, key, at, points in ticket_rows:
            hits = [by_point[pt] for pt in points if pt in by_point]
            if len(hits) == 1 and len(points) == 1:
                ticket_probe[int(tid)], received[int(tid)] = hits[0], at
                hits[0].key = key
        notified = [int(t.get("id", -1)) for _, t in tickets.snapshot()]
        for at_s, t in tickets.snapshot():
            hit = ticket_probe.get(int(t.get("id", -1)))
            if hit is not None and hit.ticket_at is None:
                hit.ticket_at, hit.ticket, hit.ticket_id = at_s, t.get("number"), int(t["id"])
        alarm_total, unlinked, load_alarms, not_alarm = (int(x) for x in alarms) if alarms else (0, 0, 0, 0)

        def ms(values: list[float]) -> dict[str, Any]:
            v = sorted(values)
            return {
                "n": len(v),
                "p50": round(percentile(v, 50), 1),
                "p90": round(percentile(v, 90), 1),
                "p99": round(percentile(v, 99), 1),
                "max": round(v[-1], 1) if v else None,
            }

        done = [p for p in probes if p.sent is not None and p.ticket_at is not None]
        latency: list[float] = []
        stages: dict[str, list[float]] = {"puback": [], "to_batch": [], "batch_to_ticket": [], "ticket_to_commit": []}
        for p in done:
            sent, committed = p.sent or 0.0, p.ticket_at or 0.0
            latency.append((committed - sent) * 1000)
            if p.puback is not None:
                stages["puback"].append((p.puback - sent) * 1000)
            batch, ticket = seen_at.get(p.device), received.get(p.ticket_id or -1)
            if batch is not None and ticket is not None:
                stages["to_batch"].append((batch.timestamp() - sent) * 1000)
                stages["batch_to_ticket"].append((ticket - batch).total_seconds() * 1000)
                stages["ticket_to_commit"].append((committed - ticket.timestamp()) * 1000)
        self.figures.probes = {
            "sent": sum(1 for p in probes if p.sent is not None),
            "tickets_notified": len(done),
            "ticket_key_example": next((p.key for p in probes if p.key), None),
            "latency_ms": ms(latency),
            "target_p99_ms": TARGET_P99_MS,
            "stages_ms": {k: ms(v) for k, v in stages.items()},
            "slowest": [
                {"device": p.device, "ms": round((p.ticket_at - p.sent) * 1000, 1), "ticket": p.ticket}
                for p in sorted(done, key=lambda p: (p.ticket_at or 0) - (p.sent or 0))[-3:]
                if p.ticket_at and p.sent
            ],
        }

        counters = dict((ingest.health() or {}).get("counters", {}))
        bad_counters = ("duplicate", "dead_lettered", "quarantined", "queue_overflow")
        problems = []
        if len(done) != len(probes):
            missing = [p.device for p in probes if p.ticket_at is None]
            problems.append(f"{len(missing)} of {len(probes)} probes got no ticket NOTIFY (first: {missing[:5]})")
        extra = [t for _, t in tickets.snapshot() if int(t.get("id", -1)) not in ticket_probe]
        if extra:
            problems.append(f"{len(extra)} ticket NOTIFYs not for a probe alone: {extra[:3]}")
        if len(notified) != len(set(notified)):
            problems.append(f"{len(notified) - len(set(notified))} duplicate ticket NOTIFYs")
        if len(ticket_probe) != len(probes) or len(ticket_rows) != len(probes):
            problems.append(
                f"{len(ticket_rows)} alarm tickets in the database (expected {len(probes)}, one per probe), "
                f"{len(ticket_probe)} linked to exactly one probe alarm"
            )
        if other_tickets and other_tickets[0]:
            problems.append(f"{other_tickets[0]} non-alarm tickets appeared")
        if alarm_total != len(probes) or unlinked or load_alarms or not_alarm:
            problems.append(
                f"{alarm_total} alarms (expected {len(probes)}): {unlinked} without a ticket, "
                f"{load_alarms} not on a probe point or rule, {not_alarm} not of severity 'alarm'"
            )
        if any(counters.get(k, 0) for k in bad_counters):
            problems.append(f"ingest counters: { {k: counters.get(k, 0) for k in bad_counters} }")
        self.figures.checks = {
            "alarm_tickets": len(ticket_rows),
            "alarms": alarm_total,
            "alarms_without_ticket": unlinked,
            "alarms_off_probe": load_alarms,
            "ingest_counters": counters,
            "problems": problems,
            "ok": not problems,
        }
        for problem in problems:
            log(f"wrong: {problem}")


# --------------------------------------------------------------------------------------------------
# report


def report(figures: Figures, args: argparse.Namespace) -> None:
    console, table, row = figures_table("Steward alarm → ticket latency under ingest load")

    def pct(d: dict[str, Any]) -> str:
        return f"{d['p50']:.1f} / {d['p90']:.1f} / {d['p99']:.1f} / {d['max']:.1f}" if d.get("n") else "—"

    cfg, setup, pr, ld, cpu, ch = (
        figures.config,
        figures.setup,
        figures.probes,
        figures.load,
        figures.cpu,
        figures.checks,
    )
    rooms = -(-(args.devices + args.probes) // args.room_size)
    row(
        "estate",
        f"{args.devices:,} load + {args.probes:,} probe sensors × 5 points, {rooms} power rooms of {args.room_size}",
    )
    row(
        "rules",
        f"{setup.get('rules')} enabled (full default packs), {len(setup.get('rules_on_bench_metrics', []))} "
        "on the sensors' metrics",
    )
    row("database", f"{cfg.get('database')}{' + TimescaleDB' if cfg.get('timescaledb') else ' (plain tables)'}")
    s = cfg.get("ingest_settings", {})
    row(
        "ingest",
        f"alarm evaluation on; batch {s.get('batch_size')}, {s.get('batch_latency_ms')} ms, "
        f"receive max {s.get('receive_maximum')}",
    )
    row("probe", f"{PROBE_METRIC} = {PROBE_VALUE:g} °C, QoS 1, one every {args.probe_interval * 1000:g} ms")
    if pr:
        row(
            "probes sent / tickets committed (NOTIFY)",
            f"{pr['sent']} / {pr['tickets_notified']}",
            str(pr["sent"]),
            pr["sent"] == pr["tickets_notified"],
        )
        lat = pr["latency_ms"]
        row(
            "[bold]publish → ticket committed[/], ms p50 / p90 / p99 / max",
            pct(lat),
            f"p99 ≤ {TARGET_P99_MS:g} ms",
            lat["p99"] <= TARGET_P99_MS if lat.get("n") else None,
        )
        st = pr["stages_ms"]
        row("  publish → broker PUBACK", pct(st["puback"]))
        row("  publish → ingest batch begins (device_state.last_seen_at)", pct(st["to_batch"]))
        row("  batch begins → ticket row built (tickets.received_at)", pct(st["batch_to_ticket"]))
        row("  ticket row built → commit NOTIFY arrives", pct(st["ticket_to_commit"]))
    if args.rate == 0:
        row("ingest load", "none (--rate 0): the probes are the only traffic")
    if ld:
        row(
            "ingest pace during the probes",
            f"{ld['messages_per_s']:,.0f} msg/s ({ld['readings_per_s']:,.0f} readings/s)",
            f"≥ {LOAD_TOLERANCE * args.rate:,.0f} msg/s",
            ld["sustained"],
        )
        ci = ld["commit_interval_ms"]
        row(
            "  batches, mean rows, commit interval p50 / p99 / max ms",
            f"{ld['batches']}, {ld['mean_batch_rows']}, {ci['p50']} / {ci['p99']} / {ci['max']}",
        )
    if cpu:
        names = [k[: -len("_cpu_s")] for k in cpu if k.endswith("_cpu_s") and k != "machine_busy_cpu_s"]
        names = [n for n in names if n not in ("bench", "other")]
        row(
            f"CPU s: {' / '.join(names)} / bench",
            " / ".join(f"{cpu[f'{n}_cpu_s']:.1f}" for n in names) + f" / {cpu['bench_cpu_s']:.1f}",
        )
        row(
            "  ingest CPU",
            f"{cpu['ingest_cpu_s'] / cpu['wall_s'] * 100:.0f}% of one core",
        )
        row("machine busy", f"{cpu['machine_busy_pct']}% of {cpu['cpus']} CPUs over {cpu['wall_s']:.0f} s")
        row("CPU s used by other processes (noise)", f"{cpu['other_cpu_s']:.1f}")
    if ch:
        row(
            "alarm tickets in SQL / alarms / unlinked / off-probe",
            f"{ch['alarm_tickets']} / {ch['alarms']} / {ch['alarms_without_ticket']} / {ch['alarms_off_probe']}",
            f"{args.probes} / {args.probes} / 0 / 0",
            ch["ok"],
        )
    console.print(table)
    for problem in ch.get("problems", []):
        console.print(f"[red]wrong:[/] {problem}")
    print(json.dumps({"bench": "alarms", **{k: v for k, v in vars(figures).items() if v}}, default=str))


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--devices", type=int, default=800, help="load sensors, 5 points each (default 800)")
    ap.add_argument("--probes", type=int, default=200, help="probe sensors, one crossing each (default 200)")
    ap.add_argument("--room-size", type=int, default=8, help="devices per power room (default 8)")
    ap.add_argument("--rate", type=float, default=4_000, help="background load in msg/s, 0 = none (default 4000)")
    ap.add_argument("--probe-interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    ap.add_argument("--warmup", type=float, default=10, help="seconds of load before the probes (default 10)")
    ap.add_argument("--window", type=int, default=20_000, help="fastpub's unacked window (default 20000)")
    ap.add_argument(
        "--ingest-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for ingest, repeatable"
    )
    ap.add_argument("--no-broker-persistence", action="store_true", help="mosquitto without its persistence file")
    ap.add_argument("--tmp-dir", help="where the temporary directory goes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--quiet", action="store_true", help="less progress output")
    args = ap.parse_args(argv)
    for kv in args.ingest_env:
        if "=" not in kv:
            ap.error(f"--ingest-env wants KEY=VALUE, got {kv!r}")
    if not any(kv.startswith("STEWARD_ALARM_EVALUATION=") for kv in args.ingest_env):
        args.ingest_env.append("STEWARD_ALARM_EVALUATION=1")
    if min(args.devices, args.probes, args.room_size) < 1:
        ap.error("--devices, --probes and --room-size must be positive")
    if args.rate < 0 or args.probe_interval <= 0 or args.warmup < 0:
        ap.error("--rate ≥ 0, --probe-interval > 0 and --warmup ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("STEWARD_ENV", "testing")
    return run_bench(Bench(args), lambda f: report(f, args), lambda f: bool(f.checks.get("ok", True)))


if __name__ == "__main__":
    sys.exit(main())
