"""Every string the dashboards show, Chinese first (DESIGN.md §8), and the formatting of values, times and ages.

A language is "zh" (default) or "en". Labels coming from the estate file (point labels, device and room
names) are Chinese free text: in English the metric / kind maps below stand in for them when they know
the key, and the Chinese text is kept otherwise (better a Chinese label than a bare metric id).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from accounts.const import ROLE_LABELS, Role
from core import glossary

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"
DEFAULT_TZ = "Asia/Shanghai"

# UI strings: key -> (简体中文, English). Templates call t("key"); placeholders use str.format.
STRINGS: dict[str, tuple[str, str]] = {
    "app_name": ("Steward 物业设备监控", "Steward facility monitor"),
    "app_short": ("设备监控", "Monitor"),
    "lang_other": ("English", "中文"),
    "nav_overview": ("总览", "Overview"),
    "nav_ingest": ("数据接入", "Ingest"),
    "logout": ("退出登录", "Log out"),
    # login
    "login_title": ("登录", "Log in"),
    "login_intro": ("请使用工号账户登录", "Log in with your staff account"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_submit": ("登录", "Log in"),
    "login_failed": ("用户名或密码错误", "Wrong username or password"),
    "login_locked": ("登录失败次数过多，请稍后再试", "Too many failed logins; please try again later"),
    "login_missing": ("请输入用户名和密码", "Enter your username and password"),
    # errors
    "forbidden_title": ("无权访问", "Not permitted"),
    "forbidden_body": (
        "您的角色（{role}）不能查看此页面。如需查看设备监控，请联系系统管理员开通权限。",
        "Your role ({role}) may not open this page. Ask an administrator if you need the equipment dashboards.",
    ),
    "not_found_title": ("未找到", "Not found"),
    "not_found_body": (
        "该页面不存在，或不属于您负责的小区。",
        "This page does not exist or belongs to an estate you are not assigned to.",
    ),
    "bad_request_title": ("请求无效", "Invalid request"),
    "bad_request_body": (
        "页面地址中的参数无法识别，请返回上一页重新选择。",
        "A value in the page address could not be understood. Go back and choose again.",
    ),
    "back_home": ("返回总览", "Back to the overview"),
    # overview / estate
    "my_estates": ("我负责的小区", "My estates"),
    "no_estates": ("您的账户尚未分配小区，请联系系统管理员。", "No estate is assigned to your account yet."),
    "no_equipment_role": (
        "您的角色（{role}）不使用设备监控页面；工单、收费与门禁功能将在各自模块中提供。",
        "Your role ({role}) does not use the equipment dashboards; tickets, billing and cards have their own pages.",
    ),
    "rooms": ("设备机房", "Equipment rooms"),
    "devices": ("设备", "Devices"),
    "devices_total": ("设备总数", "Devices"),
    "online": ("在线", "Online"),
    "stale": ("超时未上报", "Not reporting"),
    "never": ("从未上报", "Never reported"),
    "offline": ("离线", "Offline"),
    "data_rate": ("数据写入", "Data rate"),
    "per_min": ("条/分钟", "rows/min"),
    "per_s": ("条/秒", "rows/s"),
    "rate_hint": ("近 {window}，按设备时间", "last {window}, by device time"),
    "rate_window_s": ("{n} 秒", "{n} s"),
    "rate_window_min": ("1 分钟", "minute"),
    "dead_letters_24h": ("24 小时死信", "Dead letters (24 h)"),
    "quarantined_24h": ("24 小时隔离", "Quarantined (24 h)"),
    "points": ("测点", "Points"),
    "stale_points": ("超时测点", "Stale points"),
    "open": ("查看", "Open"),
    "by_kind": ("按设备类型", "By device kind"),
    "kind": ("类型", "Kind"),
    "total": ("合计", "Total"),
    "stale_devices": ("超时未上报的设备", "Devices not reporting"),
    "stale_devices_more": ("另有 {n} 台未列出", "{n} more not listed"),
    "all_reporting": ("全部设备均按时上报", "Every device is reporting on time"),
    "last_seen": ("最后上报", "Last report"),
    "estate_devices_hint": ("不含已更换的旧设备", "replaced devices excluded"),
    "timezone": ("时区", "Time zone"),
    # room / device
    "live": ("实时", "Live"),
    "live_connected": ("实时更新中", "Live"),
    "live_connecting": ("正在连接…", "Connecting…"),
    "live_lost": ("连接中断，正在重连…", "Connection lost, retrying…"),
    "updated_at": ("更新于 {time}", "updated {time}"),
    "trend_24h": ("24 小时趋势", "Last 24 h"),
    "chart_empty": ("暂无数据", "No data"),
    "thresholds": ("参考值", "Reference"),
    "status": ("状态", "Status"),
    "no_points": ("该设备没有测点（计量表的读数见设备页）", "No points (a meter's readings are on its device page)"),
    "no_devices": ("该机房没有设备", "No devices in this room"),
    "device": ("设备", "Device"),
    "code": ("编号", "Code"),
    "serial": ("出厂编号", "Serial"),
    "room": ("所在机房", "Room"),
    "interval": ("上报周期", "Report interval"),
    "seconds_short": ("{n} 秒", "{n} s"),
    "battery": ("电池电压", "Battery"),
    "installed_at": ("安装日期", "Installed"),
    "metric": ("测点代码", "Metric"),
    "label": ("名称", "Name"),
    "unit": ("单位", "Unit"),
    "value": ("当前值", "Value"),
    "time": ("时间", "Time"),
    "history": ("历史曲线", "History"),
    "range_day": ("日", "Day"),
    "range_week": ("周", "Week"),
    "range_month": ("月", "Month"),
    "range_custom": ("自定义", "Custom"),
    "history_range": ("时间范围", "Range"),
    "history_from": ("开始日期", "From"),
    "history_to": ("结束日期", "To"),
    "history_apply": ("查看", "Show"),
    "history_csv": ("导出 CSV", "Export CSV"),
    "history_need_dates": ("请选择开始日期和结束日期", "Choose both a start and an end date"),
    "history_bad_date": (
        "日期格式不正确：{value}（应为 年-月-日，如 2026-11-01）",
        "Not a date: {value} (expected year-month-day, e.g. 2026-11-01)",
    ),
    "history_order": ("结束日期不能早于开始日期", "The end date cannot be before the start date"),
    "history_too_long": (
        "时间范围为 {days} 天，最长 {n} 天，请缩短范围",
        "The range is {days} days; at most {n} days, please shorten it",
    ),
    "history_future": ("开始日期不能晚于今天", "The start date cannot be after today"),
    "band_note": ("；阴影为每段最小值至最大值", "; the shaded band spans each bucket's min to max"),
    "band_label": ("最小–最大", "min–max"),
    "bucket_note": ("每 {bucket} 平均值", "{bucket} averages"),
    "meter_readings": ("最近抄表读数", "Recent meter readings"),
    "register": glossary.METER_REGISTER,
    "reverse_register": glossary.REVERSE_REGISTER,
    "valve": ("阀门", "Valve"),
    "flags": glossary.METER_FLAGS,
    "no_readings": ("暂无读数", "No readings yet"),
    "point_kind_gauge": ("模拟量", "gauge"),
    "point_kind_counter": ("累计量", "counter"),
    "point_kind_state": ("状态量", "state"),
    "stale_for": ("已 {age}未上报", "no data for {age}"),
    "never_reported": ("从未上报", "never reported"),
    "expired": ("登录已过期，请重新登录", "Your session has expired; please log in again"),
    # state values
    "state_running": ("运行", "Running"),
    "state_stopped": ("停止", "Stopped"),
    "state_alarm": glossary.ALARM,
    "state_normal": ("正常", "Normal"),
    "state_on": ("开", "On"),
    "state_off": ("关", "Off"),
    # ingest
    "ingest_title": ("数据接入", "Ingest"),
    "ingest_processes": ("接入进程", "Ingest processes"),
    "no_ingest": ("暂无接入进程上报状态", "No ingest process has reported yet"),
    "instance": ("实例", "Instance"),
    "reported_at": ("状态更新", "Reported"),
    "throughput": ("入库速率", "Stored per second"),
    "throughput_hint": ("近 {n} 秒，来自数据库通知", "last {n} s, from database notifications"),
    "notify_down": ("未连接到数据库通知", "Not listening to database notifications"),
    "dead_letters": ("死信（无法解析的消息）", "Dead letters (unreadable messages)"),
    "no_dead_letters": ("没有死信", "No dead letters"),
    "quarantine": ("隔离的设备与消息", "Quarantined devices and messages"),
    "no_quarantine": ("没有被隔离的消息", "Nothing quarantined"),
    "topic": ("主题", "Topic"),
    "reason": ("原因", "Reason"),
    "payload": ("原始内容（前 200 字节）", "Payload (first 200 bytes)"),
    "received_at": ("接收时间", "Received"),
    "count": ("条数", "Messages"),
    "detail": ("说明", "Detail"),
    "last_received": ("最近一次", "Latest"),
    "device_code": ("设备编号", "Device code"),
    "scope_note": ("仅显示您负责小区的消息", "Only messages of your estates are shown"),
    "times_in": ("时间均为 {tz} 时间", "All times in {tz}"),
    "raw_reason": ("原始信息", "Raw"),
}

INGEST_STATUS: dict[str, tuple[str, str]] = {
    "ok": ("正常", "OK"),
    "stale": ("无响应", "Not responding"),
    "degraded": ("数据库异常", "Database failing"),
    "disconnected": ("未连接消息服务器", "Broker disconnected"),
}

COUNTERS: dict[str, tuple[str, str]] = {
    "received": ("接收", "Received"),
    "stored": ("入库", "Stored"),
    "duplicate": ("重复", "Duplicates"),
    "dead_lettered": ("死信", "Dead letters"),
    "quarantined": ("隔离", "Quarantined"),
    "batches": ("批次", "Batches"),
    "commit_failures": ("提交失败", "Commit failures"),
    "queue_overflow": ("队列溢出", "Queue overflow"),
    "seq_gaps": ("序号缺口", "Sequence gaps"),
    "rate_limited": ("超限隔离", "Rate limited"),
    "broker_id_reuse": ("报文编号重用（消息服务器）", "Packet ids reused by the broker"),
}

# Quarantine reasons as ingest stores them (ingest.decode.Reason).
# Why a device refused a command (outbox status 'refused', the reason in last_error): the whitelist refusals of
# protocol.whitelist.REFUSALS, and a valve ack's bare status (a valve ack carries no reason).
REFUSAL_REASONS: dict[str, tuple[str, str]] = {
    "version_gap": ("版本不连续（需全量同步）", "Version gap (needs a full snapshot)"),
    "stale_version": ("版本已过时", "Stale version"),
    "digest_mismatch": ("名单校验不符", "Digest mismatch"),
    "invalid": ("指令无效", "Invalid command"),
    "unsupported": ("设备不支持", "Not supported by the device"),
    "rejected": ("设备拒绝执行", "Rejected by the device"),
    "expired": ("设备收到时已过期", "Expired when the device got it"),
}

QUARANTINE_REASONS: dict[str, tuple[str, str]] = {
    "unknown_device": ("未登记的设备", "Unknown device"),
    "estate_mismatch": ("设备不属于该小区", "Device belongs to another estate"),
    "unknown_metric": ("未登记的测点", "Unknown metric"),
    "ts_without_timezone": ("时间戳缺少时区", "Timestamp without time zone"),
    "ts_too_old": ("时间戳过旧", "Timestamp too old"),
    "ts_in_future": ("时间戳超前", "Timestamp in the future"),
    "rate_limited": ("设备上报过于频繁（超出限速）", "Device over its rate limit"),
}

ROOM_KINDS: dict[str, tuple[str, str]] = glossary.ROOM_KIND

DEVICE_KINDS: dict[str, tuple[str, str]] = glossary.DEVICE_KIND

# Metrics of the sample estate (examples/estate.yaml) and the test estates; the names are the glossary's.
METRICS: dict[str, tuple[str, str]] = glossary.POINT_LABEL

# State points whose "1" is bad news (shown red as 报警); other state points read 运行/停止.
ALARM_STATES = frozenset({"fault", "circ_pump_fault", "fire_pump_fault", "water_ingress", "smoke"})

# Reference lines drawn on charts from device attrs (the estate file's nameplate/setpoint values).
# attr -> (unit it belongs to, 简体中文, English)
ATTR_LINES: dict[str, tuple[str, str, str]] = {
    "fan_on_c": ("°C", "风机启动", "fans on"),
    "warn_c": ("°C", "预警", "warning"),
    "alarm_c": ("°C", "报警", "alarm"),
    "trip_c": ("°C", "跳闸", "trip"),
    "supply_setpoint_c": ("°C", "供水设定", "supply setpoint"),
    "static_pressure_mpa": ("MPa", "静压", "static pressure"),
    "setpoint_mpa": ("MPa", "设定压力", "setpoint"),
    "fire_pump_start_mpa": ("MPa", "主泵启动", "fire pump start"),
    "jockey_start_mpa": ("MPa", "稳压泵启动", "jockey start"),
    "jockey_stop_mpa": ("MPa", "稳压泵停止", "jockey stop"),
    "low_m": ("m", "低水位", "low"),
    "high_m": ("m", "高水位", "high"),
    "overflow_m": ("m", "溢流", "overflow"),
}

# Decimal places per unit: enough to see a change, no more than the instrument resolves.
DECIMALS: dict[str, int] = {
    "°C": 1,
    "V": 1,
    "A": 0,
    "kW": 1,
    "MPa": 3,
    "%": 1,
    "%RH": 0,
    "Hz": 1,
    "m": 2,
    "steps": 0,
    "": 2,
}

UNIT_DISPLAY: dict[str, tuple[str, str]] = {"steps": ("组", "steps")}

BUCKET_NAMES: dict[str, tuple[str, str]] = {
    "5m": ("5 分钟", "5-minute"),
    "15m": ("15 分钟", "15-minute"),
    "1h": ("1 小时", "hourly"),
    "1d": ("1 天", "daily"),
}


def norm_lang(value: str | None) -> Lang:
    return "en" if value == "en" else DEFAULT_LANG


def _pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[1] if lang == "en" else pair[0]


def pick(pair: tuple[str, str], lang: Lang) -> str:
    """One (中文, English) pair in ``lang``: a glossary term or a word a domain chose (tickets.const.reporter_word)."""
    return _pick(pair, lang)


def t(key: str, lang: Lang, **fmt: object) -> str:
    """The UI string ``key`` in ``lang``; an unknown key shows itself so a gap is visible, not fatal."""
    pair = STRINGS.get(key)
    text = _pick(pair, lang) if pair else key
    return text.format(**fmt) if fmt else text


def lookup(table: dict[str, tuple[str, str]], key: str, lang: Lang, fallback: str | None = None) -> str:
    pair = table.get(key)
    if pair:
        return _pick(pair, lang)
    return fallback if fallback is not None else key


def role_label(role: str, lang: Lang) -> str:
    try:
        return _pick(ROLE_LABELS[Role(role)], lang)
    except ValueError:
        return role


def point_label(metric: str, label: str, lang: Lang) -> str:
    """Point.label (the estate file's Chinese name) in Chinese; the metric map in English; else what we have."""
    if lang == "zh" and label:
        return label
    return lookup(METRICS, metric, lang, fallback=label or metric)


def device_title(name: str, kind: str, code: str, lang: Lang) -> str:
    if lang == "zh" and name:
        return name
    return lookup(DEVICE_KINDS, kind, lang, fallback=name or kind)


def room_title(name: str, kind: str, code: str, lang: Lang) -> str:
    if lang == "zh" and name:
        return name
    return f"{lookup(ROOM_KINDS, kind, lang, fallback=name or kind)} {code}"


def unit_display(unit: str, lang: Lang) -> str:
    return lookup(UNIT_DISPLAY, unit, lang, fallback=unit)


def decimals(unit: str) -> int:
    return DECIMALS.get(unit, 2)


def format_value(value: float | None, unit: str, lang: Lang) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{decimals(unit)}f}"


