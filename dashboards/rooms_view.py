"""What the equipment pages show (estate overview, room, device), read through ``facility.queries`` and
``facility.live`` and shaped for the templates and the live stream.

Views are plain dicts so the first render (Jinja) and every live update (JSON over SSE) share one shape:
the page's script only copies fields into the elements the template drew.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.alarm_state import alarm_states, point_limits
from core import clock
from dashboards import i18n
from dashboards.alarm_state_view import badge, limit_text
from dashboards.i18n import Lang
from facility import queries, series
from facility.live import contact_status, device_status, live_values
from storage import ingest_reads
from storage.models import DeadLetter, Device, Estate, QuarantinedMessage, Room

# The data rate counts the rows of the shortest window that holds a fair sample, on about RATE_POINTS_COUNTED
# points (those of every k-th device, scaled up): each row counted is a heap visit, and at 4,000 msg/s an estate
# writes 20,000 readings a second, so counting ten seconds of them all made the overview take a third of a second
# (bench/api.py). A quiet estate still gets a whole minute, so its rate is not 0 or 6. The windows end two seconds
# ago: the newest are still arriving.
RATE_WINDOWS = (timedelta(seconds=1), timedelta(seconds=10), timedelta(minutes=1))
RATE_FAIR_SAMPLE = 200  # rows counted in a window that make it a fair sample
RATE_POINTS_COUNTED = 250
RATE_LAG = timedelta(seconds=2)
STALE_DEVICES_SHOWN = 20
METER_READINGS_SHOWN = 20
# Per-phase quantities chart together; line-to-line voltages (≈ √3 × phase) get a chart of their own.
_LINE_QUANTITY = re.compile(r"_(ab|bc|ca)_")

CHART_TITLES: dict[str, tuple[str, str]] = {
    "°C": ("温度", "Temperature"),
    "V": ("相电压", "Phase voltage"),
    "V-line": ("线电压", "Line voltage"),
    "A": ("电流", "Current"),
    "MPa": ("压力", "Pressure"),
    "m": ("液位", "Level"),
    "Hz": ("频率", "Frequency"),
    "kW": ("功率", "Power"),
    "%RH": ("湿度", "Humidity"),
}

# Hourly: answered from the rollup / continuous aggregate (≈ 20 ms a room) instead of aggregating
# ~58k raw rows per page (≈ 170 ms; bench/api.py). The device page keeps 5-minute detail.
ROOM_RANGE = (timedelta(hours=24), series.Bucket.h1)


# --- estates ---------------------------------------------------------------------------------------


@dataclass
class Counts:
    total: int = 0
    online: int = 0
    stale: int = 0
    never: int = 0

    def add(self, status: str) -> None:
        self.total += 1
        if status in ("online",):
            self.online += 1
        elif status == "never":
            self.never += 1
        else:
            self.stale += 1  # silent or reporting itself offline: either way not to be trusted


@dataclass
class EstateSummary:
    estate: Estate
    tz: ZoneInfo
    devices: Counts = field(default_factory=Counts)
    rooms: list[dict[str, Any]] = field(default_factory=list)
    kinds: list[tuple[str, Counts]] = field(default_factory=list)
    stale_devices: list[dict[str, Any]] = field(default_factory=list)
    stale_more: int = 0
    rate_per_min: float = 0.0
    rate_hint: str = ""  # the window the rate was counted over (RATE_WINDOWS), in words
    rate_estimated: bool = False  # counted on a sample of the points and scaled up (shown with ≈)
    dead_letters_24h: int = 0
    quarantined_24h: int = 0
    # The estate's open alarms (alarm_state_view.badge), None when there are none.
    alarm: dict[str, Any] | None = None


def topic_prefix(code: str) -> str:
    escaped = code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"steward/{escaped}/%"


def data_rate(session: Session, estate_id: int, points: int, now: datetime) -> tuple[float, int, bool]:
    """(readings a minute, the window in seconds they were counted over, whether it is an estimate from a sample
    of the points) by device time: see RATE_WINDOWS."""
    every = max(1, -(-points // RATE_POINTS_COUNTED))
    hi = now - RATE_LAG
    for window in RATE_WINDOWS:
        counted = queries.readings_between(session, estate_id, hi - window, hi, every=every)
        if counted.samples + counted.meter_readings >= RATE_FAIR_SAMPLE:
            break
    seconds = window.total_seconds()
    return counted.estimate * 60 / seconds, int(seconds), counted.points_counted < counted.points


def estate_summary(session: Session, estate: Estate, lang: Lang, *, detail: bool = True) -> EstateSummary:
    """Rooms, device counts by status and kind, silent devices, data rate and ingest rejects of one estate."""
    now = clock.now()
    tz = i18n.zone(estate.timezone)
    out = EstateSummary(estate=estate, tz=tz)
    # A replaced meter stays for its history but no longer reports: it is not "silent".
    devices = queries.estate_device_contacts(session, estate.id)
    by_kind: dict[str, Counts] = {}
    by_room: dict[int, Counts] = {}
    # A room card's stale points are the points of its devices that are not reporting. Judged per device, not per
    # point: one index probe per point (5,000 in a large estate) cost 70–110 ms of the page under ingest load
    # (bench/api.py); a point an online device leaves out of its frames shows stale on its room page's tile.
    room_points: dict[int, int] = {}
    room_stale_points: dict[int, int] = {}
    stale: list[tuple[float, queries.DeviceContact, str, float | None]] = []
    for device in devices:
        status, age = contact_status(device.expected_interval_s, device.last_seen_at, device.online, now)
        out.devices.add(status)
        by_kind.setdefault(device.kind, Counts()).add(status)
        if device.room_id is not None:
            by_room.setdefault(device.room_id, Counts()).add(status)
            room_points[device.room_id] = room_points.get(device.room_id, 0) + device.points
            if status != "online":
                room_stale_points[device.room_id] = room_stale_points.get(device.room_id, 0) + device.points
        if status != "online":
            stale.append((age if age is not None else float("inf"), device, status, age))

    out.rate_per_min, window_s, out.rate_estimated = data_rate(session, estate.id, sum(d.points for d in devices), now)
    window_words = i18n.t("rate_window_min", lang) if window_s >= 60 else i18n.t("rate_window_s", lang, n=window_s)
    out.rate_hint = i18n.t("rate_hint", lang, window=window_words)
    day = now - timedelta(hours=24)
    prefix = topic_prefix(estate.code)
    out.dead_letters_24h = ingest_reads.count_since(session, DeadLetter, DeadLetter.topic.like(prefix), day)
    out.quarantined_24h = ingest_reads.count_since(
        session, QuarantinedMessage, QuarantinedMessage.topic.like(prefix), day
    )
    alarms = alarm_states(session, [estate.id])
    out.alarm = badge(alarms.estates.get(estate.id), lang, tz)
    if not detail:
        return out

    for room in queries.estate_rooms(session, estate.id):
        out.rooms.append(
            {
                "id": room.id,
                "code": room.code,
                "title": i18n.room_title(room.name, room.kind, room.code, lang),
                "kind": i18n.lookup(i18n.ROOM_KINDS, room.kind, lang, fallback=room.kind),
                "devices": by_room.get(room.id, Counts()),
                "points": room_points.get(room.id, 0),
                "stale_points": room_stale_points.get(room.id, 0),
                "alarm": badge(alarms.rooms.get(room.id), lang, tz),
            }
        )
    out.kinds = [
        (i18n.lookup(i18n.DEVICE_KINDS, kind, lang, fallback=kind), c)
        for kind, c in sorted(by_kind.items(), key=lambda kv: (-kv[1].total, kv[0]))
    ]
    stale.sort(key=lambda s: (s[0] == float("inf"), -s[0] if s[0] != float("inf") else 0, s[1].code))
    for _, device, status, age in stale[:STALE_DEVICES_SHOWN]:
        out.stale_devices.append(
            {
                "id": device.id,
                "code": device.code,
                "title": i18n.device_title(device.name, device.kind, device.code, lang),
                "status": status,
                "age": i18n.stale_text(age, lang) if status != "offline" else i18n.t("offline", lang),
            }
        )
    out.stale_more = max(0, len(stale) - STALE_DEVICES_SHOWN)
    return out


# --- rooms and devices -----------------------------------------------------------------------------


def room_devices(session: Session, room: Room) -> list[Device]:
    return queries.room_devices(session, room.id)


def device_views(session: Session, devices: list[Device], lang: Lang, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Each device with its status and the live value of each point (the shape the live stream resends)."""
    now = clock.now()
    states = queries.device_states(session, [d.id for d in devices])
    kinds = queries.point_kinds(session, [d.id for d in devices])
    estate_ids = {d.estate_id for d in devices}
    device_ids = [d.id for d in devices]
    alarms = alarm_states(session, estate_ids, device_ids=device_ids)
    limits = point_limits(session, estate_ids, device_ids=device_ids)
    by_device: dict[int, list[dict[str, Any]]] = {d.id: [] for d in devices}
    for lv in live_values(session, devices):
        kind = kinds.get(lv.point_id, "gauge")
        if kind == "state":
            text_, css = i18n.state_text(lv.metric, lv.value, lang)
        else:
            text_, css = i18n.format_value(lv.value, lv.unit, lang), ""
        by_device[lv.device_id].append(
            {
                "id": lv.point_id,
                "metric": lv.metric,
                "label": i18n.point_label(lv.metric, lv.label, lang),
                "unit": i18n.unit_display(lv.unit, lang) if kind != "state" else "",
                "kind": kind,
                "text": text_,
                "css": css,
                "value": lv.value,
                "ts": i18n.format_time(lv.ts, tz, date=False) if lv.ts else "—",
                "ts_full": i18n.format_time(lv.ts, tz),
                "x": i18n.chart_ms(lv.ts, tz) if lv.ts else None,
                "stale": lv.stale,
                "stale_text": i18n.stale_text(lv.age_s, lang) if lv.stale else "",
                "alarm": badge(alarms.points.get(lv.point_id), lang, tz),
                "limit": limit_text(limits.get(lv.point_id), lv.unit, lang) if kind != "state" else "",
            }
        )
    out = []
    for d in devices:
        state = states.get(d.id)
        status, age = device_status(d.expected_interval_s, state, now)
        out.append(
            {
                "id": d.id,
                "code": d.code,
                "title": i18n.device_title(d.name, d.kind, d.code, lang),
                "kind": i18n.lookup(i18n.DEVICE_KINDS, d.kind, lang, fallback=d.kind),
                "status": status,
                "status_text": _status_text(status, age, lang),
                "last_seen": i18n.format_time(state.last_seen_at, tz) if state else "—",
                "alarm": badge(alarms.devices.get(d.id), lang, tz),
                "points": by_device[d.id],
            }
        )
    return out


