"""An estate with one room of every kind, built in the test's rolled-back session, and a driven clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from alarms.packs import ensure_default_rules
from core import clock
from facility.importer import import_estate
from protocol.estate_file import EstateFile
from storage.models import Device, Estate, Point, Room

SH = ZoneInfo("Asia/Shanghai")
# 08:00 Shanghai time: the 2 h power-room round [08:00, 10:00) begins.
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=SH)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def rooms_estate(code: str) -> EstateFile:
    return EstateFile.model_validate(
        {
            "estate": {"code": code, "name": f"巡检测试 {code}", "timezone": "Asia/Shanghai"},
            "rooms": [
                {
                    "code": "PR1",
                    "name": "1号配电房",
                    "kind": "power_room",
                    "devices": [
                        {
                            "code": f"{code.upper()}-LV1",
                            "kind": "lv_incomer",
                            "expected_interval_s": 15,
                            "points": [{"metric": "voltage_a_v", "unit": "V"}],
                        },
                        {
                            "code": f"{code.upper()}-CAP1",
                            "kind": "capacitor_cabinet",
                            "expected_interval_s": 60,
                            "points": [{"metric": "case_temp_c", "unit": "°C"}],
                        },
                        {
                            "code": f"{code.upper()}-ENV",
                            "kind": "room_environment",
                            "expected_interval_s": 30,
                            "points": [{"metric": "room_temp_c", "unit": "°C"}],
                        },
                        {
                            "code": f"{code.upper()}-TR1",
                            "kind": "dry_type_transformer",
                            "expected_interval_s": 30,
                            "points": [{"metric": "winding_temp_a_c", "unit": "°C"}],
                        },
                    ],
                },
                {
                    "code": "HS1",
                    "name": "换热站",
                    "kind": "heat_station",
                    "devices": [
                        {
                            "code": f"{code.upper()}-HX1",
                            "kind": "plate_heat_exchanger",
                            "points": [{"metric": "secondary_supply_temp_c", "unit": "°C"}],
                        }
                    ],
                },
                {"code": "PUMP1", "name": "生活水泵房", "kind": "pump_room", "devices": []},
                {"code": "FIRE1", "name": "消防泵房", "kind": "fire_pump_room", "devices": []},
                {"code": "HWP1", "name": "热水机房", "kind": "hot_water_plant", "devices": []},
            ],
            "devices": [{"code": f"{code.upper()}-HW1", "kind": "hot_water_meter", "register_max": "99999.999"}],
        }
    )


@dataclass
class RoomsEstate:
    session: Session
    code: str
    id: int

    def room(self, code: str) -> Room:
        return self.session.scalars(select(Room).where(Room.estate_id == self.id, Room.code == code)).one()

    def point(self, device_suffix: str, metric: str) -> int:
        return int(
            self.session.scalar(
                select(Point.id)
                .join(Device, Device.id == Point.device_id)
                .where(Device.code == f"{self.code.upper()}-{device_suffix}", Point.metric == metric)
            )
            or 0
        )

    def device(self, suffix: str) -> Device:
        return self.session.scalars(select(Device).where(Device.code == f"{self.code.upper()}-{suffix}")).one()

    def sample(self, point_id: int, ts: datetime, value: float) -> None:
        self.session.execute(
            text("INSERT INTO samples (ts, point_id, value) VALUES (:ts, :p, :v) ON CONFLICT DO NOTHING"),
            {"ts": ts, "p": point_id, "v": value},
        )


LV_POINTS = (("LV1", "voltage_a_v", 228.0), ("CAP1", "case_temp_c", 38.0), ("ENV", "room_temp_c", 29.0))


@pytest.fixture
def est(session: Session) -> RoomsEstate:
    code = f"rd-{uuid.uuid4().hex[:8]}"
    import_estate(session, rooms_estate(code))
    ensure_default_rules(session)
    estate_id = session.scalar(select(Estate.id).where(Estate.code == code))
    assert estate_id is not None
    return RoomsEstate(session, code, estate_id)


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    """core.clock.now() returns holder[0]; tests move it."""
    holder = [at(0)]
    clock.set_clock(lambda: holder[0])
    yield holder
    clock.reset_clock()
