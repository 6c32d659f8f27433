"""What the handover page and the printable record show, worded from a shift's facts (alarms.handover.shift_facts).

The facts are plain JSON — the live draft's and a record's frozen snapshot alike — so one function words both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alarms.const import ALARM_STATE_LABELS, SEVERITY_LABELS
from alarms.rounds import STATUS_LABELS as ROUND_STATUS_LABELS
from dashboards import i18n
from dashboards.i18n import Lang, label
from storage.models import ShiftHandover
from tickets.const import CLOCK_LABELS, PRIORITY_LABELS
from tickets.const import STATUS_LABELS as TICKET_STATUS_LABELS

# The printed record is one A4 page: each list shows its first rows and says how many more there are.
PRINT_ROWS = {
    "alarms_raised": 6,
    "alarms_cleared": 5,
    "alarms_open": 5,
    "alarms_shift": 7,
    "tickets_opened": 5,
    "tickets_closed": 4,
    "tickets_open": 5,
    "tickets_shift": 5,
    "rounds_missed": 6,
}
SEVERITY_CSS = {"warning": "sev-warning", "alarm": "sev-alarm", "critical": "sev-critical"}


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _time(value: str | None, tz: ZoneInfo, *, date: bool = False) -> str:
    at = _at(value)
    return i18n.format_time(at, tz, seconds=False, date=date) if at else "—"


def _short(value: str | None, tz: ZoneInfo) -> str:
    at = _at(value)
    return at.astimezone(tz).strftime("%m-%d %H:%M") if at else "—"


def shift_title(name_zh: str, name_en: str, start: datetime, end: datetime, tz: ZoneInfo, lang: Lang) -> str:
    """白班 2026-11-26 08:00–20:00; a night shift names both days: 夜班 2026-11-26 20:00 – 11-27 08:00."""
    name = name_en if lang == "en" and name_en else name_zh
    s, e = start.astimezone(tz), end.astimezone(tz)
    if s.date() == e.date():
        return f"{name} {s:%Y-%m-%d %H:%M}–{e:%H:%M}"
    return f"{name} {s:%Y-%m-%d %H:%M} – {e:%m-%d %H:%M}"


def _place(item: Mapping[str, Any], lang: Lang) -> str:
    """Where, as people say it: room · device · the point's own label (never an id)."""
    parts = [item.get("room_name") or "", item.get("device_name") or ""]
    if item.get("metric"):
        parts.append(i18n.point_label(str(item["metric"]), str(item.get("point_label") or ""), lang))
    elif item.get("unit_code"):
        parts.append(str(item["unit_code"]))
    return " · ".join(p for p in parts if p) or "—"


def _alarm(a: Mapping[str, Any], tz: ZoneInfo, lang: Lang) -> dict[str, Any]:
    unit = str(a.get("unit") or "")
    peak = a.get("peak")
    return {
        "id": a["id"],
        "title": (a.get("title_en") if lang == "en" else None) or a.get("title_zh") or a.get("title_en") or "",
        "severity": a["severity"],
        "severity_label": label(SEVERITY_LABELS, a["severity"], lang),
        "css": SEVERITY_CSS.get(a["severity"], ""),
        "state_label": label(ALARM_STATE_LABELS, a["state"], lang),
        "place": _place(a, lang),
        "raised": _time(a.get("raised_at"), tz, date=True),
        "raised_at": a.get("raised_at") or "",
        "cleared": _time(a.get("cleared_at"), tz, date=True) if a.get("cleared_at") else "",
        "peak": f"{i18n.fmt_value(peak)}{i18n.unit_display(unit, lang)}" if isinstance(peak, int | float) else "",
        "ticket": a.get("ticket_number") or "",
    }


def _ticket(t: Mapping[str, Any], tz: ZoneInfo, lang: Lang) -> dict[str, Any]:
    clocks = [
        {
            "label": label(CLOCK_LABELS, c["clock"], lang),
            "due": _time(c["due_at"], tz, date=True),
            "breached": bool(c["breached"]),
        }
        for c in t.get("clocks") or []
    ]
    place = " · ".join(p for p in (t.get("room_name"), t.get("unit_code"), t.get("device_name")) if p) or "—"
    return {
        "id": t["id"],
        "number": t["number"],
        "title": t["title"],
        "priority": t["priority"],
        "priority_label": label(PRIORITY_LABELS, t["priority"], lang),
        "status_label": label(TICKET_STATUS_LABELS, t["status"], lang),
        "place": place,
        "assignee": t.get("assignee") or "—",
        "received": _time(t.get("received_at"), tz, date=True),
        "closed": _time(t.get("closed_at"), tz, date=True) if t.get("closed_at") else "",
        "clocks": clocks,
        "breached": any(c["breached"] for c in clocks),
        "received_at": t.get("received_at") or "",
        "received_short": _short(t.get("received_at"), tz),
        "closed_short": _short(t.get("closed_at"), tz) if t.get("closed_at") else "",
    }


