"""What the inspection calendar shows, shaped as plain dicts for the template (reads: alarms.rounds_queries)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.rounds import STATUS_LABELS as ROUND_STATUS_LABELS
from alarms.rounds_queries import room_rounds, schedule_windows
from core import clock
from dashboards import i18n
from dashboards.i18n import Lang, fmt_value, label
from storage.models import Room

ROUND_SPAN = timedelta(days=2)
ROUND_CSS = {
    "satisfied": "ok",
    "done": "done",
    "manual_due": "warn",
    "missed": "bad",
    "open": "grey",
    "untracked": "none",
}
# A window of the last two days the worker made no round of: it only starts a schedule's rounds when it first
# watches it (alarms/rounds.py), so a fresh system's calendar is mostly these, and says so.
UNTRACKED = ("无记录", "Not tracked")
UNTRACKED_HINT = ("系统当时尚未跟踪此巡检计划", "The schedule was not yet tracked then")


def _untracked_cell(start: datetime, end: datetime, lang: Lang) -> dict[str, Any]:
    status_label = i18n.pick(UNTRACKED, lang)
    return {
        "id": None,
        "status": "untracked",
        "css": ROUND_CSS["untracked"],
        "status_label": status_label,
        "window": f"{start:%m-%d %H:%M}–{end:%H:%M}",
        "day": f"{start:%m-%d}",
        "hour": f"{start:%H:%M}",
        "start": start,
        "tooltip": f"{start:%m-%d %H:%M}–{end:%H:%M} {status_label}\n{i18n.pick(UNTRACKED_HINT, lang)}",
    }


def _evidence_lines(evidence: Mapping[str, Any], points: Mapping[int, tuple[str, str, str]], lang: Lang) -> list[str]:
    out = []
    for pid, ev in sorted((evidence.get("points") or {}).items(), key=lambda kv: str(kv[0])):
        try:
            metric, plabel, unit = points[int(pid)]
        except (KeyError, ValueError):
            metric, plabel, unit = str(pid), "", ""
        name = i18n.point_label(metric, plabel, lang)
        if isinstance(ev, Mapping) and ev.get("reason"):
            reason = i18n.lookup(i18n.STRINGS, f"ev_{ev['reason']}", lang, fallback=str(ev["reason"]))
            value = f" {fmt_value(ev['value'])}{unit}" if isinstance(ev.get("value"), int | float) else ""
            out.append(f"✗ {name}{value}: {reason}")
        elif isinstance(ev, Mapping):
            value = fmt_value(ev["value"]) if isinstance(ev.get("value"), int | float) else "—"
            out.append(f"✓ {name} {value}{unit}")
    return out


def _interval(minutes: int, lang: Lang) -> str:
    """A schedule's cadence as the SOP says it: 2 小时, 4 天, 90 分钟."""
    for size, zh, en in ((1440, "天", "days"), (60, "小时", "h"), (1, "分钟", "min")):
        if minutes % size == 0:
            n = minutes // size
            return f"{n} {en}" if lang == "en" else f"{n} {zh}"
    return f"{minutes} min"


def rounds_calendar(session: Session, room: Room, lang: Lang, tz: ZoneInfo, *, selected: int | None) -> dict[str, Any]:
    """The room's schedules, each with its windows of the last two days as cells coloured by status."""
    now = clock.now()
    found = room_rounds(session, room.id, now - ROUND_SPAN)
    schedules, rounds, points = found.schedules, found.rounds, found.points
    tickets, names = found.ticket_numbers, found.performer_names
    by_schedule: dict[int, list[dict[str, Any]]] = {s.id: [] for s in schedules}
    chosen = None
    for r in rounds:
        evidence = r.evidence or {}
        status_label = label(ROUND_STATUS_LABELS, r.status, lang)
        start = r.window_start.astimezone(tz)
        end = r.window_end.astimezone(tz)
        lines = _evidence_lines(evidence, points, lang)
        if r.status == "done":
            lines.insert(0, i18n.t("done_by", lang, who=names.get(r.performed_by or "", r.performed_by or "")))
        summary = ""
        if "required" in evidence:
            summary = i18n.t("evidence_ok", lang, ok=evidence.get("ok", 0), n=evidence["required"])
        cell = {
            "id": r.id,
            "status": r.status,
            "css": ROUND_CSS.get(r.status, "grey"),
            "status_label": status_label,
            "window": f"{start:%m-%d %H:%M}–{end:%H:%M}",
            "day": f"{start:%m-%d}",
            "hour": f"{start:%H:%M}",
            "start": start,
            "summary": summary,
            "tooltip": "\n".join([f"{start:%m-%d %H:%M}–{end:%H:%M} {status_label}", summary, *lines[:12]]).strip(),
            "lines": lines,
            "ticket_id": r.ticket_id,
            "ticket_number": tickets.get(r.ticket_id, "") if r.ticket_id else "",
            "performed_by": names.get(r.performed_by or "", r.performed_by or ""),
            "performed_at": i18n.format_time(r.performed_at, tz, seconds=False) if r.performed_at else "",
            "readings": r.readings or {},
            "notes": r.notes or "",
            "recordable": r.status in ("open", "manual_due", "missed"),
        }
        if r.schedule_id in by_schedule:
            by_schedule[r.schedule_id].append(cell)
        if r.id == selected:
            chosen = cell
    # Every window of the span gets a cell, a round's or an untracked one, so 近 2 天 shows two days.
    for s in schedules:
        have = {c["start"] for c in by_schedule[s.id]}
        for start, end in schedule_windows(s, now - ROUND_SPAN, now):
            if start.astimezone(tz) not in have:
                by_schedule[s.id].append(_untracked_cell(start.astimezone(tz), end.astimezone(tz), lang))
        by_schedule[s.id].sort(key=lambda c: c["start"])
    rows = [
        {
            "id": s.id,
            "name": s.name_en if lang == "en" and s.name_en else s.name_zh,
            "every": i18n.t("every_n", lang, span=_interval(s.interval_minutes, lang)),
            "cells": by_schedule[s.id],
        }
        for s in schedules
    ]
    counts: dict[str, int] = {}
    for cells in by_schedule.values():
        for c in cells:
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    legend = [
        {"status": k, "css": ROUND_CSS[k], "label": label(ROUND_STATUS_LABELS, k, lang), "n": counts.get(k, 0)}
        for k in ("satisfied", "done", "manual_due", "missed", "open")
    ]
    if counts.get("untracked"):
        legend.append(
            {"status": "untracked", "css": "none", "label": i18n.pick(UNTRACKED, lang), "n": counts["untracked"]}
        )
    return {"schedules": rows, "selected": chosen, "legend": legend}
