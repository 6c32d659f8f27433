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
3. the machine's ceiling: a bare stock paho 2 subscriber (MQTT 5, QoS 1, same Receive Maximum,
   no-op on_message) receiving the same stream from a fresh broker, and the ratio ingest / bare;
   the same subscriber on Steward's buffered reads (``core.mqtt.BufferedClient``) beside it.

Everything is throwaway: a fresh database (dropped at the end), a Mosquitto with Steward's
configuration on a free port, ingest as a child process with its own client id. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path[0] is bench/, where this very file would shadow the ``ingest`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CN,
    ROWS_PER_FRAME,
    SENT_METRIC,
    BenchError,
    CommitListener,
    CpuMeter,
    FrameClock,
    Harness,
    build_fastpub,
    children_cpu,
    figures_table,
    import_bench_estate,
    libpq_url,
    log,
    percentile,
    run_bench,
    write_frames,
)

# A smart meter's reporting interval (the estate model's default expected_interval_s for meters).
METER_INTERVAL = timedelta(minutes=15)

# --------------------------------------------------------------------------------------------------
# the bench


@dataclass
class Figures:
    config: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    paced: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


class Bench(Harness):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.figures = Figures()

    def run(self) -> Figures:
        if self.args.meter_stream:
            return self.run_meter_stream()
        if self.args.partitions:
            return self.run_partitions()
        a = self.args
        cfg = self.figures.config
        cfg.update(messages=a.messages, devices=a.devices, readings_per_message=ROWS_PER_FRAME, window=a.window)
        cfg["git"] = self._git_describe()
        cfg["background_cpu_pct_before"] = self.check_idle()

        log("building fastpub")
        self.fastpub_bin = build_fastpub(self.tmp)

        db_url = self.create_database(cfg)
        t = time.monotonic()
        points = import_bench_estate(db_url, a.devices, rules=a.alarms)
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

    # -- partitioned ingest: one partition vs P, side by side ---------------------------------------

    def run_partitions(self) -> Figures:
        """The same stream through one unpartitioned ingest and through STEWARD_INGEST_PARTITIONS=P (P processes
        owning one partition each, or ``--partition-processes`` processes sharing them), alternately
        ``--repetitions`` times; each run on a fresh broker, after a warm-up, at full speed. The figure is CPU
        per 1,000 messages: ingest (all processes), the PostgreSQL backends they write through and Mosquitto.

        The devices are split over P estates, one per partition (ingest.partitions.partition_of), so each
        partition carries the same share of the stream."""
        from devkit.estate import sensor_code
        from ingest.partitions import partition_of

        a = self.args
        parts = a.partitions
        procs = a.partition_processes or parts
        cfg = self.figures.config
        cfg.update(
            mode="partitions",
            partitions=parts,
            processes=procs,
            messages=a.messages,
            devices=a.devices,
            repetitions=a.repetitions,
            window=a.window,
        )
        cfg["git"] = self._git_describe()
        cfg["background_cpu_pct_before"] = self.check_idle()
        self.fastpub_bin = build_fastpub(self.tmp)
        db_url = self.create_database(cfg)
        estates: list[str] = []
        for i in range(1000):
            code = f"bench-p{i}"
            if partition_of(code, parts) not in {partition_of(e, parts) for e in estates}:
                estates.append(code)
            if len(estates) == parts:
                break
        per = max(1, a.devices // parts)
        for code in estates:
            import_bench_estate(db_url, per, code=code, rules=a.alarms)
        devices = [(e, sensor_code(e, d)) for d in range(per) for e in estates]
        cfg["estates"] = {e: partition_of(e, parts) for e in estates}
        runs_total = 2 * a.repetitions
        frames_per_device = runs_total * (1 + -(-a.messages // len(devices))) + 1
        clock = FrameClock.for_frames(frames_per_device)
        listener = CommitListener(db_url)
        self.on_cleanup("close listener", listener.close)
        results: dict[int, list[dict[str, Any]]] = {1: [], parts: []}
        nxt = 0
        for r in range(a.repetitions):
            for mode in (1, parts) if r % 2 == 0 else (parts, 1):  # alternate: drift hits both
                warm, full = self.tmp / f"warm-{r}-{mode}.txt", self.tmp / f"frames-{r}-{mode}.txt"
                nxt = write_device_frames(warm, devices, count=len(devices), first_frame=nxt, clock=clock)
                nxt = write_device_frames(full, devices, count=a.messages, first_frame=nxt, clock=clock)
                results[mode].append(self._partition_run(db_url, listener, warm, full, mode, procs, len(devices)))
        self.figures.throughput = {"runs": results, "summary": {}}
        for mode, runs in results.items():
            self.figures.throughput["summary"][mode] = {
                key: round(statistics.median(run[key] for run in runs), 1)
                for key in ("messages_per_s", "ingest_ms_per_1k", "postgres_ms_per_1k", "mosquitto_ms_per_1k")
            }
        return self.figures

    def _partition_run(
        self, db_url: str, listener: CommitListener, warm: Path, full: Path, mode: int, procs: int, devices: int
    ) -> dict[str, Any]:
        from devkit.ingest_process import IngestProcess

        a = self.args
        broker = self.start_broker(f"mosquitto-{uuid.uuid4().hex[:6]}")
        env = dict(kv.split("=", 1) for kv in a.ingest_env)
        base = f"steward-bench-{uuid.uuid4().hex[:8]}"
        ingests = []
        for i in range(1 if mode == 1 else procs):
            if mode > 1:
                env.update(
                    STEWARD_INGEST_PARTITIONS=str(mode),
                    STEWARD_INGEST_MAX_PARTITIONS=str(-(-mode // procs)),
                    STEWARD_INGEST_CLAIM_POLL_S="0.2",
                )
            ingest = IngestProcess(db_url, broker.url, self.tmp / f"logs-{base}-{i}", client_id=base, **env)
            self.on_cleanup("stop ingest", ingest.stop)
            try:
                ingest.start(wait=True)
            except (RuntimeError, TimeoutError) as exc:
                raise BenchError(f"ingest did not come up: {exc}; log: {self._ingest_log_tail(ingest)}") from exc
            ingests.append(ingest)
        if mode > 1:
            deadline = time.monotonic() + 30
            while sum(len((i.health() or {}).get("owned", [])) for i in ingests) < mode:  # type: ignore[arg-type]
                if time.monotonic() > deadline:
                    raise BenchError(f"partitions not all owned: {[i.health() for i in ingests]}")
                time.sleep(0.1)
        time.sleep(0.5)  # health turns ok on CONNACK, just before SUBSCRIBE
        mark = listener.mark()
        self.fastpub_result(self.fastpub(warm, broker.port, timeout=60))
        listener.wait_rows(mark, devices * ROWS_PER_FRAME, timeout=60)
        label = "1 partition" if mode == 1 else f"{mode} partitions, {len(ingests)} process(es)"
        log(f"{label}: warm-up committed; {a.messages} frames at full speed")
        pg_pids = self._backend_pids(db_url)
        meter = CpuMeter(
            {
                "ingest": [i.proc.pid for i in ingests if i.proc is not None],
                "mosquitto": [broker.proc.pid],
                "postgres": pg_pids,
            }
        )
        mark = listener.mark()
        timeout = max(120.0, a.messages / 1000)
        handle = self.fastpub(full, broker.port, timeout=timeout)
        try:
            done_at = listener.wait_rows(mark, a.messages * ROWS_PER_FRAME, timeout)
        except BenchError as exc:
            raise BenchError(f"{label}: {exc}; {[self._diagnose(i) for i in ingests]}") from None
        self.fastpub_result(handle)
        cpu = meter.stop()
        # Backends a pool opened during the run (e.g. while the supervisor read the estates) did some of the
        # writing: count all their CPU, which they spent within the run.
        late = self._cpu_of(set(self._backend_pids(db_url)) - set(pg_pids))
        cpu["postgres_cpu_s"] += late
        seconds = done_at - handle["started"]
        for i in ingests:
            i.stop()
        broker.kill()
        per_1k = 1_000_000 / a.messages  # CPU seconds → ms per 1,000 messages
        run = {
            "messages_per_s": round(a.messages / seconds, 1),
            "ingest_ms_per_1k": round(cpu["ingest_cpu_s"] * per_1k, 1),
            "postgres_ms_per_1k": round(cpu["postgres_cpu_s"] * per_1k, 1),
            "mosquitto_ms_per_1k": round(cpu["mosquitto_cpu_s"] * per_1k, 1),
            "machine_busy_pct": cpu.get("machine_busy_pct"),
            "postgres_backends_opened_mid_run": late > 0,
        }
        log(f"{label}: {run}")
        return run

    @staticmethod
    def _cpu_of(pids: set[int]) -> float:
        import psutil

        total = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    # -- meter-reading stream: charging on vs off, side by side ------------------------------------

    def run_meter_stream(self) -> Figures:
        """Hot-water meter readings of households, ingest with charging on (STEWARD_BILLING_CHARGE_ON_INGEST)
        and off alternately, ``--repetitions`` times each, in one run on one database and one broker.

        The households are split in two halves, one per mode (an "off" repetition leaves no backlog for
        the next "on" one). Every message is one reading of its own meter, a quarter of an hour after the
        meter's previous one (METER_INTERVAL, the estate model's default reporting interval for meters);
        all meters have a baseline reading (charged nothing) before the first repetition. Ingest charges
        as the product does (an hour of a meter's readings per charge, billing_charge_span_s); afterwards
        one billing run charges what is left, and the check is that the "on" meters were charged exactly
        their registers' advance — nothing lost, nothing twice."""
        from bench.billing import make_households

        a = self.args
        cfg = self.figures.config
        per_mode = a.meter_households
        reps = a.repetitions
        frames_per_rep = -(-a.meter_messages // per_mode)
        cfg.update(
            mode="meter-stream",
            households_per_mode=per_mode,
            messages_per_repetition=a.meter_messages,
            repetitions=reps,
            window=a.window,
        )
        cfg["git"] = self._git_describe()
        cfg["background_cpu_pct_before"] = self.check_idle()
        self.fastpub_bin = build_fastpub(self.tmp)
        db_url = self.create_database(cfg)
        t = time.monotonic()
        make_households(db_url, 2 * per_mode)
        log(f"{2 * per_mode} households with meters and accounts in {time.monotonic() - t:.1f}s")
        codes = [f"BENCHBILL-HW{i:05d}" for i in range(2 * per_mode)]
        halves = {"on": codes[:per_mode], "off": codes[per_mode:]}
        frames = 1 + reps * frames_per_rep
        if METER_INTERVAL * frames > timedelta(days=25):
            raise BenchError(f"{frames} readings per meter a quarter-hour apart do not fit ingest's 30-day window")
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        clock = FrameClock((end - METER_INTERVAL * frames).astimezone(CN), METER_INTERVAL)
        broker = self.start_broker("mosquitto")
        listener = CommitListener(db_url)
        self.on_cleanup("close listener", listener.close)

        baseline = self.tmp / "meter-baseline.txt"
        write_meter_frames(baseline, codes, count=len(codes), first_frame=0, clock=clock)
        ingest = self._start_meter_ingest(db_url, broker, charging=True)
        cfg["ingest_settings"] = self._ingest_settings(ingest.env)
        mark = listener.mark()
        self.fastpub_result(self.fastpub(baseline, broker.port, timeout=120))
        listener.wait_rows(mark, len(codes), timeout=120)
        ingest.stop()
        log("baseline readings committed")

        runs: dict[str, list[float]] = {"on": [], "off": [], "on_charged": []}
        charging_lag: list[float] = []
        span_s = int(dict(kv.split("=", 1) for kv in a.ingest_env).get("STEWARD_BILLING_CHARGE_SPAN_S", 3600))
        charged_before = self._charges(db_url)
        for r in range(reps):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):  # alternate: drift hits both
                frames = self.tmp / f"meter-{mode}-{r}.txt"
                first = 1 + r * frames_per_rep
                write_meter_frames(frames, halves[mode], count=a.meter_messages, first_frame=first, clock=clock)
                ingest = self._start_meter_ingest(db_url, broker, charging=mode == "on")
                time.sleep(0.5)  # health turns ok on CONNACK, just before SUBSCRIBE
                mark = listener.mark()
                handle = self.fastpub(frames, broker.port, timeout=max(300.0, a.meter_messages / 20))
                try:
                    done_at = listener.wait_rows(mark, a.meter_messages, timeout=max(300.0, a.meter_messages / 20))
                except BenchError as exc:
                    raise BenchError(f"meter stream ({mode}): {exc}; {self._diagnose(ingest)}") from None
                self.fastpub_result(handle)
                seconds = done_at - handle["started"]
                runs[mode].append(a.meter_messages / seconds)
                note = ""
                if mode == "on":
                    # Charging behind ingest's commits (the default) may still be at work when the last
                    # reading is stored: the second figure counts until every meter is charged to within
                    # the span of its newest reading (in the batch transaction that is the same moment).
                    charged_at = self._wait_charged(db_url, halves["on"], span_s, timeout=300)
                    lag = max(0.0, charged_at - done_at)
                    charging_lag.append(lag)
                    runs["on_charged"].append(a.meter_messages / (seconds + lag))
                    note = f", {a.meter_messages / (seconds + lag):,.0f} msg/s counted until charged (+{lag:.2f} s)"
                ingest.stop()
                log(f"repetition {r + 1}, charging {mode}: {a.meter_messages / seconds:,.0f} msg/s{note}")
        charged = self._charges(db_url) - charged_before
        charged_volume, advance = self._settle(db_url, halves["on"], end)
        on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
        on_charged = statistics.median(runs["on_charged"])
        self.figures.throughput = {
            "on_messages_per_s": [round(x, 1) for x in runs["on"]],
            "off_messages_per_s": [round(x, 1) for x in runs["off"]],
            "on_charged_messages_per_s": [round(x, 1) for x in runs["on_charged"]],
            "charging_lag_s": [round(x, 3) for x in charging_lag],
            "median_on": round(on, 1),
            "median_off": round(off, 1),
            "median_on_charged": round(on_charged, 1),
            "ratio_on_off": round(on / off, 3),
            "ratio_on_charged_off": round(on_charged / off, 3),
        }
        readings = reps * a.meter_messages
        self.figures.checks = {
            "charges_at_ingest": charged,
            "readings_charged": readings,
            "charged_m3": str(charged_volume),
            "registers_advance_m3": str(advance),
            "ok": charged_volume == advance and 0 < charged <= readings,
        }
        if charged_volume != advance:
            log(f"warning: {charged_volume} m³ charged for {advance} m³ of register advance")
        broker.kill()
        listener.close()
        return self.figures

    def _start_meter_ingest(self, db_url: str, broker: Any, *, charging: bool) -> Any:
        from devkit.ingest_process import IngestProcess

        env = dict(kv.split("=", 1) for kv in self.args.ingest_env)
        env["STEWARD_BILLING_CHARGE_ON_INGEST"] = "true" if charging else "false"
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

    @staticmethod
    def _settle(db_url: str, codes: list[str], end: datetime) -> tuple[Decimal, Decimal]:
        """One billing run over everything, then (m³ charged, m³ of register advance) of the meters ``codes``."""
        import psycopg
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker

        from billing.tasks import billing_run

        engine = create_engine(db_url)
        try:
            billing_run(sessionmaker(engine, expire_on_commit=False), end)
        finally:
            engine.dispose()
        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute(
                "SELECT (SELECT coalesce(sum(c.volume_m3), 0) FROM meter_charges c JOIN devices d ON d.id = c.device_id"
                "        WHERE d.code = ANY(%(c)s)),"
                "       (SELECT coalesce(sum(r.adv), 0) FROM (SELECT max(m.register) - min(m.register) AS adv"
                "        FROM meter_readings m JOIN devices d ON d.id = m.device_id WHERE d.code = ANY(%(c)s)"
                "        GROUP BY m.device_id) r)",
                {"c": codes},
            ).fetchone()
        assert row is not None
        return Decimal(row[0]), Decimal(row[1])

    @staticmethod
    def _wait_charged(db_url: str, codes: list[str], span_s: int, timeout: float) -> float:
        """When (time.time()) every meter of ``codes`` was charged to within ``span_s`` of its newest reading."""
        import psycopg

        deadline = time.monotonic() + timeout
        with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM devices d LEFT JOIN billing_cursors c ON c.device_id = d.id"
                    " WHERE d.code = ANY(%(c)s) AND (c.last_ts IS NULL OR (SELECT max(m.ts) FROM meter_readings m"
                    "  WHERE m.device_id = d.id) - c.last_ts >= make_interval(secs => %(s)s))",
                    {"c": codes, "s": span_s},
                ).fetchone()
                if row is not None and row[0] == 0:
                    return time.time()
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"charging did not catch up in {timeout:.0f} s: {row[0] if row else '?'} meters behind"
                    )
                time.sleep(0.02)

    @staticmethod
    def _charges(db_url: str) -> int:
        import psycopg

        with psycopg.connect(libpq_url(db_url)) as conn:
            row = conn.execute("SELECT count(*) FROM meter_charges").fetchone()
        return int(row[0]) if row else 0

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
        """The stock paho subscriber is the ceiling the ratio is taken against (issue 2); the same
        subscriber on Steward's buffered reads (core.mqtt.BufferedClient) is measured beside it."""
        stock = self._bare_run(frames, buffered=False)
        self.figures.ceiling = dict(stock)
        self.figures.ceiling["buffered"] = self._bare_run(frames, buffered=True)
        if self.figures.throughput:
            ingest_rate = self.figures.throughput["messages_per_s"]
            self.figures.ceiling["ratio_ingest_to_bare"] = round(ingest_rate / stock["messages_per_s"], 3)
            self.figures.ceiling["ratio_ingest_to_buffered"] = round(
                ingest_rate / self.figures.ceiling["buffered"]["messages_per_s"], 3
            )

    def _bare_run(self, frames: Path, *, buffered: bool) -> dict[str, Any]:
        a = self.args
        settings = self.figures.config["ingest_settings"]
        broker = self.start_broker("mosquitto-ceiling")
        timeout = max(120.0, a.messages / 1000)
        label = "paho + buffered reads" if buffered else "stock paho"
        log(f"ceiling: bare subscriber, {label}")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-subscriber", "--port", str(broker.port)]
        cmd += ["--expect", str(a.messages), "--receive-maximum", str(settings["receive_maximum"])]
        cmd += ["--timeout", str(timeout)] + (["--buffered"] if buffered else [])
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
        log(f"ceiling, {label}: {a.messages / seconds:,.0f} msg/s")
        broker.kill()
        return {
            "seconds": round(seconds, 3),
            "messages_per_s": round(a.messages / seconds, 1),
            "receive_maximum": settings["receive_maximum"],
            "subscriber_cpu_s": res.get("cpu_s"),
            "fastpub": pub,
            "cpu": cpu,
        }

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


def write_device_frames(
    path: Path, devices: list[tuple[str, str]], *, count: int, first_frame: int, clock: FrameClock
) -> int:
    """``count`` telemetry frames round-robin over ``devices`` ((estate, device code) pairs, any estates), as
    bench.common.write_frames writes them for the one bench estate; returns the next free frame index."""
    from bench.common import quiet_value
    from devkit.estate import METRICS
    from protocol.topics import uplink

    topics = [uplink(estate, code, "telemetry") for estate, code in devices]
    frames = -(-count // len(devices))
    stamps = [clock.ts(first_frame + k) for k in range(frames)]
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            d, k = n % len(devices), n // len(devices)
            j = first_frame + k
            values = ",".join(f'"{m}":{quiet_value(m, d, j):.1f}' for m in METRICS)
            f.write(f'{topics[d]}\t{{"v":1,"ts":"{stamps[k]}","seq":{j},"values":{{{values}}}}}\n')
    return first_frame + frames


def write_meter_frames(path: Path, codes: list[str], *, count: int, first_frame: int, clock: FrameClock) -> None:
    """``count`` meter readings round-robin over the meters ``codes`` (estate ``benchbill`` of bench/billing.py):
    frame j of a meter has seq j, device time ``clock.ts(j)`` and a register 0.013 m³ per frame up."""
    from protocol.topics import uplink

    topics = [uplink("benchbill", c, "meter") for c in codes]
    with path.open("w", encoding="utf-8") as f:
        for n in range(count):
            d, j = n % len(codes), first_frame + n // len(codes)
            reg = 13 * j + d  # litres
            payload = (
                f'{{"v":1,"ts":"{clock.ts(j)}","seq":{j},"register":"{reg // 1000}.{reg % 1000:03d}","unit":"m3"}}'
            )
            f.write(f"{topics[d]}\t{payload}\n")


# --------------------------------------------------------------------------------------------------
# the ceiling's subscriber (runs in its own process: python bench/ingest.py --bare-subscriber ...)


def bare_subscriber(args: argparse.Namespace) -> int:
    from core.mqtt import SessionOptions, connect_async, make_client
    from protocol.topics import UPLINK_SUBSCRIPTION

    options = SessionOptions(
        client_id=f"bench-bare-{uuid.uuid4().hex[:8]}", receive_maximum=args.receive_maximum, manual_ack=False
    )
    client = make_client(options, buffered=args.buffered)
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


def report_meter_stream(figures: Figures, args: argparse.Namespace) -> None:
    t, cfg = figures.throughput, figures.config
    console, table, row = figures_table("Steward ingest benchmark: meter readings, charging on vs off")
    row(
        "messages × repetitions per mode",
        f"{args.meter_messages:,} × {args.repetitions} over {args.meter_households:,} meters each",
    )
    s = cfg.get("ingest_settings", {})
    row("ingest settings", f"batch {s.get('batch_size')}, {s.get('batch_latency_ms')} ms")
    row("database", f"{cfg.get('database')}{' + TimescaleDB' if cfg.get('timescaledb') else ' (plain tables)'}")
    row("charging on: msg/s (median)", f"{t['median_on']:,.0f}")
    row("  each repetition", ", ".join(f"{x:,.0f}" for x in t["on_messages_per_s"]))
    row("charging off: msg/s (median)", f"{t['median_off']:,.0f}")
    row("  each repetition", ", ".join(f"{x:,.0f}" for x in t["off_messages_per_s"]))
    row("ratio on / off", f"{t['ratio_on_off']:.3f}", "≥ 0.8", t["ratio_on_off"] >= 0.8)
    row("charging on, counted until charged: msg/s (median)", f"{t['median_on_charged']:,.0f}")
    row("  charging lag after the last reading, s", ", ".join(f"{x:.2f}" for x in t["charging_lag_s"]))
    # Not the figure (that is ingest's own rate, above): a burst's last readings wait up to one charging
    # round (STEWARD_BILLING_CHARGE_ROUND_S) by design, so in short bursts this mostly measures the round.
    row("ratio on (until charged) / off", f"{t['ratio_on_charged_off']:.3f}", "(includes ≤ 1 round)")
    ch = figures.checks
    row("charges written at ingest / readings", f"{ch['charges_at_ingest']:,} / {ch['readings_charged']:,}")
    row(
        "m³ charged (after one run) / register advance",
        f"{ch['charged_m3']} / {ch['registers_advance_m3']}",
        "equal",
        ch["ok"],
    )
    console.print(table)
    print(json.dumps({"bench": "ingest-meter-stream", **{k: v for k, v in vars(figures).items() if v}}, default=str))


def report_partitions(figures: Figures, args: argparse.Namespace) -> None:
    cfg, summary = figures.config, figures.throughput["summary"]
    parts = args.partitions
    console, table, row = figures_table(f"Steward ingest benchmark: 1 partition vs {parts}, side by side")
    row("frames × devices", f"{args.messages:,} × {args.devices:,} (5 readings each), {args.repetitions} run(s) each")
    row("partitioned", f"{parts} partitions over {cfg['processes']} process(es); estates {cfg['estates']}")
    row("database", f"{cfg.get('database')}{' + TimescaleDB' if cfg.get('timescaledb') else ' (plain tables)'}")
    one, many = summary[1], summary[parts]
    for key, name in (
        ("messages_per_s", "end-to-end messages/s"),
        ("ingest_ms_per_1k", "ingest CPU ms per 1,000 messages"),
        ("postgres_ms_per_1k", "PostgreSQL CPU ms per 1,000 messages"),
        ("mosquitto_ms_per_1k", "Mosquitto CPU ms per 1,000 messages"),
    ):
        row(name, f"1: {one[key]:,.1f}  |  {parts}: {many[key]:,.1f}")
    for mode in (1, parts):
        for n, run in enumerate(figures.throughput["runs"][mode]):
            row(
                f"  run {n + 1}, {mode} partition(s)",
                f"{run['messages_per_s']:,.0f} msg/s; CPU ms/1k: ingest {run['ingest_ms_per_1k']}, "
                f"pg {run['postgres_ms_per_1k']}, mosquitto {run['mosquitto_ms_per_1k']}; "
                f"machine {run['machine_busy_pct']}% busy",
            )
    console.print(table)
    print(json.dumps({"bench": "ingest-partitions", **{k: v for k, v in vars(figures).items() if v}}, default=str))


def report(figures: Figures, args: argparse.Namespace) -> None:
    if args.meter_stream:
        report_meter_stream(figures, args)
        return
    if args.partitions:
        report_partitions(figures, args)
        return
    t, p, c = figures.throughput, figures.paced, figures.ceiling
    console, table, row = figures_table("Steward ingest benchmark")

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
        row("bare stock paho QoS 1 receive (ceiling)", f"{c['messages_per_s']:,.0f} msg/s")
        if "ratio_ingest_to_bare" in c:
            row("ratio ingest / bare", f"{c['ratio_ingest_to_bare']:.2f}", "≥ 0.5", c["ratio_ingest_to_bare"] >= 0.5)
        if "buffered" in c:
            row("  bare paho + Steward's buffered reads", f"{c['buffered']['messages_per_s']:,.0f} msg/s")
            if "ratio_ingest_to_buffered" in c:
                row("  ratio ingest / bare buffered", f"{c['ratio_ingest_to_buffered']:.2f}")
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
        "--alarms",
        action="store_true",
        help="install the default alarm rules and turn on evaluation in ingest (STEWARD_ALARM_EVALUATION)",
    )
    ap.add_argument(
        "--meter-stream",
        action="store_true",
        help="hot-water meter readings instead of telemetry: ingest rate with charging on vs off, side by side",
    )
    ap.add_argument(
        "--partitions",
        type=int,
        default=0,
        metavar="P",
        help="CPU per 1,000 messages of one partition and of STEWARD_INGEST_PARTITIONS=P, side by side",
    )
    ap.add_argument(
        "--partition-processes", type=int, default=0, help="with --partitions: ingest processes (default P)"
    )
    ap.add_argument("--meter-households", type=int, default=1_000, help="meter stream: meters per mode (1000)")
    ap.add_argument("--meter-messages", type=int, default=5_000, help="meter stream: messages per repetition (5000)")
    ap.add_argument("--repetitions", type=int, default=3, help="meter stream: repetitions per mode (default 3)")
    ap.add_argument(
        "--ingest-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for ingest, repeatable"
    )
    ap.add_argument("--no-broker-persistence", action="store_true", help="mosquitto without its persistence file")
    ap.add_argument("--py-spy", metavar="OUT", help="profile ingest during the throughput run (.svg/.json/.txt)")
    ap.add_argument("--tmp-dir", help="where the temporary directory goes")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and the database")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--bare-subscriber", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--buffered", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--receive-maximum", type=int, default=10_000, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=300, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.alarms:
        args.ingest_env.append("STEWARD_ALARM_EVALUATION=true")
    for kv in args.ingest_env:
        if "=" not in kv:
            ap.error(f"--ingest-env wants KEY=VALUE, got {kv!r}")
    if args.partitions == 1 or args.partitions < 0:
        ap.error("--partitions wants P ≥ 2 (it compares 1 partition with P)")
    if args.messages < 1 or args.devices < 1:
        ap.error("--messages and --devices must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_subscriber:
        return bare_subscriber(args)
    os.environ.setdefault("STEWARD_ENV", "testing")
    return run_bench(Bench(args), lambda f: report(f, args), lambda f: bool(f.checks.get("ok", True)))


if __name__ == "__main__":
    sys.exit(main())