def state_text(metric: str, value: float | None, lang: Lang) -> tuple[str, str]:
    """(text, css class) of a state point: alarm-type points read 报警/正常, valves 开启/关闭, the rest 运行/停止."""
    if value is None:
        return "—", "none"
    on = value >= 0.5
    if metric in ALARM_STATES:
        return (t("state_alarm", lang), "alarm") if on else (t("state_normal", lang), "ok")
    if "valve" in metric:
        return (t("state_valve_open", lang), "run") if on else (t("state_valve_closed", lang), "off")
    if metric.endswith("_running") or metric.endswith("_on"):
        return (t("state_running", lang), "run") if on else (t("state_stopped", lang), "off")
    return (t("state_on", lang), "run") if on else (t("state_off", lang), "off")


def format_age(seconds: float, lang: Lang) -> str:
    """A coarse human age: 45 秒, 12 分钟, 3 小时, 2 天."""
    s = max(0, int(seconds))
    if s < 60:
        n, zh, en = s, "秒", "s"
    elif s < 3600:
        n, zh, en = s // 60, "分钟", "min"
    elif s < 2 * 86400:
        n, zh, en = s // 3600, "小时", "h"
    else:
        n, zh, en = s // 86400, "天", "days"
    return f"{n} {en}" if lang == "en" else f"{n} {zh}"


def stale_text(age_s: float | None, lang: Lang) -> str:
    if age_s is None:
        return t("never_reported", lang)
    return t("stale_for", lang, age=format_age(age_s, lang))


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TZ)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def format_time(ts: datetime | None, tz: ZoneInfo, *, seconds: bool = True, date: bool = True) -> str:
    if ts is None:
        return "—"
    local = ts.astimezone(tz)
    fmt = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return local.strftime(fmt)


def chart_ms(ts: datetime, tz: ZoneInfo) -> int:
    """Milliseconds of the estate's wall-clock time read as UTC.

    ECharts formats axis labels in the browser's zone or in UTC (``useUTC``); shifting each timestamp by
    its own offset and charting in UTC shows the estate's clock on any phone, DST included.
    """
    local = ts.astimezone(tz).replace(tzinfo=UTC)
    return int(local.timestamp() * 1000)


