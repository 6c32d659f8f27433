"""Default inspection schedules per room kind (domain-defaults §1, from the SOP in seeds/001).

SOP 《物业服务巡查内容》 2.工程巡查内容:
- 高低压配电房: 每班每2小时巡查一次低压配电柜、电容柜; 每4小时巡视一次变压开关柜、变压器;
- 热力站: 每班每2小时一次巡查;
- 给排水 (生活变频水泵、喷淋泵、消防泵、稳压泵、水池、水箱、闸阀): 每四天进行一次巡查.

The hot-water plant (热水机房) is not in the SOP: every 2 h like the heat station is **derived**
(it is a plant room with pumps and a heater that residents notice within the hour).
Grace periods (how long after a window ends before a round with neither telemetry nor a manual
record is *missed*) are derived too: a quarter of a 2 h shift round (30 min), 1 h for the 4 h round,
half a day for the 4-day water-supply round.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import RoomKind


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """One default schedule of a room kind; `code` is the upsert key within the room."""

    code: str
    name_zh: str
    name_en: str
    interval_minutes: int
    # Device kinds whose points the round covers; None covers every device of the room.
    device_kinds: tuple[str, ...] | None
    grace_minutes: int


# Device kinds as examples/estate.yaml spells them, plus the kinds a larger power room would add
# (LV feeders, oil-immersed transformers, HV switchgear), so an estate file using them is covered.
LV_KINDS = ("lv_incomer", "lv_feeder", "lv_cabinet", "capacitor_cabinet", "room_environment")
HV_KINDS = ("dry_type_transformer", "oil_immersed_transformer", "transformer", "hv_switchgear")

EVERY_2H, EVERY_4H, EVERY_4D = 120, 240, 4 * 24 * 60

DEFAULT_SCHEDULES: dict[str, tuple[ScheduleSpec, ...]] = {
    RoomKind.power_room: (
        ScheduleSpec(
            "lv_2h", "低压配电柜、电容柜 2小时巡检", "LV & capacitor cabinets, every 2 h", EVERY_2H, LV_KINDS, 30
        ),
        ScheduleSpec(
            "hv_4h", "变压器、高压开关柜 4小时巡检", "Transformers & HV switchgear, every 4 h", EVERY_4H, HV_KINDS, 60
        ),
    ),
    RoomKind.heat_station: (
        ScheduleSpec("station_2h", "热力站 2小时巡检", "Heat station, every 2 h", EVERY_2H, None, 30),
    ),
    RoomKind.pump_room: (
        ScheduleSpec("pumps_4d", "生活水泵房 4天巡检", "Domestic pump room, every 4 days", EVERY_4D, None, 720),
    ),
    RoomKind.fire_pump_room: (
        ScheduleSpec("pumps_4d", "消防泵房 4天巡检", "Fire pump room, every 4 days", EVERY_4D, None, 720),
    ),
    # Derived: not in the SOP (see module doc).
    RoomKind.hot_water_plant: (
        ScheduleSpec("plant_2h", "热水机房 2小时巡检", "Hot-water plant, every 2 h", EVERY_2H, None, 30),
    ),
}

# Ticket category of a room kind's manual round (tickets/ vocabulary).
ROOM_CATEGORY: dict[str, str] = {
    RoomKind.power_room: "electrical",
    RoomKind.heat_station: "heating",
    RoomKind.pump_room: "water",
    RoomKind.fire_pump_room: "fire",
    RoomKind.hot_water_plant: "hot_water",
}

__all__ = ["DEFAULT_SCHEDULES", "HV_KINDS", "LV_KINDS", "ROOM_CATEGORY", "ScheduleSpec"]