def _status_text(status: str, age: float | None, lang: Lang) -> str:
    if status == "online":
        return i18n.t("online", lang)
    if status == "offline":
        return i18n.t("offline", lang)
    return i18n.stale_text(age, lang)


def live_payload(session: Session, devices: list[Device], lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    """What one live update carries: every device's status and every point's value, pre-formatted."""
    views = device_views(session, devices, lang, tz)
    return {
        "now": i18n.format_time(clock.now(), tz, date=False),
        "devices": [{k: v for k, v in d.items() if k != "points"} for d in views],
        "points": [p for d in views for p in d["points"]],
    }


def charts(
    session: Session,
    devices: list[Device],
    lang: Lang,
    tz: ZoneInfo,
    *,
    span: timedelta,
    bucket: series.Bucket,
    end: datetime | None = None,
    band: bool = False,
) -> dict[int, list[dict[str, Any]]]:
    """Per device, one line chart per quantity (unit), each series a point's bucket averages over the span
    ending at ``end`` (now by default); with ``band`` each bucket also carries its min and max (the device
    page draws them as a shaded band around the average)."""
    points = queries.chartable_points(session, [d.id for d in devices])
    hi = end or clock.now()
    lo = hi - span
    by_device: dict[int, list[dict[str, Any]]] = {d.id: [] for d in devices}
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    attrs = {d.id: d.attrs or {} for d in devices}
    for p in points:
        key = p.unit + ("-line" if p.unit == "V" and _LINE_QUANTITY.search(p.metric) else "")
        chart = groups.get((p.device_id, key))
        if chart is None:
            chart = {
                "id": f"chart-{p.device_id}-{len(by_device[p.device_id])}",
                "key": key,
                "unit": i18n.unit_display(p.unit, lang),
                "decimals": i18n.decimals(p.unit),
                "series": [],
                "band": band,
                "lines": _reference_lines(attrs[p.device_id], p.unit, lang),
            }
            groups[(p.device_id, key)] = chart
            by_device[p.device_id].append(chart)
        _, rows = series.bucketed(session, p.id, lo, hi, bucket, tz=tz.key)
        chart["series"].append(
            {
                "point_id": p.id,
                "name": i18n.point_label(p.metric, p.label, lang),
                "data": _with_gaps(rows, bucket, tz, i18n.decimals(p.unit) + 1, band=band),
            }
        )
    for chart_list in by_device.values():
        for chart in chart_list:
            names = [s["name"] for s in chart["series"]]
            title = (
                names[0]
                if len(names) == 1
                else i18n.lookup(CHART_TITLES, chart["key"], lang, fallback=" / ".join(names))
            )
            chart["title"] = (
                f"{title}（{chart['unit']}）"
                if chart["unit"] and lang == "zh"
                else (f"{title} ({chart['unit']})" if chart["unit"] else title)
            )
    return by_device


@dataclass(frozen=True)
class ChartWindow:
    x_min: int  # the x axis' start (i18n.chart_ms): the window's, or the first bucket's when the data began later
    label: str  # what the captions call it: 24 小时趋势, or 近 2 小时趋势 when only two hours are there


def _span_words(span: timedelta, lang: Lang) -> str:
    minutes = max(1, round(span.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min" if lang == "en" else f"{minutes} 分钟"
    hours = round(minutes / 60)
    if hours < 48:
        return f"{hours} h" if lang == "en" else f"{hours} 小时"
    days = round(hours / 24)
    return f"{days} days" if lang == "en" else f"{days} 天"


def chart_window(
    chart_list: list[dict[str, Any]], now: datetime, span: timedelta, tz: ZoneInfo, lang: Lang
) -> ChartWindow:
    """The x axis spans the data: a room watched for two hours fills its 24 h charts with those two hours (and the
    captions say 近 2 小时) instead of squeezing them into the right edge; a full window stays as it was."""
    window_start = i18n.chart_ms(now - span, tz)
    firsts = [s["data"][0][0] for c in chart_list for s in c["series"] if s["data"]]
    start = max(window_start, min(firsts)) if firsts else window_start
    shown = timedelta(milliseconds=i18n.chart_ms(now, tz) - start)
    # A window within a bucket or so of full is the full window (the first bucket starts on the hour).
    if shown >= span * 0.95:
        shown, start = span, window_start
    words = _span_words(shown, lang)
    label = f"Last {words}" if lang == "en" else f"近 {words}趋势" if shown < span else f"{words}趋势"
    return ChartWindow(start, label)


def _with_gaps(
    rows: list[series.BucketRow], bucket: series.Bucket, tz: ZoneInfo, digits: int, *, band: bool = False
) -> list[Any]:
    """[x, avg] pairs ([x, avg, min, max] with ``band``), with nulls wherever two buckets are more than two
    widths apart: a device that was silent for an hour shows a break in its line instead of a straight bridge
    across the outage."""
    out: list[Any] = []
    prev: datetime | None = None
    for r in rows:
        if prev is not None and r.bucket - prev > 2 * bucket.width:
            out.append([i18n.chart_ms(prev + bucket.width, tz), *([None] * (3 if band else 1))])
        x = i18n.chart_ms(r.bucket, tz)
        if band:
            out.append([x, round(r.avg, digits), round(r.min, digits), round(r.max, digits)])
        else:
            out.append([x, round(r.avg, digits)])
        prev = r.bucket
    return out


def _reference_lines(attrs: dict[str, Any], unit: str, lang: Lang) -> list[dict[str, Any]]:
    lines = []
    for attr, (attr_unit, zh, en) in i18n.ATTR_LINES.items():
        value = attrs.get(attr)
        if attr_unit == unit and isinstance(value, int | float) and not isinstance(value, bool):
            lines.append({"name": en if lang == "en" else zh, "value": value})
    return lines


def meter_readings(session: Session, device: Device, tz: ZoneInfo) -> list[dict[str, Any]]:
    rows = queries.latest_meter_readings(session, device.id, METER_READINGS_SHOWN)
    return [
        {
            "ts": i18n.format_time(r.ts, tz),
            "register": str(r.register),
            "reverse": "" if r.reverse_register is None else str(r.reverse_register),
            "valve": r.valve or "",
            "flags": ", ".join(r.flags or []),
        }
        for r in rows
    ]