# --- alarms, tickets and inspection rounds (dashboards/alarm_pages.py) -------------------------------------------
STRINGS.update(
    {
        "nav_alarms": ("报警", "Alarms"),
        "nav_tickets": ("工单", "Tickets"),
        "estate": ("小区", "Estate"),
        "all_estates": ("全部小区", "All estates"),
        "apply": ("筛选", "Apply"),
        "note": ("备注", "Note"),
        "choose": ("请选择", "Choose"),
        "yes": ("是", "Yes"),
        "no": ("否", "No"),
        "not_applicable": ("不适用", "n/a"),
        "where": ("位置", "Where"),
        "ticket": ("工单", "Ticket"),
        "point": ("测点", "Point"),
        "peak": ("峰值", "Peak"),
        # alarms
        "alarms_title": ("报警列表", "Alarms"),
        "alarm_state": ("状态", "State"),
        "open_only": glossary.ALARM_OPEN,
        "all_alarms": ("全部（含已恢复、已解除）", "All (incl. cleared)"),
        "severity": ("级别", "Severity"),
        "any_severity": ("全部级别", "Any severity"),
        "sev_critical": glossary.SEVERITY["critical"],
        "sev_alarm": glossary.SEVERITY["alarm"],
        "sev_warning": glossary.SEVERITY["warning"],
        "alarms_shown": ("显示 {n} 条，共 {total} 条", "{n} shown of {total}"),
        "raised_at": ("发生时间", "Raised"),
        "peak_last": ("峰值 / 最新值", "Peak / last"),
        "acknowledged_by": ("确认人", "Acknowledged by"),
        "cleared_at": ("恢复/解除时间", "Cleared"),
        "acknowledge": glossary.ACKNOWLEDGE,
        "clear_manually": glossary.CLEAR_BY_HAND,
        "clear_reason": ("解除原因", "Reason for clearing"),
        "clear_reason_ph": ("解除原因（必填）", "Reason (required)"),
        "no_alarms": ("没有符合条件的报警", "No alarms match"),
        "need_clear_reason": ("手动解除须填写原因", "A manual clear needs a reason"),
        "flash_acknowledged": ("报警已确认", "Alarm acknowledged"),
        "flash_cleared": ("报警已手动解除", "Alarm cleared"),
        # ticket board
        "tickets_title": ("工单看板", "Ticket board"),
        "only_mine": ("只看派给我的", "Assigned to me"),
        "show_closed": ("显示已关闭", "Show closed"),
        "board_summary": ("未关闭 {n} 张，已超时 {breached} 张", "{n} open, {breached} overdue"),
        "board_truncated": ("仅显示最新的部分工单", "only the newest tickets are shown"),
        "column_empty": ("暂无", "None"),
        "assignee": glossary.REPAIRER,
        "unassigned": ("未派单", "Unassigned"),
        "escalated_to": ("已升级：{who}", "Escalated: {who}"),
        "sla_legend": (
            "时限倒计时：剩余不足 25 % 或 5 分钟变黄，超时变红",
            "SLA countdown: amber under 25 % or 5 min left, red when overdue",
        ),
        # one ticket
        "continuous_work": ("连续抢修", "Continuous work"),
        "reporter": glossary.REPAIR_REPORTER,
        "masked_note": ("（已脱敏）", "(masked)"),
        "received": ("受理", "Received"),
        "dispatched_at": ("派单时间", "Dispatched"),
        "accepted_at": ("接单时间", "Accepted"),
        "on_site_at": ("到场时间", "On site"),
        "resolved_at": ("完工时间", "Resolved"),
        "closed_at": ("关闭时间", "Closed"),
        "work_done": ("维修情况", "Work done"),
        "parts": ("更换配件", "Parts"),
        "labour_minutes": ("工时（分钟）", "Labour (minutes)"),
        "resident_signoff": ("业主签字确认", "Resident sign-off"),
        "callback": ("回访", "Callback"),
        "warranty": ("保修", "Warranty"),
        "reopened_count": glossary.REOPEN_COUNT,
        "sla_clocks": ("时限", "SLA clocks"),
        "due_at": ("截止", "due"),
        "met_on_time": ("按时完成", "Met"),
        "met_late": ("超时完成", "Met late"),
        "clock_stopped": ("已停止", "Stopped"),
        "no_clocks": ("此工单没有时限", "No SLA clocks"),
        "attached_alarms": ("关联报警", "Attached alarms"),
        "next_steps": ("处理", "Next steps"),
        "act_dispatch": ("派单", "Dispatch"),
        "dispatch_to": ("派给", "Dispatch to"),
        "act_accept": ("接单", "Accept"),
        "act_on_site": ("已到场", "On site"),
        "alarm_group_title": ("{device} · {n} 条报警", "{device} · {n} alarms"),
        "act_on_site_direct": ("未接单直接到场（同时接单）", "On site without accepting first (accepts too)"),
        "tk_alarm_recovered_at": ("报警已恢复 {at}", "Alarm recovered {at}"),
        "tk_alarm_recovered_some": ("报警已恢复 {n}/{total}", "{n} of {total} alarms recovered"),
        "tk_alarm_unacked": ("报警未确认 {n}", "{n} alarm(s) not acknowledged"),
        "resolve_blocked": (
            "{n} 条关联报警尚未确认：请先在报警列表确认，再登记完工",
            "{n} attached alarm(s) not acknowledged: acknowledge them on the alarm list before resolving",
        ),
        "resolve_alarms_open": (
            "{n} 条关联报警已确认但尚未恢复：请在维修情况中写明现场处理",
            "{n} attached alarm(s) acknowledged but not recovered yet: say in the work done what was done on site",
        ),
        "act_resolve": ("完工", "Resolve"),
        "act_callback": ("回访", "Record callback"),
        "channel": ("回访方式", "Channel"),
        "satisfaction": ("满意度（1–5）", "Satisfaction (1–5)"),
        "satisfaction_n": ("满意度 {n}", "satisfaction {n}"),
        "act_close": ("关闭工单", "Close"),
        "close_reason_hint": ("撤销未处理的工单时必填", "required to cancel an unstarted ticket"),
        "act_reopen": glossary.REOPEN,
        "timeline": ("处理记录", "Timeline"),
        "system_actor": ("系统", "System"),
        "ev_to": ("派给 {who}", "to {who}"),
        "labour_n": ("工时 {n} 分钟", "{n} min labour"),
        "signoff_yes": ("业主已签字", "signed off"),
        "signoff_no": ("业主未签字", "not signed off"),
        "need_assignee": ("请选择派单对象", "Choose someone to dispatch to"),
        "need_satisfaction": ("请选择满意度", "Choose a satisfaction score"),
        "bad_labour": ("工时须为整数分钟", "Labour must be whole minutes"),
        "bad_text": ("内容含有非法字符", "The text contains invalid characters"),
        "flash_dispatch": ("已派单", "Dispatched"),
        "flash_accept": ("已接单", "Accepted"),
        "flash_on_site": ("已记录到场", "On site recorded"),
        "flash_resolve": ("已完工", "Resolved"),
        "flash_callback": ("已记录回访", "Callback recorded"),
        "flash_close": ("工单已关闭", "Ticket closed"),
        "flash_reopen": ("工单已重新处理，时限重新计算", "Reopened; the SLA clocks restart"),
        # hot-water notices (dashboards/billing_notices.py keeps the rest of its strings beside it)
        "nav_billing_notices": ("热水通知", "Notices"),
        "flash_approve": ("通知已审批", "Notice approved"),
        "flash_send": ("通知已发送", "Notice sent"),
        "flash_cancel": ("通知已作废", "Notice cancelled"),
        # inspection rounds
        "rounds_title": ("巡检日历", "Inspection rounds"),
        "rounds_link": ("巡检日历 ›", "Inspection rounds ›"),
        "last_two_days": ("近 2 天", "last 2 days"),
        "no_schedules": ("该机房没有巡检计划", "No inspection schedule for this room"),
        "no_rounds_yet": ("近 2 天没有巡检窗口", "No rounds in the last 2 days"),
        "every_n": ("每 {span}", "every {span}"),
        "round_pick": (
            "点击方格查看巡检依据或登记人工巡检",
            "Pick a cell to see its evidence or record a manual round",
        ),
        "evidence_ok": ("{ok}/{n} 个测点遥测正常", "{ok}/{n} points reported in range"),
        "ev_no_data": glossary.ROUND_REASON["no_data"],
        "ev_out_of_range": glossary.ROUND_REASON["out_of_range"],
        "ev_open_alarm": glossary.ROUND_REASON["open_alarm"],
        "done_by": ("人工巡检：{who}", "Done by {who}"),
        "performed": ("巡检人", "Performed"),
        "performed_at": ("巡检时间", "Performed at"),
        "readings": ("现场读数", "Readings"),
        "readings_hint": ("每行一项，如 室温=29.5", "one per line, e.g. room_temp=29.5"),
        "record_round": ("登记人工巡检", "Record manual round"),
        "bad_readings": ("读数格式应为 名称=数值，每行一项", "Readings are name=value, one per line"),
        "bad_time": ("巡检时间格式不正确", "The time is not valid"),
        "flash_round_done": ("已登记人工巡检", "Manual round recorded"),
    }
)


def label(table: Mapping[Any, tuple[str, str]], key: str | None, lang: Lang) -> str:
    """A (中文, English) label from a domain table keyed by a StrEnum (or str); the key itself when unknown."""
    if key is None:
        return ""
    pair = table.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def fmt_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


# --- billing pages (issue 11 #7): the clerk's account list, one account, top-ups, tariffs, held intervals ---------

