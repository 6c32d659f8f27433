"""Chinese as the staff speak it: the product's vocabulary as (简体中文, English) pairs, in one place.

Every domain label table (alarms/const.py, tickets/const.py, alarms/rounds.py, …), the pages (dashboards/i18n.py)
and the notices take their words from here instead of spelling them again, so one screen never says 告警 beside
报警 or 换热站 beside 热力站. Keys are the stored enum values (plain strings: core is the lowest layer and
imports no domain). tests/core/test_glossary.py checks that every pair has both languages and that no Chinese
label uses a word the staff do not use (BANNED below).

The SOP quoted in the comments is the property company's own text in /work/shared/seeds/ (seeds/001 巡查,
seeds/000 收费与报修, seeds/002 客服手册, seeds/004 服务流程).
"""

from __future__ import annotations

from collections.abc import Mapping

Pair = tuple[str, str]

# Words a Chinese label must not contain, each with the reason and the word to use instead.
BANNED: dict[str, str] = {
    "告警": "报警 (one word for an alarm; 告警 is IT-monitoring jargon the duty staff do not use)",
    "走水": "水表走字 (走水 means a fire)",
    "换热站": "热力站 (the SOP's name, seeds/001 热力站的巡查制度)",
    "强弱电": "电气 (强弱电 overlaps 门禁, which is its own category)",
    "表计": "水电表 (seeds/001 水电表检查)",
    "漏检": "未巡检",
}
# 严重 is banned only bare: "严重" as a severity needs a noun (the severity is 紧急); 严重漏水 is fine.
BARE_SEVERE = "严重"

# --- alarms ----------------------------------------------------------------------------------------------------

ALARM: Pair = ("报警", "Alarm")
# Severities: 预警 / 报警 / 紧急 (a bare 严重 is not a level anyone on duty names; 紧急 is also the SOP's 急修 word).
SEVERITY: dict[str, Pair] = {
    "warning": ("预警", "Warning"),
    "alarm": ("报警", "Alarm"),
    "critical": ("紧急", "Critical"),
}
# The state of an alarm episode. A cleared alarm reads by how it ended (CLEARED_BY): 已恢复 when the condition
# ended by itself, 手动解除 when someone cleared it with a reason; "cleared" alone is the recovered case.
ALARM_STATE: dict[str, Pair] = {
    "active": ("未确认", "Active"),
    "acknowledged": ("已确认", "Acknowledged"),
    "cleared": ("已恢复", "Recovered"),
}
CLEARED_BY: dict[str, Pair] = {
    "condition_ended": ("已恢复", "Recovered"),
    "manual": ("手动解除", "Cleared by hand"),
}
ALARM_OPEN: Pair = ("未恢复", "Open")  # not cleared yet (active or acknowledged)
ACKNOWLEDGE: Pair = ("确认", "Acknowledge")
CLEAR_BY_HAND: Pair = ("手动解除", "Clear manually")
ALARM_LIMIT: Pair = ("报警限值", "Alarm limit")  # the level a threshold rule raises at

# --- tickets ---------------------------------------------------------------------------------------------------

