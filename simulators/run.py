"""A live run: fleet → pacer → publisher → broker, until the duration is covered or stop is set."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from simulators.clock import Pacer, default_start, require_aware
from simulators.commands import CommandCounts, CommandInbox, CommandRouter, DoorCommands, ValveController
from simulators.controls import DoorControls
from simulators.doors import Whitelist
from simulators.fleet import Fleet
from simulators.frames import FrameCounts, TsFormat
from simulators.meters import RegisterStart
from simulators.publisher import DEFAULT_WINDOW, Publisher, connect
from simulators.scenarios import DEFAULT_ONSET, ScenarioPlan, ScenarioSpec, parse_scenario

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
DRAIN_TIMEOUT_S = 15.0
NAP_S = 0.2  # longest sleep between looks at the stop event while waiting for the next tick


@dataclass
class RunStats:
    """Counts of a live run. ``on_progress`` gets this same object, updated in place."""

    estate: str
    seed: int
    sim_start: datetime
    sim_now: datetime
    frames: FrameCounts = field(default_factory=FrameCounts)
    published: int = 0  # accepted by paho into the session
    acked: int = 0  # PUBACKs received
    in_flight: int = 0
    max_in_flight: int = 0
    refused: int = 0
    connects: int = 0
    disconnects: int = 0
    last_error: str | None = None
    wall_s: float = 0.0
    stopped: bool = False  # stop_event ended the run early
    drained: bool = True  # every published message was acknowledged before returning
    plans: tuple[ScenarioPlan, ...] = ()
    commands: CommandCounts = field(default_factory=CommandCounts)  # downlink valve commands, see commands.py
    door_commands: CommandCounts = field(default_factory=CommandCounts)  # whitelist commands and reports

    @property
    def sim_elapsed(self) -> timedelta:
        return self.sim_now - self.sim_start


def run_simulation(
    estate_file: Path | str,
    host: str,
    port: int,
    *,
    seed: int = 0,
    rate: float = 0.0,
    speed: float = 1.0,
    duration_s: float | None = None,
    scenarios: Iterable[str | ScenarioSpec] = (),
    stop_event: threading.Event | None = None,
    on_progress: Callable[[RunStats], None] | None = None,
    username: str | None = None,
    password: str | None = None,
    start: datetime | None = None,
    client_id: str | None = None,
    window: int = DEFAULT_WINDOW,
    ts_format: TsFormat = "iso",
    commands: bool = True,
    registers: Mapping[str, RegisterStart] | None = None,
    initial_cards: bool = True,
    whitelists: MutableMapping[str, Whitelist] | None = None,
    controls: DoorControls | None = None,
) -> RunStats:
    """Simulate the estate's devices and publish their frames to ``host:port`` (QoS 1).

    seed         same seed (and start) → same frames, byte for byte.
    rate         max messages per second; 0 = as fast as the broker acknowledges.
    speed        simulated seconds per wall second (60 = an hour a minute); <= 0 = as fast as possible.
                 Simulated time never runs ahead of the wall clock (a device cannot report the future).
    duration_s   simulated seconds to cover; None = until ``stop_event``.
    scenarios    names or "name[:DEVICE][@OFFSET]" strings, see ``simulators.scenarios.SCENARIOS``.
                 Without an offset a scenario starts 30 min in (a quarter of a shorter duration).
    start        simulated start (aware). Default: now for speed 1, else now − duration (a replay of
                 the recent past that ends about now; at most 29 days back), see ``clock.default_start``.
    on_progress  called about once a second (and once at the end) on this thread with the run's
                 ``RunStats`` (one object updated in place: copy what you want to keep).
    window       max unacknowledged messages (bounded far below MQTT's 65,535 packet ids).
    registers    meter code → registers to start from (a resumed estate); other meters start from the seed.
    commands     obey the platform's valve commands: subscribe to ``steward/{estate}/down/+/valve``,
                 close/open the meter's valve from the current simulated time and publish the device's
                 ``ack`` (see ``simulators.commands``). Frames only change once a command arrives.
                 Door controllers likewise obey ``whitelist`` and ``whitelist_report`` commands.
    initial_cards  door controllers not in ``whitelists`` start from the made-up resident list (True, the
                 demo before the platform issued cards) or empty at version 0 (False).
    whitelists   controller code → ``Whitelist``, filled in for every controller: what a controller keeps
                 across a kill and restart. Pass the same mapping to the next run to restart the fleet.
    controls     ``DoorControls`` to take controllers offline and back, present cards, tamper with a list.

    Blocks until done; returns the final counts. The broker must let this one connection publish on
    ``steward/{estate}/up/#`` for every device (a gateway account, not a per-device ``%u`` ACL) and,
    with ``commands``, read ``steward/{estate}/down/+/valve``, ``…/whitelist`` and ``…/whitelist_report``.
    """
    stop = stop_event or threading.Event()
    sim_start = require_aware(start, "start") if start else default_start(speed, duration_s)
    end = sim_start + timedelta(seconds=duration_s) if duration_s is not None else None
    specs = [parse_scenario(s) if isinstance(s, str) else s for s in scenarios]
    if duration_s is not None:
        # A short run would end before the default onset: bring unscheduled scenarios forward.
        early = min(DEFAULT_ONSET, timedelta(seconds=duration_s) / 4)
        specs = [s if s.at is not None else replace(s, at=early) for s in specs]
    fleet = Fleet.from_file(
        estate_file,
        seed=seed,
        start=sim_start,
        scenarios=specs,
        ts_format=ts_format,
        registers=registers,
        initial_cards=initial_cards,
        whitelists=whitelists,
    )
    # Step: 1 s of simulated time in realtime; coarser when faster, so each tick is ~1/4 s of wall time.
    step = timedelta(seconds=min(60.0, max(1.0, speed / 4 if speed > 0 else 60.0)))
    stats = RunStats(fleet.estate, seed, sim_start, sim_start, plans=fleet.plans)
    client = connect(
        host,
        port,
        client_id=client_id or f"steward-sim-{fleet.estate}-{os.getpid()}",
        username=username,
        password=password,
        window=window,
    )
    publisher = Publisher(client, window=window, rate=rate)
    router = CommandRouter(ValveController(fleet, stats.commands), DoorCommands(fleet, stats.door_commands))
    # Set when a command or a control request arrives, so a realtime run answers it without waiting a tick.
    wake = controls.wake if controls is not None else threading.Event()
    inbox = CommandInbox(fleet.estate, stats.commands, wake=wake)
    if commands:
        inbox.attach(client)  # after Publisher: chains its on_connect
    pacer = Pacer(sim_start, speed)
    wall0 = time.monotonic()
    last_progress = 0.0

    def refresh() -> RunStats:
        w, c = publisher.window, publisher.counts
        stats.published, stats.acked, stats.in_flight = c.published, w.acked, w.in_flight
        stats.max_in_flight, stats.refused = w.high_water, c.refused
        stats.connects, stats.disconnects, stats.last_error = c.connects, c.disconnects, c.last_error
        stats.wall_s = time.monotonic() - wall0
        return stats

    for plan in fleet.plans:
        log.info("scenario %s → %s from %s: %s", plan.name, plan.device, plan.onset.isoformat(), plan.summary)
        if end is not None and plan.onset >= end:
            log.warning("scenario %s starts after the run ends (%s)", plan.name, end.isoformat())

    def obey(t: datetime) -> bool:
        """Apply the commands that arrived since the last tick at simulated time ``t``; publish the acks."""
        for msg in inbox.drain():
            ack = router.handle(msg, t)
            if ack is not None:
                if not publisher.publish(ack, stop):
                    return False
                stats.frames.add(ack)
        return True

    def advance(t: datetime) -> bool:
        """Controls, then commands, then the fleet's frames, all at simulated time ``t``; False once stopped."""
        if controls is not None:
            controls.apply(fleet, t)
        # Before the tick: a valve closed at t shows in the readings taken at t and later.
        if not obey(t):
            return False
        for frame in fleet.tick(t):
            if not publisher.publish(frame, stop):
                return False
            stats.frames.add(frame)
        return True

    def wait_until(t: datetime) -> bool:
        """Wait for ``t`` to be due. A command or control arriving meanwhile is obeyed at once, at the last
        simulated time reached: a real controller does not wait for a clock tick. False once stopped."""
        while (wait := pacer.delay(t)) > 0:
            if stop.is_set():
                return False
            if wake.wait(min(wait, NAP_S)):
                wake.clear()
                if not advance(stats.sim_now):
                    return False
        return not stop.is_set()

    try:
        t = sim_start
        while end is None or t < end:
            t = t + step if end is None else min(t + step, end)
            if not wait_until(t) or not advance(t):
                stats.stopped = True
                break
            stats.sim_now = t
            if on_progress is not None and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                on_progress(refresh())
        if not stats.stopped:
            obey(t)  # answer what arrived during the last tick
        # Give outstanding PUBACKs a chance, so "acked" is final when we return.
        stats.drained = publisher.window.wait_empty(0.5 if stats.stopped else DRAIN_TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()
    refresh()
    if on_progress is not None:
        on_progress(stats)
    return stats
