"""Access alarms end to end through a real Mosquitto (issue 12 §4): a simulated door controller with an empty
whitelist denies the cards presented to it (`simulators.DoorControls`), reports a forced door, and refuses a card
the platform has revoked as lost; `steward run ingest` (a child process) stores the events and raises, in the
same transactions, the denied-streak, forced-door and lost-card alarms (alarms/access_evaluator.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from access import doors, service
from alarms.access_pack import ensure_access_rules
from facility.importer import import_estate
from protocol.estate_file import load_estate_file
from simulators import run_simulation
from simulators.controls import DoorControls
from simulators.doors import Whitelist
from simulators.run import RunStats
from steward.broker import MosquittoProcess
from storage.models import Building, Estate, Unit
from tests.e2e.test_access_sync_e2e import _wait
from tests.support.ingest_process import IngestProcess

pytestmark = pytest.mark.broker

ESTATE = "doors-e2e"
CTL = "AC-1-1"
DOOR = "1-1-main"
ESTATE_DOC = f"""\
estate: {{code: {ESTATE}, name: 门禁报警测试, timezone: Asia/Shanghai}}
buildings:
  - {{code: "1", name: 1幢, floors: 1, entrances: 1, units_per_floor: 2}}
devices:
  - {{code: {CTL}, kind: door_controller, name: 1幢1单元, building: "1", expected_interval_s: 300,
     attrs: {{doors: [{DOOR}], entrance: 1}}}}
"""


def test_denied_streak_forced_door_and_lost_card_through_the_broker(
    fresh_database: str, mosquitto: MosquittoProcess, tmp_path: Path, stop_at_end: Callable[..., Any]
) -> None:
    estate_file = tmp_path / "estate.yaml"
    estate_file.write_text(ESTATE_DOC, encoding="utf-8")
    engine = create_engine(fresh_database)
    stop_at_end(engine, stop=engine.dispose)
    with Session(engine) as s, s.begin():
        import_estate(s, load_estate_file(estate_file))
        ensure_access_rules(s)
        estate_id = s.scalars(select(Estate.id).where(Estate.code == ESTATE)).one()
        doors.sync_doors(s, estate_id)
        unit_id = s.scalars(
            select(Unit.id).join(Building, Building.id == Unit.building_id).where(Building.estate_id == estate_id)
        ).first()
        card = service.issue(
            s,
            estate_id=estate_id,
            card_type="owner",
            uid="0A0B0C0D",
            holder_name="测试业主",
            unit_id=unit_id,
            actor="card-desk",
            door_codes=[DOOR],
        )
        service.report_lost(s, card.id, actor="card-desk")  # 挂失 without a replacement
    ingest = stop_at_end(IngestProcess(fresh_database, mosquitto.url, tmp_path / "logs", client_id="ingest-doors-e2e"))
    ingest.start()

    controls = DoorControls()
    stop = threading.Event()
    progress: list[RunStats] = []
    kept: dict[str, Whitelist] = {}
    sim = threading.Thread(
        target=run_simulation,
        args=(estate_file, "127.0.0.1", mosquitto.port),
        kwargs={
            "seed": 5,
            "speed": 1,
            "stop_event": stop,
            "on_progress": progress.append,
            "client_id": "doors-e2e-sim",
            "initial_cards": False,  # an empty list: the controller denies every card
            "whitelists": kept,
            "controls": controls,
        },
        name="doors-e2e-sim",
    )
    sim.start()
    stop_at_end(sim, stop=lambda: (stop.set(), sim.join(10)))
    _wait("the simulator to run", lambda: progress and progress[-1].commands.subscribed)
    for i in range(5):
        controls.present(CTL, f"FFFF00{i:02X}", DOOR)
    controls.present(CTL, "0A0B0C0D", DOOR)
    controls.door_event(CTL, "forced_open", DOOR)

    def open_alarms() -> set[str] | None:
        with engine.connect() as conn:
            codes = set(
                conn.scalars(
                    text(
                        "SELECT r.code FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
                        "WHERE a.estate_id = :e AND a.state <> 'cleared'"
                    ),
                    {"e": estate_id},
                )
            )
        wanted = {"access.denied_streak", "access.door_forced", "access.lost_card"}
        return codes if wanted <= codes else None

    _wait("the three access alarms", open_alarms, timeout=30)
    with engine.connect() as conn:
        detail = conn.scalar(
            text(
                "SELECT a.detail FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
                "WHERE a.estate_id = :e AND r.code = 'access.lost_card'"
            ),
            {"e": estate_id},
        )
    assert detail["card"] == "0A0B****"