TICKET_STATUS: dict[str, Pair] = {
    "received": ("已受理", "Received"),
    "dispatched": ("已派单", "Dispatched"),
    "accepted": ("已接单", "Accepted"),
    "on_site": ("已到场", "On site"),
    "resolved": ("已完工", "Resolved"),
    "callback_done": ("已回访", "Called back"),
    "closed": ("已关闭", "Closed"),
}
PRIORITY: dict[str, Pair] = {
    "urgent": ("紧急", "Urgent"),
    "high": ("较急", "High"),
    "normal": ("一般", "Normal"),
    "minor": ("小修", "Minor"),
}
TICKET_CATEGORY: dict[str, Pair] = {
    # 电气, not 强弱电: 弱电 would take in the door controllers, and 门禁 is its own category below.
    "electrical": ("电气", "Electrical"),
    "water": ("给排水", "Water"),
    "hot_water": ("热水", "Hot water"),
    "heating": ("供暖", "Heating"),
    "fire": ("消防", "Fire"),
    "civil": ("土建", "Civil works"),
    # 水电表, the SOP's word for the household meters (seeds/001 楼盘巡查 (1)水电表检查), not 表计.
    "meter": ("水电表", "Meters"),
    "access": ("门禁", "Access control"),
    "lift": ("电梯", "Lift"),
    "other": ("其他", "Other"),
}
TICKET_SOURCE: dict[str, Pair] = {
    "alarm": ("报警", "Alarm"),
    "inspection": ("巡检", "Inspection"),
    "resident": ("业主报修", "Resident report"),
    "complaint": ("投诉", "Complaint"),
    "manual": ("人工录入", "Entered by staff"),
    "patrol": ("巡查", "Patrol"),
}
# Which row of the platform's clock table a ticket took (tickets.const.ClockKind).
CLOCK_KIND: dict[str, Pair] = {
    "critical": ("紧急报警", "Critical alarm"),
    "alarm": ("报警", "Alarm"),
    "warning": ("预警", "Warning"),
    "meter_vacant": ("空置房水表走字（已远程关阀）", "Vacant-unit meter running (valve closed remotely)"),
    "meter_vacant_manual": ("空置房水表走字（无远程阀）", "Vacant-unit meter running (no remote valve)"),
    "meter": ("水电表异常", "Meter anomaly"),
}

# The people on a ticket, named by the kind of ticket (tickets.const.reporter_word / assignee_word / reopen_word).
REPAIR_REPORTER: Pair = ("报修人", "Reported by")  # seeds/000 接收报修：记录报修人、报修内容、联系方式
COMPLAINT_REPORTER: Pair = ("报事人", "Raised by")  # a complaint is not a repair: whoever raised the matter
CONTACT: Pair = ("联系人", "Contact")  # a ticket the staff or the platform opened: whom to call
REPAIRER: Pair = ("维修人员", "Assignee")
HANDLER: Pair = ("处理人", "Handled by")  # inspection and complaint tickets: nobody repairs anything
# 返修 is a repair redone (seeds/002 房屋查验后需进行返修); any other finished ticket is reopened (重新处理).
REPAIR_REDONE: Pair = ("返修", "Repair again")
REOPEN: Pair = ("重新处理", "Reopen")
REPAIR_REDONE_EVENT: Pair = ("返修", "Repair redone")  # on the ticket's timeline
REOPENED_EVENT: Pair = ("重新处理", "Reopened")
REOPEN_COUNT_REPAIR: Pair = ("返修次数", "Repaired again")
REOPEN_COUNT: Pair = ("重新处理次数", "Reopened")

# --- inspection rounds -----------------------------------------------------------------------------------------

ROUND_STATUS: dict[str, Pair] = {
    "open": ("进行中", "Open"),
    "satisfied": ("遥测达标", "Satisfied by telemetry"),
    "manual_due": ("待人工巡检", "Manual round due"),
    "done": ("人工巡检完成", "Done manually"),
    "missed": ("未巡检", "Missed"),  # not 漏检
}
ROUND_MISSED_TITLE: Pair = ("未按时巡检", "Inspection round missed")
# Why a point did not satisfy a round (alarms.rounds evidence reasons).
ROUND_REASON: dict[str, Pair] = {
    "no_data": ("窗口内无数据", "no data in the window"),
    "out_of_range": ("超出报警限值", "beyond the alarm limit"),
    "open_alarm": ("有未恢复的报警", "open alarm"),
}

# --- rooms, devices, points ------------------------------------------------------------------------------------

