"""Controller sync end to end through a real Mosquitto (issue 12 §3 and its acceptance): cards issued on the
platform reach simulated door controllers that start empty; a revocation makes the controller deny the card; a
controller offline during a revocation — killed and restarted — applies the newer list on reconnect before it
grants that card anything; and the nightly reconciliation repairs a list changed behind the platform's back.

The parts are the real ones: a throwaway Mosquitto, ``steward run ingest`` in a child process (acks, status
reports and swipes into the database), the worker's `Worker` loop in a thread running the outbox dispatcher
(worker/outbox.py over MQTT) and the ``access_sync`` job, woken by NOTIFY (worker/wake.py), and the simulator
(`simulators.run_simulation`, realtime, ``initial_cards=False``, its ``Whitelist`` objects kept across a kill and
restart, `DoorControls` to take a controller offline, present cards and tamper with its list). Time is the real
clock here (ingest, a child process, stamps arrivals with it); the 15-minute unsynced alarm is tested under a
pinned clock in tests/access/test_sync.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from access import doors, service, sync
from core import clock
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from protocol.whitelist import WhitelistEntryV1, whitelist_digest
from simulators import run_simulation
from simulators.controls import DoorControls
from simulators.doors import Whitelist
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from storage.models import AccessControllerSync, Building, Device, Estate, Unit
from tests.support.ingest_process import IngestProcess
from worker.jobs import ACCESS_SYNC_LOCK, OUTBOX_LOCK, Job, access_sync_job
from worker.outbox import MqttPublisher, OutboxDispatcher
from worker.runner import Worker
from worker.wake import WakeListener, conninfo

pytestmark = pytest.mark.broker

ESTATE = "sync-e2e"
CTL = "AC-1-1"
ESTATE_DOC = f"""\
estate: {{code: {ESTATE}, name: 门禁同步测试, timezone: Asia/Shanghai}}
buildings:
  - {{code: "1", name: 1幢, floors: 1, entrances: 1, units_per_floor: 2}}
devices:
  - {{code: {CTL}, kind: door_controller, name: 1幢1单元, building: "1", expected_interval_s: 300,
     attrs: {{doors: [1-1-main], entrance: 1}}}}