STRINGS.update(
    {
        "nav_billing": ("热水收费", "Hot-water billing"),
        "billing_title": ("热水账户", "Hot-water accounts"),
        "billing_summary": ("共 {n} 户，余额不足 {low} 户", "{n} households, {low} running low"),
        "bill_unit": ("房号", "Unit"),
        "balance": ("余额", "Balance"),
        "days_left": ("可用天数", "Days left"),
        "daily_use": ("日均费用", "Per day"),
        "days_n": ("{n} 天", "{n} d"),
        "no_use_yet": ("暂无用量", "no use yet"),
        "low_balance": ("余额不足", "Running low"),
        "low_hint": (
            "余额低于 ¥50 或不足 30 天平均用量时标红（应发续费通知）",
            "Red: below ¥50 or under 30 days of average use (due a renewal notice)",
        ),
        "no_accounts": ("暂无热水账户", "No hot-water accounts yet"),
        "held_n": ("{n} 段待确认", "{n} held"),
        "account_title": ("热水账户 {unit}", "Hot-water account {unit}"),
        "top_up": ("缴费充值", "Top up"),
        "amount_yuan": ("金额（元）", "Amount (¥)"),
        "method": ("缴费方式", "Method"),
        "method_counter": ("收费处（现金/刷卡）", "Counter (cash/card)"),
        "method_bank_transfer": ("银行转账", "Bank transfer"),
        "method_online": ("线上支付", "Online"),
        "top_up_submit": ("确认缴费", "Record payment"),
        "top_up_hint": (
            "每张表单只收一次费：重复提交不会重复入账",
            "Each form pays once: submitting it twice does not pay twice",
        ),
        "flash_top_up": ("缴费已入账", "Payment recorded"),
        "flash_top_up_replayed": ("该表单已提交过，未重复收费", "This form was already submitted: not paid twice"),
        "bad_amount": ("金额须为正数，最多两位小数（元）", "The amount must be positive yuan with at most 2 decimals"),
        "latest_readings": ("最近读数", "Latest readings"),
        "charges": ("计费明细", "Charges"),
        "ledger": ("账户流水", "Ledger"),
        "held_intervals": ("暂停计费区间", "Held intervals"),
        "meter": ("水表", "Meter"),
        "register_m3": ("读数 (m³)", "Register (m³)"),
        "bill_interval": ("区间", "Interval"),
        "volume": ("用量 (m³)", "Volume (m³)"),
        "amount": ("金额", "Amount"),
        "actor": ("经办人", "By"),
        "none_yet": ("暂无", "None yet"),
        "tx_payment": ("缴费", "Payment"),
        "tx_charge": ("扣费", "Charge"),
        # the account page's supply state, valve commands and notices
        "supply_state": ("供水状态", "Supply"),
        "supply_normal": ("正常供水", "Normal"),
        "supply_restricted": ("限供", "Restricted"),
        "supply_suspended": ("停供", "Suspended"),
        "supply_since": ("自 {at}", "since {at}"),
        "supply_changes": ("供水变更与阀门指令", "Supply changes and valve commands"),
        "valve_close": ("关阀", "Close valve"),
        "valve_open": ("开阀", "Open valve"),
        "valve_command": ("阀门指令", "Valve command"),
        "acked_at": ("设备确认", "Device ack"),
        "refused_reason": ("拒绝原因：{reason}", "Reason: {reason}"),
        "account_notices": ("通知记录", "Notices"),
        "notice_sent_at": ("发送时间", "Sent"),
        "notice_stated": ("载明日期", "Stated date"),
        "tx_refund": ("退费", "Refund"),
        "tx_adjustment": ("调账", "Adjustment"),
        "hold_held": ("待确认", "To confirm"),
        "hold_confirmed": ("已确认", "Confirmed"),
        "hold_reset": ("疑似清零", "Reset?"),
        "hold_replacement": ("疑似换表", "Replacement?"),
        "tariffs_title": ("热水价格", "Hot-water tariffs"),
        "effective_from": ("生效日期", "Effective from"),
        "tiers": ("阶梯", "Tiers"),
        "tier_up_to": ("月用量 {n} m³ 以内", "up to {n} m³ a month"),
        "tier_rest": ("其余用量", "the rest"),
        "per_m3": ("元/m³", "¥/m³"),
        "no_tariffs": ("尚未设置价格", "No tariff yet"),
        "add_tariff": ("新增价格", "New tariff"),
        "price_yuan": ("单价（元/m³）", "Price (¥/m³)"),
        "tier1_up_to": ("第一阶梯上限（m³/月，可空）", "First tier up to (m³/month, optional)"),
        "price2_yuan": ("第二阶梯单价（元/m³）", "Second tier price (¥/m³)"),
        "tariff_hint": (
            "新价格从所选日期 0 点起执行，不得早于当前时间（不追溯）",
            "A new price applies from 00:00 of the chosen day, never earlier than now (never retroactive)",
        ),
        "add_tariff_submit": ("保存价格", "Save tariff"),
        "flash_tariff": ("新价格已保存", "Tariff saved"),
        "bad_date": ("日期格式不正确", "The date is not valid"),
        "bad_price": ("单价须为非负数，最多两位小数", "Prices are non-negative with at most 2 decimals"),
        "holds_title": ("待确认的暂停计费区间", "Held intervals to confirm"),
        "holds_hint": (
            "读数回落可能是换表或清零：请录入旧表止码和新表起码，确认后下次计费补收该区间",
            "A falling register may be a replaced or reset meter: record the old final and new initial readings; "
            "the next billing run charges the interval",
        ),
        "no_holds": ("没有待确认的区间", "Nothing to confirm"),
        "old_final": ("旧表止码 (m³)", "Old meter final (m³)"),
        "new_initial": ("新表起码 (m³)", "New meter initial (m³)"),
        "replaced_at": ("换表时间", "Replaced at"),
        "confirm_hold": ("确认", "Confirm"),
        "flash_confirm_hold": ("已确认，下次计费将补收该区间", "Confirmed: the next billing run charges the interval"),
        "bad_register": ("读数须为非负数", "Readings are non-negative numbers"),
        "tariffs_link": ("价格", "Tariffs"),
        "holds_link": ("待确认区间", "Held intervals"),
    }
)


# Property-fee dunning pages (dashboards/billing_dunning.py).
STRINGS.update(
    {
        "nav_dunning": ("物业费催缴", "Fee dunning"),
        "dunning_title": ("物业费催缴", "Property-fee dunning"),
        "dunning_intro": (
            "导入收费系统的欠费表后，系统按催缴流程自动生成催缴文书和律师函、诉讼任务；只出文书和任务，绝不停水停电、不停卡。",
            "Import the fee system's arrears; the ladder then issues letters and lawyer's-letter and litigation tasks. "
            "It only produces documents and tasks: never a supply, card or lift restriction.",
        ),
        "dunning_variant_ladder": (
            "提示函 → 催缴函 → 紧急催缴函（每步7天）",
            "Reminder → demand → urgent demand (7 days each)",
        ),
        "dunning_variant_monthly": (
            "每月16日、24日、30日后发催费通知书",
            "Notices on the 16th, the 24th and after the 30th",
        ),
        "open_cases": ("欠费户", "Units in arrears"),
        "owed_total": ("欠费合计", "Owed in total"),
        "import_arrears": ("导入欠费表", "Import arrears"),
        "import_hint": (
            "CSV 表头：unit/房号, period/期间（2026-10 或 2026-Q3）, amount/金额（元，最多两位小数）, late_fee/滞纳金；"
            "文件为全部欠费的快照：未列出的房号视为已缴清。有错误的行会整份退回，不导入任何数据。",
            "CSV header: unit, period (2026-10 or 2026-Q3), amount (yuan, ≤ 2 decimals), late_fee. "
            "The file is the whole snapshot: a unit not listed has paid. "
            "A file with bad rows is refused whole; nothing is imported.",
        ),
        "csv_file": ("CSV 文件", "CSV file"),
        "upload": ("上传导入", "Upload"),
        "import_rejected": (
            "欠费表有误，未导入任何数据（共 {n} 处错误）：",
            "The file was refused; nothing imported ({n} problems):",
        ),
        "need_file": ("请选择要上传的 CSV 文件", "Choose a CSV file to upload"),
        "flash_imported": ("欠费表已导入", "Arrears imported"),
        "run_ladder": ("立即执行催缴", "Run the ladder now"),
        "flash_advanced": (
            "已执行催缴，今日到期的文书和任务已生成",
            "Ladder run: today's documents and tasks are issued",
        ),
        "room_no": ("房号", "Unit"),
        "owner": ("业主", "Owner"),
        "arrears_amount": ("欠费（元）", "Arrears (¥)"),
        "late_fee": ("滞纳金（元）", "Late fee (¥)"),
        "stage": ("已发至", "Last step"),
        "next_step": ("下一步", "Next step"),
        "not_sent_yet": ("尚未发出", "Nothing yet"),
        "opened_on": ("立案日期", "Opened"),
        "no_cases": ("目前没有欠费户", "No unit is in arrears"),
        "documents": ("催缴文书", "Documents"),
        "tasks": ("律师函与诉讼任务", "Lawyer's-letter and litigation tasks"),
        "no_tasks": ("暂无任务", "No tasks"),
        "no_documents": ("暂无文书", "No documents"),
        "public_list": ("欠费公示", "Public arrears list"),
        "print": ("打印", "Print"),
        "doc_number": ("文书编号", "Number"),
        "doc_kind": ("文书", "Document"),
        "issued_on": ("发出日期", "Issued"),
        "deadline": ("缴费期限", "Pay by"),
        "template_version": ("模板版本", "Template"),
        "ladder": ("催缴进度", "Ladder"),
        "done_on": ("完成于 {date}", "done {date}"),
        "due_on": ("应于 {date}", "due {date}"),
        "periods": ("欠费期间", "Periods"),
        "settled": ("已缴清", "Settled"),
        "case_closed": ("已结案（{reason}）", "Closed ({reason})"),
        "reason_paid": ("已缴清", "paid"),
        "assignee_role": ("负责", "Assignee"),
        "task_status_open": ("待办", "Open"),
        "task_status_done": ("已完成", "Done"),
        "task_status_cancelled": ("已取消", "Cancelled"),
        "public_title": ("物业服务费欠费公示", "Property-fee arrears"),
        "public_note": (
            "以上为截至 {date} 尚未缴纳物业服务费的房屋（业主姓名已隐去，仅保留姓氏）。已缴纳的业主请忽略，谢谢支持！",
            "Units with property fees unpaid as of {date} (owners' names reduced to the surname). "
            "If you have paid, please disregard. Thank you.",
        ),
        "back": ("返回", "Back"),
    }
)


