"""What the wall display (大屏) shows of one estate: an alarm strip above every slide, the estate's overview slide
and one slide per equipment room (its devices' live values), shaped as plain dicts for wall/_slides.html."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from alarms import queries as alarm_queries
from alarms.const import SEVERITY_LABELS, SEVERITY_RANK, Severity
from core import clock
from dashboards import i18n, rooms_view
from dashboards.diagrams.view import diagram_view
from dashboards.handover_view import SEVERITY_CSS
from dashboards.i18n import Lang, label
from facility import queries as facility
from storage.models import Estate

BANNER_ALARMS = 6  # the strip's rows: what can be read from across the control room
WALL_ALARMS_READ = 200  # enough to colour every room in alarm


def _severest(severities: list[str]) -> str | None:
    known = [Severity(s) for s in severities if s in Severity.__members__]
    return max(known, key=lambda s: SEVERITY_RANK[s]).value if known else None


def _value(value: float | None, unit: str, lang: Lang) -> str:
    return f"{i18n.format_value(value, unit, lang)}{i18n.unit_display(unit, lang)}" if value is not None else ""


def slides(session: Session, estate: Estate, lang: Lang) -> dict[str, Any]:
    """The alarm strip, the overview and one slide per room, for the estate's wall display."""
    tz = i18n.zone(estate.timezone)
    now = clock.now()
    alarms = alarm_queries.open_alarms(session, estate.id, limit=WALL_ALARMS_READ)
    counts = alarm_queries.open_alarm_counts(session, estate.id)
    by_room: dict[str, list[str]] = {}
    for a in alarms:
        if a.room_code:
            by_room.setdefault(a.room_code, []).append(a.severity)
    strip = [
        {
            "id": a.id,
            "severity": a.severity,
            "css": SEVERITY_CSS.get(a.severity, ""),
            "severity_label": label(SEVERITY_LABELS, a.severity, lang),
            "title": (a.title_en if lang == "en" and a.title_en else a.title_zh) or a.title_en,
            "place": " · ".join(
                p
                for p in (
                    a.room_name,
                    a.device_name,
                    i18n.point_label(a.metric, a.point_label or "", lang) if a.metric else None,
                )
                if p
            ),
            "value": _value(a.last_value, a.point_unit or "", lang),
            "since": i18n.format_time(a.raised_at, tz, seconds=False, date=False),
            "unacknowledged": a.state == "active",
        }
        for a in alarms[:BANNER_ALARMS]
    ]
    summary = rooms_view.estate_summary(session, estate, lang)
    rooms = []
    for room in facility.estate_rooms(session, estate.id):
        devices = rooms_view.room_devices(session, room)
        severity = _severest(by_room.get(room.code, []))
        views = rooms_view.device_views(session, devices, lang, tz)
        rooms.append(
            {
                "id": room.id,
                "code": room.code,
                "title": i18n.room_title(room.name, room.kind, room.code, lang),
                "kind": i18n.lookup(i18n.ROOM_KINDS, room.kind, lang, fallback=room.kind),
                "severity": severity or "ok",
                "css": SEVERITY_CSS.get(severity or "", "sev-ok"),
                "alarms": len(by_room.get(room.code, [])),
                "devices": views,
                # The room's system diagram (组态图), drawn above its tiles: what the control room reads from afar.
                "dv": diagram_view(session, room, devices, views, lang),
            }
        )
    total = sum(counts.values())
    return {
        "estate": estate,
        "now": i18n.format_time(now, tz, seconds=False),
        "strip": strip,
        "strip_more": max(0, total - len(strip)),
        "alarm_counts": [
            {
                "severity": s.value,
                "css": SEVERITY_CSS[s.value],
                "label": label(SEVERITY_LABELS, s.value, lang),
                "n": counts.get(s.value, 0),
            }
            for s in (Severity.critical, Severity.alarm, Severity.warning)
        ],
        "alarm_total": total,
        "severity": _severest(list(counts)) or "ok",
        "s": summary,
        "rooms": rooms,
    }