ROOM_KIND: dict[str, Pair] = {
    "power_room": ("配电房", "Power room"),
    # 热力站, the SOP's name (seeds/001 2)热力站的巡查制度, 《热力站值班日志》《热力站运行规程》), never 换热站.
    "heat_station": ("热力站", "Heat station"),
    "pump_room": ("生活水泵房", "Pump room"),
    "fire_pump_room": ("消防泵房", "Fire pump room"),
    "hot_water_plant": ("热水机房", "Hot-water plant"),
}
DEVICE_KIND: dict[str, Pair] = {
    "dry_type_transformer": ("干式变压器", "Dry-type transformer"),
    "transformer": ("变压器", "Transformer"),
    "lv_incomer": ("低压进线柜", "LV incomer"),
    "capacitor_cabinet": ("无功补偿电容柜", "Capacitor cabinet"),
    "room_environment": ("环境监测", "Room environment"),
    "plate_heat_exchanger": ("板式换热机组", "Plate heat exchanger"),
    "circulation_pumps": ("循环泵组", "Circulation pumps"),
    "outdoor_sensor": ("室外温度传感器", "Outdoor thermometer"),
    "makeup_water": ("补水定压装置", "Make-up water unit"),
    "booster_pump_set": ("变频供水设备", "Booster pump set"),
    "water_tank": ("水箱", "Water tank"),
    "sump_pit": ("集水坑", "Sump pit"),
    "fire_pump_controller": ("消防泵控制柜", "Fire pump controller"),
    "hot_water_unit": ("热水机组", "Hot-water unit"),
    "electricity_meter": ("电表", "Electricity meter"),
    "cold_water_meter": ("冷水表", "Cold-water meter"),
    "hot_water_meter": ("热水表", "Hot-water meter"),
    "door_controller": ("门禁控制器", "Door controller"),
}
# Point names by metric (the sample estate examples/estate.yaml and the test estates). A point's own label from
# the estate file wins in Chinese; these name it in English and wherever the estate file gave none.
POINT_LABEL: dict[str, Pair] = {
    "winding_temp_a_c": ("A相绕组温度", "Winding temp. A"),
    "winding_temp_b_c": ("B相绕组温度", "Winding temp. B"),
    "winding_temp_c_c": ("C相绕组温度", "Winding temp. C"),
    "load_pct": ("负载率", "Load"),
    "fan_on": ("风机运行", "Cooling fan"),
    "voltage_a_v": ("A相电压", "Voltage A-N"),
    "voltage_b_v": ("B相电压", "Voltage B-N"),
    "voltage_c_v": ("C相电压", "Voltage C-N"),
    "voltage_ab_v": ("AB线电压", "Voltage A-B"),
    "voltage_bc_v": ("BC线电压", "Voltage B-C"),
    "voltage_ca_v": ("CA线电压", "Voltage C-A"),
    "current_a_a": ("A相电流", "Current A"),
    "current_b_a": ("B相电流", "Current B"),
    "current_c_a": ("C相电流", "Current C"),
    "power_factor": ("功率因数", "Power factor"),
    "active_power_kw": ("有功功率", "Active power"),
    "case_temp_c": ("电容器外壳温度", "Capacitor case temp."),
    "steps_on": ("投入组数", "Steps in"),
    "room_temp_c": ("室温", "Room temp."),  # what the duty log calls it; 室内温度 is the form's word
    "humidity_pct": ("相对湿度", "Humidity"),
    "water_ingress": ("水浸", "Water ingress"),
    "smoke": ("烟感", "Smoke"),
    "primary_supply_temp_c": ("一次供水温度", "Primary supply temp."),
    "primary_return_temp_c": ("一次回水温度", "Primary return temp."),
    "primary_supply_pressure_mpa": ("一次供水压力", "Primary supply pressure"),
    "primary_return_pressure_mpa": ("一次回水压力", "Primary return pressure"),
    "secondary_supply_temp_c": ("二次供水温度", "Secondary supply temp."),
    "secondary_return_temp_c": ("二次回水温度", "Secondary return temp."),
    "secondary_supply_pressure_mpa": ("二次供水压力", "Secondary supply pressure"),
    "secondary_return_pressure_mpa": ("二次回水压力", "Secondary return pressure"),
    "outdoor_temp_c": ("室外温度", "Outdoor temp."),
    "circ_pump_1_running": ("1#循环泵运行", "Circ. pump 1"),
    "circ_pump_2_running": ("2#循环泵运行", "Circ. pump 2"),
    "circ_pump_fault": ("循环泵故障", "Circ. pump fault"),
    "circ_pump_freq_hz": ("运行频率", "Pump frequency"),
    "makeup_pump_running": ("补水泵运行", "Make-up pump"),
    "makeup_tank_level_m": ("补水箱液位", "Make-up tank level"),
    "outlet_pressure_mpa": ("出水压力", "Outlet pressure"),
    "inlet_pressure_mpa": ("进水压力", "Inlet pressure"),
    "vfd_freq_hz": ("变频器频率", "VFD frequency"),
    "pump_1_running": ("1#泵运行", "Pump 1"),
    "pump_2_running": ("2#泵运行", "Pump 2"),
    "pump_3_running": ("3#泵运行", "Pump 3"),
    "fault": ("故障", "Fault"),
    "tank_level_m": ("水箱液位", "Tank level"),
    "fire_main_pressure_mpa": ("消防管网压力", "Fire main pressure"),
    "jockey_pump_running": ("稳压泵运行", "Jockey pump"),
    "sump_pump_1_running": ("1#排污泵运行", "Sump pump 1"),
    "sump_pump_2_running": ("2#排污泵运行", "Sump pump 2"),
    "sump_high_level": ("集水坑超高水位", "Sump extra-high level"),
    "fire_alarm_signal": ("火警信号", "Fire alarm signal"),
    "fire_pump_running": ("消防主泵运行", "Main fire pump"),
    "fire_pump_fault": ("消防泵故障", "Fire pump fault"),
    "fire_tank_level_m": ("消防水池液位", "Fire tank level"),
    "supply_temp_c": ("供水温度", "Supply temp."),
    "return_temp_c": ("回水温度", "Return temp."),
    "tank_temp_c": ("水箱温度", "Tank temp."),
    "circ_pump_running": ("热水循环泵运行", "Circulation pump"),
    "heat_pump_running": ("热泵运行", "Heat pump"),
}