# Operations pages (dashboards/operations.py): device commands and notification deliveries; dunning tasks done.
STRINGS.update(
    {
        "nav_commands": ("设备指令", "Device commands"),
        "nav_notifications": ("通知发送记录", "Notifications"),
        "ops_commands_title": ("设备指令", "Device commands"),
        "ops_notifications_title": ("通知发送记录", "Notification deliveries"),
        "ops_commands_billing_only": (
            "收费员仅可查看热水收费产生的阀门指令（限供、停供、恢复供水）。",
            "Billing clerks see the valve commands of hot-water billing only (restriction, suspension, restoration).",
        ),
        "ops_all": ("全部", "All"),
        "ops_all_channels": ("全部渠道", "All channels"),
        "ops_filter": ("筛选", "Filter"),
        "ops_device": ("设备", "Device"),
        "ops_kind": ("指令", "Command"),
        "ops_status": ("状态", "Status"),
        "ops_attempts": ("尝试次数", "Attempts"),
        "ops_tries": ("已尝试 {n} 次", "{n} attempts"),
        "ops_next_at": ("下次 {time}", "next {time}"),
        "ops_created": ("创建时间", "Created"),
        "ops_sent": ("发送时间", "Sent"),
        "ops_acked": ("确认时间", "Acknowledged"),
        "ops_expires": ("{time} 过期", "expires {time}"),
        "ops_origin": ("来源", "Origin"),
        "ops_last_error": ("最近错误", "Last error"),
        "ops_account_link": ("查看住户账户", "Household account"),
        "ops_alarm_raised": ("已触发报警 #{id}", "Raised alarm #{id}"),
        "ops_no_commands": ("没有符合条件的设备指令", "No device commands match"),
        "ops_showing": ("第 {first}–{last} 条，共 {total} 条", "{first}–{last} of {total}"),
        "ops_prev": ("上一页", "Previous"),
        "ops_next": ("下一页", "Next"),
        "ops_channel": ("渠道", "Channel"),
        "ops_recipient": ("接收人", "Recipient"),
        "ops_subject": ("主题", "Subject"),
        "ops_next_attempt": ("下次尝试", "Next attempt"),
        "ops_retry_now": ("立即重试", "Retry now"),
        "ops_retry_queued": ("已安排立即重试", "Queued to be sent again now"),
        "ops_no_deliveries": ("没有符合条件的发送记录", "No deliveries match"),
        "task_done_button": ("标记完成", "Mark done"),
        "task_done_note": ("办理情况（如律所、案号）", "What was done (law firm, case number)"),
        "task_done_flash": ("任务已标记完成", "Task marked done"),
        "task_done_by": ("{who} 于 {when} 完成", "done by {who} at {when}"),
        "tasks_done_recent": ("最近完成的任务", "Recently done tasks"),
        "need_task_note": ("请填写办理情况", "Say what was done"),
    }
)


# Access-card pages (dashboards/access.py): the card register, a household's cards and the issue form, one card
# with the lost / return flows, and the printable 《智能卡发放登记表》.
STRINGS.update(
    {
        "nav_cards": ("门禁卡", "Access cards"),
        "cards_title": ("门禁卡登记", "Card register"),
        "cards_search": ("房号、持卡人或卡号", "Unit, holder or card number"),
        "cards_search_no_uid": ("房号或持卡人", "Unit or holder"),
        "cards_search_button": ("查询", "Search"),
        "cards_open_household": ("按房号发卡", "Issue by unit"),
        "cards_none": ("没有符合条件的卡", "No cards match"),
        "card_unit": ("房号", "Unit"),
        "card_holder": ("持卡人", "Holder"),
        "card_phone": ("联系电话", "Phone"),
        "card_type": ("卡类型", "Card type"),
        "card_number": ("卡号", "Card number"),
        "card_format": ("卡片类型", "Card format"),
        "card_status": ("状态", "Status"),
        "card_validity": ("有效期", "Validity"),
        "card_until_revoked": ("长期（至注销）", "Until revoked"),
        "card_doors": ("授权门禁点", "Authorised doors"),
        "card_hours": ("通行时段", "Hours"),
        "card_any_time": ("全天", "Any time"),
        "card_issued": ("发卡", "Issued"),
        "card_issuer": ("发卡人", "Issuer"),
        "card_fee": ("工本费", "Fee"),
        "card_deposit": ("押金", "Deposit"),
        "card_free": ("免费", "Free"),
        "card_replaces": ("补办自卡", "Replaces card"),
        "card_status_note": ("状态说明", "Status note"),
        "card_staff_role": ("岗位", "Role"),
        "card_wiegand": ("韦根号", "Wiegand"),
        "card_detail": ("卡片详情", "Card"),
        "household_title": ("{unit} 的门禁卡", "Cards of {unit}"),
        "household_quota": (
            "登记人数 {occupants} 人，免费卡额度 {allowed} 张，已用 {used} 张，剩余 {left} 张。",
            "{occupants} registered occupants: {allowed} free cards, {used} used, {left} left.",
        ),
        "household_next_fee": ("下一张业主/家属/租户卡收费 ¥{fee}", "The next owner/family/tenant card costs ¥{fee}"),
        "household_next_free": ("下一张业主/家属/租户卡免费", "The next owner/family/tenant card is free"),
        "household_find": ("房号", "Unit code"),
        "household_open": ("打开", "Open"),
        "issue_title": ("发卡", "Issue a card"),
        "issue_submit": ("发卡并登记", "Issue and register"),
        "issue_until_date": ("有效期至（租约/装修许可到期日）", "Valid until (lease or permit end)"),
        "issue_hint": (
            "卡号按读卡器读出的十六进制填写。业主/家属/租户卡按登记人数免费（每户最多3张），超出收取工本费；"
            "装修出入证收取工本费和押金，限周一至周六 8:00–18:00，装修许可到期后按期退卡退押金；访客卡最长24小时。"
            "门禁卡有效与否与任何欠费无关。",
            "Type the UID in hex as the reader shows it. Owner, family and tenant cards are free up to the registered "
            "occupants (at most 3 a household), extra cards pay the fee; renovation passes pay a fee and a deposit, "
            "open Mon–Sat 08:00–18:00 and are returned for the deposit when the permit ends; visitor cards last at "
            "most 24 h. No card ever depends on fees or arrears.",
        ),
        "issue_method": ("收费方式", "Paid by"),
        "move_out": ("迁出（注销本户全部卡）", "Move out (revoke every card)"),
        "move_out_confirm": ("确认迁出", "Confirm move-out"),
        "lost_title": ("挂失", "Report lost"),
        "lost_replacement": ("补办新卡卡号（可不填）", "Replacement card number (optional)"),
        "lost_submit": ("挂失", "Report lost"),
        "return_title": ("退卡", "Return"),
        "return_submit": ("确认退卡", "Confirm return"),
        "return_hint": (
            "装修出入证在装修许可到期后宽限期内退回的，退还押金；逾期或遗失的，押金不予退还。",
            "A renovation pass handed back within the grace after its permit ends gets its deposit back; late or "
            "lost, the deposit is kept.",
        ),
        "print_register": ("打印登记表", "Print the issue form"),
        "register_form_title": ("智能卡发放登记表", "Smart card issue form"),
        "register_signature": ("领卡人签字", "Received by"),
        "register_date": ("日期", "Date"),
        "register_building": ("楼栋/单元/房号", "Building / entrance / unit"),
        "flash_card_issued": ("已发卡并登记", "Card issued and registered"),
        "flash_card_lost": ("已挂失，该卡已从所有门禁移除", "Reported lost: the card is off every door"),
        "flash_card_returned": ("已退卡", "Card returned"),
        "flash_moved_out": ("已迁出，本户门禁卡已全部注销", "Moved out: every card of the unit is revoked"),
        "bad_card_form": ("表单填写有误", "The form has errors"),
        "ctype_owner": ("业主卡", "Owner"),
        "ctype_family": ("家属卡", "Family"),
        "ctype_tenant": ("租户卡", "Tenant"),
        "ctype_renovation": ("装修出入证", "Renovation pass"),
        "ctype_visitor": ("访客卡", "Visitor"),
        "ctype_staff": ("员工卡", "Staff"),
        "cstatus_active": ("有效", "Active"),
        "cstatus_lost": ("已挂失", "Lost"),
        "cstatus_revoked": ("已注销", "Revoked"),
        "cstatus_expired": ("已过期", "Expired"),
        "cstatus_returned": ("已退卡", "Returned"),
        "deposit_none": ("无", "None"),
        "deposit_held": ("已收", "Held"),
        "deposit_refunded": ("已退还", "Refunded"),
        "deposit_forfeited": ("不予退还", "Kept"),
        "weekday_1": ("一", "Mon"),
        "weekday_2": ("二", "Tue"),
        "weekday_3": ("三", "Wed"),
        "weekday_4": ("四", "Thu"),
        "weekday_5": ("五", "Fri"),
        "weekday_6": ("六", "Sat"),
        "weekday_7": ("日", "Sun"),
        "card_method_counter": ("现金/刷卡", "Counter"),
        "card_method_bank_transfer": ("银行转账", "Bank transfer"),
        "card_method_online": ("线上支付", "Online"),
        "swipes_title": ("刷卡记录", "Swipe log"),
        "swipes_privacy": (
            "刷卡记录属于个人行踪信息（敏感个人信息），仅限门禁卡管理员和系统管理员查阅，每次查阅均记入审计日志。",
            "Swipes are whereabouts (sensitive personal information): card administrators and administrators only; "
            "every read is recorded in the audit log.",
        ),
        "swipes_none": ("没有符合条件的刷卡记录", "No swipes match"),
        "swipe_time": ("时间", "Time"),
        "swipe_door": ("门禁点", "Door"),
        "swipe_outcome": ("结果", "Outcome"),
        "swipe_granted": ("通过", "Granted"),
        "swipe_denied": ("拒绝", "Denied"),
        "swipe_unknown_card": ("未登记的卡", "Unknown card"),
        "staff_card_title": ("发员工卡", "Issue a staff card"),
        "cards_total": ("共 {n} 条", "{n} in all"),
        "staff_card_until": ("有效期至（可不填）", "Valid until (optional)"),
        "sync_title": ("门禁控制器同步", "Door controller sync"),
        "sync_hint": (
            "名单变更经下发队列推送到各控制器；控制器确认所应用的版本。"
            "落后超过 15 分钟将产生报警，每晚核对一次名单摘要。",
            "Whitelist changes go to each controller through the command queue; a controller acknowledges the version "
            "it applied. One that stays behind for 15 minutes raises an alarm; every night its list digest is checked.",
        ),
        "sync_controller": ("控制器", "Controller"),
        "sync_state": ("同步状态", "Sync state"),
        "sync_pending": ("待同步", "Pending sync"),
        "sync_synced": ("已同步", "Synced"),
        "sync_version": ("版本（已应用/应为）", "Version (applied/desired)"),
        "sync_since": ("自", "Since"),
        "sync_reported": ("控制器自报", "Controller's report"),
        "sync_report_ok": ("名单一致", "list matches"),
        "sync_report_differs": ("名单不一致", "list differs"),
        "sync_none": ("该小区没有门禁控制器", "The estate has no door controllers"),
        "card_controllers": ("相关控制器同步", "Controllers of this card"),
    }
)