def _round(r: Mapping[str, Any], tz: ZoneInfo, lang: Lang) -> dict[str, Any]:
    name = (r.get("schedule_name_en") if lang == "en" else None) or r.get("schedule_name_zh") or ""
    return {
        "id": r["id"],
        "name": name,
        "room": r.get("room_name") or r.get("room_code") or "",
        "window": f"{_time(r.get('window_start'), tz)}–{_time(r.get('window_end'), tz)}",
        "status": r["status"],
        "status_label": label(ROUND_STATUS_LABELS, r["status"], lang),
        "ticket": r.get("ticket_number") or "",
    }


def _cut(rows: list[dict[str, Any]], key: str, printable: bool) -> dict[str, Any]:
    limit = PRINT_ROWS[key] if printable else len(rows)
    return {"rows": rows[:limit], "more": max(0, len(rows) - limit), "total": len(rows)}


def facts_view(facts: Mapping[str, Any], tz: ZoneInfo, lang: Lang, *, printable: bool = False) -> dict[str, Any]:
    """The sections of a shift's record, worded; ``printable`` keeps each list short enough for one A4 page."""
    alarms = facts.get("alarms") or {}
    tickets = facts.get("tickets") or {}
    rounds = facts.get("rounds") or {}
    counts = dict(facts.get("counts") or {})
    return {
        "as_of": _time(facts.get("as_of"), tz, date=True),
        "counts": counts,
        "alarms_raised": _cut([_alarm(a, tz, lang) for a in alarms.get("raised", [])], "alarms_raised", printable),
        "alarms_cleared": _cut([_alarm(a, tz, lang) for a in alarms.get("cleared", [])], "alarms_cleared", printable),
        "alarms_open": _cut([_alarm(a, tz, lang) for a in alarms.get("open", [])], "alarms_open", printable),
        "tickets_opened": _cut([_ticket(t, tz, lang) for t in tickets.get("opened", [])], "tickets_opened", printable),
        "tickets_closed": _cut([_ticket(t, tz, lang) for t in tickets.get("closed", [])], "tickets_closed", printable),
        "tickets_open": _cut([_ticket(t, tz, lang) for t in tickets.get("open", [])], "tickets_open", printable),
        "rounds_missed": _cut([_round(r, tz, lang) for r in rounds.get("missed", [])], "rounds_missed", printable),
        # The printed record lists the shift's own alarms and tickets once each (raised or cleared; received or
        # closed in the shift), oldest first: one table instead of two keeps it on one page.
        "alarms_shift": _cut(
            _union([_alarm(a, tz, lang) for k in ("raised", "cleared") for a in alarms.get(k, [])], "raised_at"),
            "alarms_shift",
            printable,
        ),
        "tickets_shift": _cut(
            _union([_ticket(t, tz, lang) for k in ("opened", "closed") for t in tickets.get(k, [])], "received_at"),
            "tickets_shift",
            printable,
        ),
        "rounds_by_room": _rounds_by_room(rounds, lang),
    }


def _union(rows: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    seen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["id"], row)
    return sorted(seen.values(), key=lambda r: (str(r[order]), r["id"]))


def _rounds_by_room(rounds: Mapping[str, Any], lang: Lang) -> list[dict[str, Any]]:
    """Per room: windows done, missed and still pending (the record lists the missed ones by name)."""
    rooms: dict[str, dict[str, Any]] = {}
    for key in ("done", "missed", "pending"):
        for r in rounds.get(key, []):
            room = r.get("room_name") or r.get("room_code") or "—"
            row = rooms.setdefault(room, {"room": room, "done": 0, "missed": 0, "pending": 0})
            row[key] += 1
    return sorted(rooms.values(), key=lambda r: r["room"])


def record_view(rec: ShiftHandover, tz: ZoneInfo, lang: Lang) -> dict[str, Any]:
    """The people and times of a record (its facts: ``facts_view`` of ``rec.snapshot``)."""
    return {
        "id": rec.id,
        "title": shift_title(rec.shift_name_zh, rec.shift_name_en, rec.shift_start, rec.shift_end, tz, lang),
        "outgoing": rec.outgoing_name,
        "outgoing_id": rec.outgoing_id,
        "handed_over_at": i18n.format_time(rec.handed_over_at, tz, seconds=False),
        "notes": rec.notes,
        "incoming": rec.incoming_name or "",
        "incoming_note": rec.incoming_note or "",
        "signed": rec.signed_at is not None,
        "signed_at": i18n.format_time(rec.signed_at, tz, seconds=False) if rec.signed_at else "",
        "counts": dict((rec.snapshot or {}).get("counts") or {}),
    }