# --- meters ----------------------------------------------------------------------------------------------------

METERS: Pair = ("水电表", "Meters")
METER_REGISTER: Pair = ("读数", "Register")
# An electricity meter's second register: energy exported (示数 is the word on the meter's own display).
REVERSE_REGISTER: Pair = ("反向有功示数", "Reverse active energy")
REVERSE_FLOW: Pair = ("反向累计流量", "Reverse flow")  # a water meter's backward register
METER_FLAGS: Pair = ("状态标志", "Status flags")
# Water running through the meter of an empty flat: the SOP's 无人居住的情况下水表依然运转 (seeds/001), close the
# valve before it floods. Never 走水, which means a fire.
VACANT_METER_RUNNING: Pair = ("空置房水表走字", "Meter running in a vacant unit")


def every_table() -> dict[str, Mapping[str, Pair]]:
    """The glossary's tables by name (for the tests, and for a reader wanting the whole vocabulary)."""
    return {
        "SEVERITY": SEVERITY,
        "ALARM_STATE": ALARM_STATE,
        "CLEARED_BY": CLEARED_BY,
        "TICKET_STATUS": TICKET_STATUS,
        "PRIORITY": PRIORITY,
        "TICKET_CATEGORY": TICKET_CATEGORY,
        "TICKET_SOURCE": TICKET_SOURCE,
        "CLOCK_KIND": CLOCK_KIND,
        "ROUND_STATUS": ROUND_STATUS,
        "ROUND_REASON": ROUND_REASON,
        "ROOM_KIND": ROOM_KIND,
        "DEVICE_KIND": DEVICE_KIND,
        "POINT_LABEL": POINT_LABEL,
    }


def every_term() -> dict[str, Pair]:
    """The glossary's single terms (module-level pairs) by name."""
    return {name: value for name, value in globals().items() if name.isupper() and _is_pair(value)}


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)


def banned_in(zh: str) -> list[str]:
    """The banned words in a Chinese text (a bare 严重 counts when the text is only that word)."""
    found = [word for word in BANNED if word in zh]
    if zh.strip() == BARE_SEVERE:
        found.append(BARE_SEVERE)
    return found


def zh(pair: Pair) -> str:
    return pair[0]


def en(pair: Pair) -> str:
    return pair[1]