"""
WAIT_S = 20.0
T = TypeVar("T")


def _wait(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Sim:
    """One run of the simulator in a thread (a process, as far as the broker can tell)."""

    def __init__(self, estate: Path, port: int, kept: dict[str, Whitelist], controls: DoorControls) -> None:
        self.stop = threading.Event()
        self.progress: list[RunStats] = []
        self.thread = threading.Thread(
            target=run_simulation,
            args=(estate, "127.0.0.1", port),
            kwargs={
                "seed": 3,
                "speed": 1,
                "stop_event": self.stop,
                "on_progress": self.progress.append,
                "client_id": "sync-e2e-sim",
                "initial_cards": False,
                "whitelists": kept,
                "controls": controls,
            },
            name="sync-e2e-sim",
        )
        self.thread.start()
        _wait("the simulator's downlink subscription", lambda: self.progress and self.progress[-1].commands.subscribed)

    def kill(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


class Platform:
    """The database side: the worker loop in a thread, and reads of what ingest stored."""

    def __init__(self, engine: Engine, mqtt_port: int) -> None:
        self.engine = engine
        self.factory = sessionmaker(engine, expire_on_commit=False)
        self.publisher = MqttPublisher("127.0.0.1", mqtt_port, client_id="sync-e2e-worker").start()
        assert self.publisher.wait_connected(10)
        # Resend an unacknowledged command after 3 s (the default minute would only slow the test down).
        dispatcher = OutboxDispatcher(self.publisher, ack_timeout_s=3.0)
        self.worker = Worker(
            self.factory,
            [
                Job("outbox", 2.0, OUTBOX_LOCK, dispatcher),
                Job("access_sync", 2.0, ACCESS_SYNC_LOCK, access_sync_job(None)),
            ],
        )
        self.stop = threading.Event()
        self.listener = WakeListener(conninfo(engine), self.worker.poke).start()
        assert self.listener.listening.wait(10)
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), name="sync-e2e-worker")
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.worker.poke()
        self.thread.join(15)
        self.listener.stop()
        self.publisher.stop()

    def sync_row(self, controller_id: int) -> AccessControllerSync:
        with self.factory() as s:
            row = s.get(AccessControllerSync, controller_id)
            assert row is not None
            return row

    def swipes(self, uid: str, after: datetime) -> list[tuple[bool, str | None]]:
        with self.engine.connect() as conn:
            return [
                (r.granted, r.reason)
                for r in conn.execute(
                    text(
                        "SELECT granted, reason FROM access_events WHERE card_uid = :u AND received_at > :a ORDER BY ts"
                    ),
                    {"u": uid, "a": after},
                )
            ]


@pytest.fixture
def world(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> tuple[Platform, Path, int, int, list[int]]:
    estate_file = tmp_path / "estate.yaml"
    estate_file.write_text(ESTATE_DOC, encoding="utf-8")
    engine = create_engine(fresh_database)
    stop_at_end(engine, stop=engine.dispose)
    with Session(engine) as s, s.begin():
        import_estate(s, load_estate_file(estate_file))
        estate_id = s.scalars(select(Estate.id).where(Estate.code == ESTATE)).one()
        controller_id = s.scalars(select(Device.id).where(Device.code == CTL)).one()
        doors.sync_doors(s, estate_id)  # the controller's doors become access_doors rows
        units = list(
            s.scalars(
                select(Unit.id)
                .join(Building, Building.id == Unit.building_id)
                .where(Building.estate_id == estate_id)
                .order_by(Unit.code)
            )
        )
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-sync-e2e"))
    ingest.start()
    platform = stop_at_end(Platform(engine, mosquitto.port), stop=lambda: platform.close())
    return platform, estate_file, estate_id, controller_id, units


def _issue(platform: Platform, estate_id: int, unit_id: int, uid: str) -> int:
    with platform.factory() as s, s.begin():
        return service.issue(
            s,
            estate_id=estate_id,
            card_type="owner",
            uid=uid,
            holder_name="测试业主",
            unit_id=unit_id,
            actor="card-desk",
            door_codes=["1-1-main"],
        ).id


def _revoke(platform: Platform, card_id: int) -> None:
    with platform.factory() as s, s.begin():
        service.revoke(s, card_id, actor="card-desk", reason="e2e")


def _synced(platform: Platform, controller_id: int, kept: dict[str, Whitelist]) -> bool:
    """The platform sees the controller synced, and the controller holds exactly the desired list."""
    row = platform.sync_row(controller_id)
    held = kept.get(CTL)
    return (
        row.applied_version == row.desired_version > 0
        and row.pending_since is None
        and held is not None
        and held.version == row.desired_version
        and whitelist_digest(held.entries.values()) == row.desired_digest
    )


def test_controllers_converge_deny_revoked_cards_catch_up_after_a_restart_and_are_repaired(
    world: tuple[Platform, Path, int, int, list[int]], mosquitto: MosquittoProcess
) -> None:
    platform, estate_file, estate_id, controller_id, units = world
    kept: dict[str, Whitelist] = {}
    controls = DoorControls()
    a_uid, b_uid, c_uid = "1A2B3C4D", "2B3C4D5E", "3C4D5E6F"

    sim = Sim(estate_file, mosquitto.port, kept, controls)
    try:
        _wait("the controller's model", lambda: CTL in kept)
        # It starts empty at version 0; the access_sync job's first pass gives a new controller an (empty) snapshot.
        _wait("the new controller's first list", lambda: _synced(platform, controller_id, kept))
        assert (kept[CTL].version, kept[CTL].entries) == (1, {})
        a = _issue(platform, estate_id, units[0], a_uid)
        b = _issue(platform, estate_id, units[0], b_uid)
        _issue(platform, estate_id, units[1], c_uid)
        _wait("the controller to converge", lambda: _synced(platform, controller_id, kept))
        assert sorted(kept[CTL].entries) == sorted([a_uid, b_uid, c_uid])

        t = clock.now()
        controls.present(CTL, a_uid)
        _wait("a's swipe", lambda: platform.swipes(a_uid, t))
        assert platform.swipes(a_uid, t) == [(True, None)]

        # Revoke a: committed with its command; the controller denies the card.
        started = time.monotonic()
        _revoke(platform, a)
        _wait("the revocation to apply", lambda: _synced(platform, controller_id, kept))
        print(f"revocation committed → applied and acknowledged: {time.monotonic() - started:.3f} s")
        # Swipes are keyed by (controller, second, card): the same card again needs the next second.
        time.sleep(1.05)
        t = clock.now()
        controls.present(CTL, a_uid)
        _wait("a's swipe after the revocation", lambda: platform.swipes(a_uid, t))
        assert platform.swipes(a_uid, t) == [(False, "unknown")]

        # Offline during b's revocation: the controller hears nothing and is killed while offline.
        controls.disconnect(CTL)
        time.sleep(1.0)
        before = platform.sync_row(controller_id)
        _revoke(platform, b)
        time.sleep(4.0)  # the dispatcher publishes (and resends) the delta into the void
        assert b_uid in kept[CTL].entries
        row = platform.sync_row(controller_id)
        assert row.desired_version == before.desired_version + 1
        assert row.applied_version == before.desired_version
        assert row.pending_since is not None  # 待同步
    finally:
        sim.kill()

    # Restarted with what it kept: its connect report shows it behind, and the newer list arrives before b can
    # get in. b is presented as soon as the controller holds the desired version, and is denied.
    t = clock.now()
    sim = Sim(estate_file, mosquitto.port, kept, controls)
    try:
        _wait("the restarted controller to catch up", lambda: _synced(platform, controller_id, kept))
        assert b_uid not in kept[CTL].entries
        controls.present(CTL, b_uid)
        _wait("b's swipe after the restart", lambda: platform.swipes(b_uid, t))
        assert platform.swipes(b_uid, t) == [(False, "unknown")]  # never granted after its revocation

        # Changed behind the platform's back: b is put back by hand, same version; the nightly reconciliation
        # asks for the report, sees the digest differ and repairs the list with a snapshot.
        controls.tamper(CTL, upsert=[WhitelistEntryV1(uid=b_uid, doors=("1-1-main",))])
        _wait("the tamper", lambda: b_uid in kept[CTL].entries)
        tampered_version = kept[CTL].version
        with platform.factory() as s, s.begin():
            assert sync.request_reports(s, clock.now(), force=True, estate_id=estate_id)
        _wait(
            "the reconciliation's repair",
            lambda: kept[CTL].version > tampered_version and _synced(platform, controller_id, kept),
        )
        assert b_uid not in kept[CTL].entries
        assert sorted(kept[CTL].entries) == [c_uid]
    finally:
        sim.kill()