# quarterly statements and manual readings (dashboards/billing_statements.py keeps the rest beside it)
STRINGS.update(
    {
        "nav_statements": ("对账单", "Statements"),
        "nav_manual_readings": ("人工抄表", "Manual readings"),
        "flash_statements": ("对账单已生成", "Statements written"),
        "flash_period_closed": ("季度已结账", "Quarter closed"),
        "flash_manual_reading": ("抄表读数已登记", "Reading recorded"),
    }
)


# access alarms on the alarm list (dashboards/alarms_view.py subject_label)
STRINGS.update(
    {
        "alarm_subject_door": ("门 {door}", "Door {door}"),
        "alarm_subject_card": ("卡 {card}", "Card {card}"),
    }
)


# the read replica on the ingest page (dashboards/ingest_view.py replica_view)
STRINGS.update(
    {
        "replica_title": ("只读副本", "Read replica"),
        "replica_none": (
            "未配置只读副本：页面与接口都从主库读取",
            "No replica configured: pages and the API read the primary",
        ),
        "replica_streaming": ("流复制正常", "Streaming"),
        "replica_not_streaming": ("未在接收主库日志", "Not receiving the primary's WAL"),
        "replica_unreachable": ("无法连接副本，读取改走主库", "Unreachable: reads fall back to the primary"),
        "replica_not_replica": ("读库地址指向的不是副本", "The read URL is not a replica"),
        "replica_state": ("状态", "State"),
        "replica_lag": ("回放延迟", "Replay lag"),
        "replica_seconds": ("{s} 秒", "{s} s"),
        "replica_behind": ("未回放字节", "Bytes not yet replayed"),
        "replica_standby": ("备库（主库所见）", "Standby (as the primary sees it)"),
        "replica_no_standbys": ("主库未看到正在连接的备库", "The primary sees no connected standby"),
    }
)

# The monthly callback report (dashboards/callbacks.py).
STRINGS.update(
    {
        "cbr_title": ("回访统计", "Callback report"),
        "cbr_month": ("月份", "Month"),
        "cbr_targets": (
            "目标：上门回访不低于 {in_person}%，满意率不低于 {satisfaction}%",
            "Targets: at least {in_person} % in person, at least {satisfaction} % satisfied",
        ),
        "cbr_callbacks": ("回访数", "Callbacks"),
        "cbr_in_person": ("上门回访", "In person"),
        "cbr_phone": ("电话回访", "Phone"),
        "cbr_other": ("其他方式", "Other"),
        "cbr_in_person_share": ("上门回访率", "In-person share"),
        "cbr_satisfied": ("满意数", "Satisfied"),
        "cbr_satisfaction": ("满意率", "Satisfaction"),
        "cbr_met": ("达标", "Met"),
        "cbr_missed": ("未达标", "Missed"),
        "cbr_none": ("没有可查看的小区", "No estates to show"),
        "ticket_fault": ("故障类别", "Fault"),
        "in_person_callback_required": ("须上门回访", "in-person callback required"),
        "warranty_until": ("保修至 {day} 前", "warranty until before {day}"),
        "cbr_note": (
            "满意：满意度 3–5 分（1–2 分为不满意）；按小区当地月份统计，工单重新处理（返修）前的回访也计入",
            "Satisfied: 3–5 of 5 (1–2 is dissatisfied); by the estate's local month, callbacks before a reopen count",
        ),
    }
)

# System diagrams (组态图) of the equipment rooms (dashboards/diagrams/, templates/rooms/_diagram.html).
STRINGS.update(
    {
        "diagram_title": ("系统图", "System diagram"),
        "diagram_open_alone": ("单独打开", "Open on its own"),
        "diagram_other": ("其他设备", "Other equipment"),
        "diagram_hv_supply": ("10 kV 市电进线", "10 kV incoming supply"),
        "diagram_lv_bus": ("0.4 kV 低压母线", "0.4 kV LV busbar"),
        "diagram_duty": ("主用", "duty"),
        "diagram_standby": ("备用", "standby"),
        "diagram_suction": ("吸水总管", "Suction header"),
        "diagram_discharge": ("出水总管", "Discharge header"),
        "diagram_outlet": ("出水 → 供水管网", "Outlet → supply network"),
        "diagram_primary": ("一次网（热源）", "Primary network (heat source)"),
        "diagram_secondary_out": ("二次供水 → 用户", "Secondary supply → buildings"),
        "diagram_secondary_back": ("二次回水 ← 用户", "Secondary return ← buildings"),
        "diagram_makeup": ("补水定压", "Make-up & pressurisation"),
        "diagram_hot_supply": ("热水供水 → 用户", "Hot-water supply → users"),
        "diagram_hot_return": ("热水回水 ← 用户", "Hot-water return ← users"),
        "diagram_legend_ok": ("正常", "Normal"),
        "diagram_legend_warning": ("预警", "Warning"),
        "diagram_legend_alarm": ("报警", "Alarm"),
        "diagram_legend_critical": ("紧急", "Critical"),
        "diagram_legend_stale": ("离线 / 超时未上报", "Offline / not reporting"),
        "diagram_legend_running": ("泵运行 / 阀开", "Pump running / valve open"),
        "state_valve_open": ("开启", "Open"),
        "state_valve_closed": ("关闭", "Closed"),
    }
)

# The 18:30 daily summary (dashboards/summary.py).
STRINGS.update(
    {
        "nav_daily_summary": ("每日汇总", "Daily summary"),
        "sum_title": ("每日汇总", "Daily summary"),
        "sum_date": ("日期", "Date"),
        "sum_window": ("统计时段 {start} 至 {end}", "From {start} to {end}"),
        "sum_sent_at": ("已于 {time} 发送", "Sent at {time}"),
        "sum_not_sent_yet": ("每日 {time} 自动发送", "Sent automatically at {time} every day"),
        "sum_not_sent": ("当日未发送", "Not sent that day"),
        "sum_prev_day": ("前一天", "Previous day"),
        "sum_next_day": ("后一天", "Next day"),
        "sum_ticket_board": ("工单看板", "Ticket board"),
        "sum_stat_tickets": ("今日新增报修", "Tickets opened"),
        "sum_stat_open": ("未关闭 {n}", "{n} still open"),
        "sum_stat_breached": ("超时工单", "Past due"),
        "sum_stat_complaints": ("今日新增投诉", "Complaints received"),
        "sum_stat_missed": ("未巡检", "Rounds missed"),
        "sum_stat_rounds": ("巡检 {n} 次", "of {n} rounds"),
        "sum_stat_alarms": ("今日新增报警", "Alarms raised"),
        "sum_stat_alarms_open": ("未消除 {n}", "{n} not cleared"),
        "sum_stat_callbacks": ("待回访", "Callbacks due"),
        "sum_stat_callbacks_done": ("今日已回访 {n}", "{n} made today"),
        "sum_tickets": ("一、报修工单", "1. Repair tickets"),
        "sum_complaints": ("二、投诉", "2. Complaints"),
        "sum_rounds": ("三、巡检", "3. Inspection rounds"),
        "sum_alarms": ("四、报警", "4. Alarms"),
        "sum_callbacks": ("五、回访", "5. Callbacks"),
        "sum_opened": ("今日新增", "Opened"),
        "sum_closed": ("今日关闭", "Closed"),
        "sum_still_open": ("未关闭", "Still open"),
        "sum_breached": ("已超时", "Past due"),
        "sum_priority": ("优先级", "Priority"),
        "sum_breached_named": ("超时工单", "Past-due tickets"),
        "sum_none_breached": ("无超时工单", "Nothing past due"),
        "sum_due_by": ("应于 {time} 前", "due {time}"),
        "sum_schedule": ("巡检计划", "Schedule"),
        "sum_total": ("次数", "Rounds"),
        "sum_rounds_attention": ("未巡检及待人工巡检", "Missed and manual rounds due"),
        "sum_round_ticket": ("巡检工单", "Inspection ticket"),
        "sum_no_rounds": ("今日无巡检计划", "No rounds scheduled today"),
        "sum_severity": ("级别", "Severity"),
        "sum_raised": ("今日新增", "Raised"),
        "sum_not_cleared": ("未消除", "Not cleared"),
        "sum_callbacks_done": ("今日已回访", "Made today"),
        "sum_callbacks_due": ("待回访", "Still to make"),
        "sum_callbacks_overdue": ("回访超时", "Overdue"),
        "sum_no_callbacks": ("无待回访工单", "No callbacks waiting"),
        "sum_note": (
            "每日 {time}（小区当地时间）自动汇总并发送至主管、项目经理及管家；统计时段为当地零时起，投诉单独统计",
            "Sent every day at {time} estate time to supervisors, managers and stewards; the day starts at local "
            "midnight, complaints are counted apart",
        ),
    }
)

# --- alarm state on every tile and card, the alarm banner and its sound (issue 15 §1-2) ---------------------------

STRINGS.update(
    {
        "alarm_open_n": ("{label} {n} 条", "{label} ×{n}"),
        "alarm_unacked_n": ("未确认 {n}", "{n} unacknowledged"),
        "alarm_oldest": ("最早未确认 {time} {title}", "oldest unacknowledged {time} {title}"),
        "alarm_all_acked": ("均已确认", "all acknowledged"),
        "open_alarms": ("未消除报警", "Open alarms"),
        "no_open_alarms": ("无报警", "No alarms"),
        "banner_title": ("未确认报警", "Unacknowledged alarms"),
        "banner_more": ("另有 {n} 条，查看全部", "{n} more: see them all"),
        "banner_mute": ("静音", "Mute"),
        "banner_unmute": ("取消静音", "Unmute"),
        "banner_sound_blocked": ("浏览器阻止了提示音：点击此处启用", "The browser blocked the sound: click to enable"),
        "banner_clear": ("消除…", "Clear…"),
        "banner_prefs_title": ("报警横幅与提示音", "Alarm banner and sound"),
        "banner_min_severity": ("弹出并鸣响的最低级别", "Show and sound from"),
        "banner_and_above": ("{label}及以上", "{label} and above"),
        "banner_muted": ("提示音静音", "Mute the sound"),
        "banner_save": ("保存设置", "Save settings"),
        "flash_banner_prefs": ("报警提醒设置已保存", "Alarm banner settings saved"),
        "bad_banner_prefs": ("报警级别无效", "Unknown severity"),
    }
)

# Customer-service rounds: the estate calendar and the phone task page (dashboards/service_rounds.py).
STRINGS.update(
    {
        "nav_service_tasks": ("巡查任务", "Round tasks"),
        "csr_calendar_title": ("客服巡查日历", "Service rounds"),
        "csr_calendar_link": ("客服巡查日历 ›", "Service rounds ›"),
        "csr_my_tasks": ("我的巡查任务", "My round tasks"),
        "csr_my_tasks_link": ("我的巡查任务 ›", "My round tasks ›"),
        "csr_last_weeks": ("近 6 周", "last 6 weeks"),
        "csr_every_quarter": ("每季度", "every quarter"),
        "csr_every_week": ("每周", "every week"),
        "csr_twice_weekly": ("每周 2 次", "twice a week"),
        "csr_no_schedules": ("本小区尚未设置客服巡查", "No service rounds are set up for this estate"),
        "csr_no_rounds_yet": ("近 6 周没有巡查", "No rounds in the last 6 weeks"),
        "csr_no_tasks": ("本期无任务", "Nothing due"),
        "csr_round_pick": ("点击方格查看该轮巡查的任务", "Pick a cell to see the round's tasks"),
        "csr_progress": ("已完成 {done}，未能完成 {skipped}，共 {n} 项", "{done} done, {skipped} skipped of {n}"),
        "csr_findings": ("发现问题 {n} 项", "{n} findings"),
        "csr_place": ("房号 / 楼栋", "Unit / building"),
        "csr_recorded": ("记录", "Recorded"),
        "csr_pending_n": ("待完成 {n} 项", "{n} pending"),
        "csr_nothing_pending": ("目前没有待完成的巡查任务", "No round tasks pending"),
        "csr_overdue": ("已逾期", "Overdue"),
        "csr_due": ("{when} 前完成", "due {when}"),
        "csr_recorded_this_window": ("本期已记录", "Recorded this period"),
        "csr_outcome": ("结果", "Outcome"),
        "csr_outcome_ok": ("已完成，正常", "Done, all fine"),
        "csr_outcome_finding": ("发现问题（报修）", "Found a problem (repair)"),
        "csr_outcome_complaint": ("住户投诉", "Household complaint"),
        "csr_outcome_skipped": ("未能完成", "Could not do it"),
        "csr_finding": ("发现的问题", "What was found"),
        "csr_finding_hint": ("将生成工单", "opens a ticket"),
        "csr_category": ("问题类别", "Category"),
        "csr_note_hint": ("未能完成时请写明原因", "say why when it could not be done"),
        "csr_when": ("时间", "When"),
        "csr_record": ("提交记录", "Record"),
        "csr_bad_outcome": ("请选择结果", "Pick an outcome"),
        "csr_flash_recorded": ("巡查任务已记录", "Task recorded"),
        "csr_alarm_subject": ("客服巡查：{what}", "Service round: {what}"),
    }
)

# Energy and water reports (issue 15 §4: /energy, its CSV and Excel exports).
STRINGS.update(
    {
        "nav_energy": ("能耗", "Energy"),
        "en_title": ("能耗报表", "Energy and water report"),
        "en_month": ("月份", "Month"),
        "en_estate": ("小区", "Estate"),
        "en_util_electricity_meter": ("用电", "Electricity"),
        "en_util_cold_water_meter": ("冷水", "Cold water"),
        "en_util_hot_water_meter": ("热水", "Hot water"),
        "en_building": ("楼栋", "Building"),
        "en_whole_estate": ("全小区", "Whole estate"),
        "en_units_total": ("分户合计", "Households"),
        "en_master": ("总表", "Master meter"),
        "en_loss": ("损耗", "Loss"),
        "en_loss_electricity_meter": ("线损", "Line loss"),
        "en_loss_water": ("漏损", "Leakage"),
        "en_loss_rate": ("损耗率", "Loss rate"),
        "en_loss_rate_electricity_meter": ("线损率", "Line-loss rate"),
        "en_loss_rate_water": ("漏损率", "Leakage rate"),
        "en_previous": ("上月同期", "Last month"),
        "en_mom": ("环比", "Month on month"),
        "en_last_year": ("去年同期", "Same month last year"),
        "en_yoy": ("同比", "Year on year"),
        "en_held": ("未计入区间", "Intervals not counted"),
        "en_held_note": (
            "有 {n} 个区间读数回落且不是翻转（水电表归零或换表），"
            "在登记旧表止码和新表起码前不计入用量（与收费规则一致）。",
            "{n} intervals where a register fell without rolling over (a reset or a replaced meter) are not counted "
            "until the old meter's final and the new meter's initial reading are recorded (as billing does).",
        ),
        "en_partial": (
            "本月进行中：数据截至 {day}，环比、同比均按相同天数（1 日至 {dom} 日）比较。",
            "Month in progress: figures to {day}; month-on-month and year-on-year compare the same days "
            "(1st to {dom}).",
        ),
        "en_daily": ("每日用量", "Daily consumption"),
        "en_daily_of": ("{util}每日用量（{unit}）", "{util}: daily consumption ({unit})"),
        "en_compare_of": ("{util}分楼栋对比（{unit}）", "{util} by building ({unit})"),
        "en_vacant": ("空置房有用量", "Vacant units with consumption"),
        "en_vacant_none": ("本月没有空置房产生用量。", "No vacant unit used anything this month."),
        "en_top": ("用量排行", "Top consumers"),
        "en_unit_code": ("房号", "Unit"),
        "en_volume": ("用量", "Consumption"),
        "en_rank": ("名次", "Rank"),
        "en_occupancy": ("入住状态", "Occupancy"),
        "en_occ_vacant": ("空置", "Vacant"),
        "en_occ_occupied": ("已入住", "Occupied"),
        "en_occ_renovating": ("装修中", "Renovating"),
        "en_export_xlsx": ("导出月度能耗报表（Excel）", "Export the monthly report (Excel)"),
        "en_export_csv": ("导出数据（CSV）", "Export data (CSV)"),
        "en_no_data": ("该月没有用量数据。", "No consumption recorded for this month."),
        "en_as_of": ("数据更新于 {time}", "Data as of {time}"),
        "en_note": (
            "用量按水电表累计读数逐区间计算（含翻转；归零或换表须登记读数后计入），区间计入其结束时刻所在的日期；"
            "损耗 = 总表 − 分户合计，损耗率 = 损耗 ÷ 总表。",
            "Consumption is computed interval by interval from the cumulative registers (rollovers included; a reset "
            "or a replaced meter counts once its readings are recorded), each interval on the day it ends; "
            "loss = master − households, loss rate = loss ÷ master.",
        ),
        "en_sheet_summary": ("月度汇总", "Summary"),
        "en_sheet_daily": ("每日用量", "Daily"),
        "en_sheet_vacant": ("空置房用量", "Vacant units"),
        "en_sheet_top": ("用量排行", "Top consumers"),
        "en_utility": ("能源类别", "Utility"),
        "en_unit_of": ("单位", "Unit"),
        "en_day": ("日期", "Date"),
        "en_period": ("统计期", "Period"),
    }
)


# --- shift handover (交接班, dashboards/handover.py) and the wall display (大屏, dashboards/wall.py), issue 15 ---
STRINGS.update(
    {
        "nav_handover": ("交接班", "Handover"),
        "ho_title": ("交接班", "Shift handover"),
        "ho_choose_estate": ("请选择小区", "Choose an estate"),
        "ho_record_title": ("工程部交接班记录", "Shift handover record"),
        "ho_org": ("工程部", "Engineering"),
        "ho_record_no": ("编号", "No."),
        "ho_back": ("返回交接班", "Back to handover"),
        "ho_print": ("打印记录", "Print record"),
        "ho_print_now": ("打印", "Print"),
        "ho_print_hint": ("A4 纵向一页", "One A4 page, portrait"),
        "ho_printed_at": ("打印时间 {at}", "Printed {at}"),
        "ho_signature": ("签字", "signature"),
        "ho_outgoing": ("交班人", "Outgoing"),
        "ho_incoming": ("接班人", "Incoming"),
        "ho_handed_at": ("交班时间", "Handed over"),
        "ho_signed_at": ("签字时间", "Signed"),
        "ho_summary": ("本班概况", "Shift summary"),
        "ho_facts_as_of": ("数据截至 {at}", "Facts as of {at}"),
        "ho_handed_by": ("{who} 已于 {at} 交班", "Handed over by {who} at {at}"),
        "ho_signed_by": (
            "{who} 已于 {at} 接班签字，记录已归档不可更改",
            "Signed by {who} at {at}; the record is final",
        ),
        "ho_awaiting_sign": ("待接班签字", "Awaiting sign-off"),
        "ho_ended_not_handed": ("本班已结束，尚未交班", "This shift has ended and is not yet handed over"),
        "ho_draft_hint": (
            "本班进行中：数据实时汇总，交班时冻结存档",
            "Shift in progress: facts update live and are frozen at handover",
        ),
        "ho_hand_over": ("交班", "Hand over"),
        "ho_hand_over_again": ("更新交班记录", "Update the handover"),
        "ho_notes": ("交班事项", "Notes from the outgoing engineer"),
        "ho_notes_hint": (
            "未尽事项、设备状态、注意事项（最多 {n} 字）",
            "Open items, equipment state, cautions (at most {n} characters)",
        ),
        "ho_no_notes": ("（无）", "(none)"),
        "ho_sign": ("接班签字", "Sign for the shift"),
        "ho_sign_hint": (
            "确认已与 {who} 当面交接，签字后记录不可更改",
            "Confirm the handover with {who} in person; the record is final once signed",
        ),
        "ho_sign_note": ("接班意见", "Incoming engineer's remark"),
        "ho_sign_other": ("须由接班人（另一位工程人员）签字", "Another engineer, the incoming one, signs"),
        "ho_flash_handed_over": ("已交班，等待接班人签字", "Handed over; awaiting the incoming engineer's signature"),
        "ho_flash_signed": ("已接班签字，记录已归档", "Signed; the record is filed"),
        "ho_bad_shift": ("班次时间无效", "Invalid shift time"),
        "ho_alarms": ("报警", "Alarms"),
        "ho_alarms_open": ("仍未消除的报警", "Alarms still open"),
        "ho_alarms_raised": ("本班新增报警", "Alarms raised this shift"),
        "ho_alarms_cleared": ("本班消除报警", "Alarms cleared this shift"),
        "ho_tickets": ("工单", "Tickets"),
        "ho_alarms_shift": ("本班报警（新增及消除）", "This shift's alarms (raised or cleared)"),
        "ho_tickets_shift": ("本班工单（新建及关闭）", "This shift's tickets (received or closed)"),
        "ho_tickets_open": ("未关闭工单及时限", "Open tickets and their clocks"),
        "ho_tickets_opened": ("本班新建工单", "Tickets received this shift"),
        "ho_tickets_closed": ("本班关闭工单", "Tickets closed this shift"),
        "ho_rounds": ("巡检", "Inspection rounds"),
        "ho_raised": ("新增", "Raised"),
        "ho_cleared": ("消除", "Cleared"),
        "ho_still_open": ("未结", "Still open"),
        "ho_opened": ("新建", "Received"),
        "ho_closed": ("关闭", "Closed"),
        "ho_done": ("完成", "Done"),
        "ho_missed": ("未巡检", "Missed"),
        "ho_pending": ("待完成", "Pending"),
        "ho_missed_list": ("未巡检明细", "Missed rounds"),
        "ho_no_rounds": ("本班无巡检窗口", "No inspection windows this shift"),
        "ho_critical_n": ("严重 {n}", "{n} critical"),
        "ho_breached_n": ("超时 {n}", "{n} overdue"),
        "ho_breached": ("已超时", "overdue"),
        "ho_more": ("另有 {n} 条", "{n} more"),
        "ho_none": ("无", "None"),
        "ho_recent": ("近期交接班记录", "Recent handovers"),
        "ho_no_records": ("暂无交接班记录", "No handover records yet"),
        "ho_col_shift": ("班次", "Shift"),
        "ho_col_outgoing": ("交班", "Outgoing"),
        "ho_col_incoming": ("接班", "Incoming"),
        "ho_col_severity": ("级别", "Severity"),
        "ho_col_alarm": ("报警", "Alarm"),
        "ho_col_place": ("位置", "Where"),
        "ho_col_raised": ("发生", "Raised"),
        "ho_col_cleared": ("消除", "Cleared"),
        "ho_col_state": ("状态", "State"),
        "ho_col_peak": ("峰值", "Peak"),
        "ho_col_ticket": ("工单", "Ticket"),
        "ho_col_number": ("工单号", "Number"),
        "ho_col_title": ("事项", "Subject"),
        "ho_col_priority": ("紧急程度", "Priority"),
        "ho_col_status": ("状态", "Status"),
        "ho_col_assignee": ("处理人", "Assignee"),
        "ho_col_clocks": ("时限", "Clocks"),
        "ho_col_closed": ("关闭时间", "Closed"),
        "ho_col_when": ("受理 → 关闭", "Received → closed"),
        "ho_col_room": ("机房", "Room"),
        "wall_title": ("设备监控大屏", "Control-room display"),
        "wall_overview": ("小区总览", "Estate overview"),
        "wall_open_alarms": ("未消除报警", "Open alarms"),
        "wall_no_alarms": ("无未消除报警", "No open alarms"),
        "wall_since": ("{at} 起", "since {at}"),
        "wall_unacked": ("未确认", "Unacknowledged"),
        "wall_room_alarms": ("{n} 条报警", "{n} alarms"),
        "wall_room_ok": ("运行正常", "Normal"),
        "wall_rotate": ("每 {n} 秒轮播下一画面", "Next screen every {n} s"),
        "wall_connect_title": ("连接监控大屏", "Connect the wall display"),
        "wall_connect_intro": (
            "请输入项目经理发放的大屏令牌。只需输入一次，此后本屏自动保持连接。",
            "Enter the display token the project manager issued. Only once: the screen stays connected afterwards.",
        ),
        "wall_token": ("大屏令牌", "Display token"),
        "wall_connect_submit": ("连接", "Connect"),
        "wall_token_bad": ("令牌无效、已过期或已撤销", "The token is unknown, expired or revoked"),
        "wall_token_ended": (
            "本屏的令牌已撤销或过期，请重新连接",
            "This screen's token was revoked or expired; connect again",
        ),
        "wall_tokens_title": ("大屏令牌", "Wall display tokens"),
        "wall_open": ("打开大屏", "Open the wall display"),
        "wall_token_new": ("发放新令牌", "Issue a token"),
        "wall_token_name": ("大屏名称", "Screen name"),
        "wall_token_name_hint": ("如：监控中心大屏", "e.g. control room screen"),
        "wall_token_issue": ("发放", "Issue"),
        "wall_token_created": ("令牌已生成", "Token issued"),
        "wall_token_once": (
            "请立即在大屏上输入，此令牌只显示这一次。",
            "Enter it on the screen now: it is shown only this once.",
        ),
        "wall_token_how": (
            "在大屏浏览器打开 {url} 并输入令牌",
            "On the screen's browser open {url} and enter the token",
        ),
        "wall_token_by": ("发放人", "Issued by"),
        "wall_token_expires": ("有效期至", "Expires"),
        "wall_token_used": ("最近使用", "Last used"),
        "wall_token_revoke": ("撤销", "Revoke"),
        "wall_token_revoked": ("已于 {at} 撤销", "Revoked {at}"),
        "wall_token_expired": ("已过期", "Expired"),
        "wall_no_tokens": ("尚未发放大屏令牌", "No display tokens yet"),
    }
)
