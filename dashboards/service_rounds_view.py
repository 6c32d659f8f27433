"""What the customer-service round pages show, shaped as plain dicts for the templates (reads:
alarms.service_rounds_queries)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.service_round_defaults import KIND_LABELS
from alarms.service_rounds import ROUND_STATUS_LABELS as SERVICE_STATUS_LABELS
from alarms.service_rounds import TASK_STATUS_LABELS
from alarms.service_rounds_queries import (
    TaskRow,
    round_tasks,
    service_rounds_between,
    service_schedules,
)
from core import clock
from dashboards import i18n
from dashboards.i18n import Lang, label
from dashboards.rounds_view import ROUND_CSS
from storage.models import Estate

# The calendar shows this many weeks back (a quarterly round shows whenever its quarter overlaps them).
CALENDAR_SPAN = timedelta(weeks=6)
MAX_ROUNDS = 500


def _cadence(interval_minutes: int, calendar: str | None, lang: Lang) -> str:
    if calendar == "quarter":
        return i18n.t("csr_every_quarter", lang)
    if interval_minutes == 7 * 24 * 60:
        return i18n.t("csr_every_week", lang)
    if interval_minutes == 7 * 24 * 60 // 2:
        return i18n.t("csr_twice_weekly", lang)
    return i18n.t("every_n", lang, span=f"{interval_minutes} min")


def _window_label(start: datetime, end: datetime, calendar: str | None, tz: ZoneInfo) -> tuple[str, str]:
    """(cell text, full window) in the estate's zone; the end shown is the window's last day."""
    s, e = start.astimezone(tz), end.astimezone(tz)
    if calendar == "quarter":
        return f"{s.year} Q{(s.month - 1) // 3 + 1}", f"{s:%Y-%m-%d} – {(e - timedelta(seconds=1)):%Y-%m-%d}"
    if e - s < timedelta(days=7):
        return f"{s:%m-%d %H:%M}", f"{s:%m-%d %H:%M} – {e:%m-%d %H:%M}"
    return f"{s:%m-%d}", f"{s:%Y-%m-%d} – {(e - timedelta(seconds=1)):%m-%d}"


def task_view(row: TaskRow, lang: Lang, tz: ZoneInfo) -> dict[str, Any]:
    """One task as the task page and the round detail show it."""
    place = row.unit_code or f"{row.building_name or ''} ({row.building_code or ''})".strip()
    kind = label(KIND_LABELS, row.kind, lang)
    end = row.window_end.astimezone(tz)
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_label": kind,
        "round_name": row.schedule_name_en if lang == "en" and row.schedule_name_en else row.schedule_name_zh,
        "place": place,
        "estate": row.estate_name,
        "estate_code": row.estate_code,
        "status": row.status,
        "status_label": label(TASK_STATUS_LABELS, row.status, lang),
        "due": f"{end:%m-%d %H:%M}",
        "overdue": row.round_status == "missed" or row.window_end <= clock.now(),
        "round_status": row.round_status,
        "performed_at": i18n.format_time(row.performed_at, tz, seconds=False) if row.performed_at else "",
        "performed_by": row.performed_by or "",
        "outcome": row.outcome,
        "notes": row.notes or "",
        "ticket_id": row.ticket_id,
        "ticket_number": row.ticket_number or "",
        "unit": bool(row.unit_code),
    }


def service_calendar(
    session: Session, estate: Estate, lang: Lang, tz: ZoneInfo, *, selected: int | None
) -> dict[str, Any]:
    """The estate's service schedules, each with its rounds of the last weeks as cells coloured by status."""
    now = clock.now()
    schedules = service_schedules(session, estate.id)
    rounds = service_rounds_between(session, estate.id, now - CALENDAR_SPAN, now, limit=MAX_ROUNDS)
    calendars = {s.id: s.calendar for s in schedules}
    by_schedule: dict[int, list[dict[str, Any]]] = {s.id: [] for s in schedules}
    chosen = None
    for r in rounds:
        text_, window = _window_label(r.window_start, r.window_end, calendars.get(r.schedule_id), tz)
        status_label = label(SERVICE_STATUS_LABELS, r.status, lang)
        if r.satisfied_by == "no_tasks":
            status_label = i18n.t("csr_no_tasks", lang)
        cell = {
            "id": r.id,
            "status": r.status,
            "css": ROUND_CSS.get(r.status, "grey"),
            "text": text_,
            "window": window,
            "status_label": status_label,
            "progress": f"{r.done + r.skipped}/{r.tasks}",
            "tasks": r.tasks,
            "done": r.done,
            "skipped": r.skipped,
            "pending": r.pending,
            "findings": r.findings,
            "tooltip": f"{window} {status_label} {r.done + r.skipped}/{r.tasks}",
        }
        if r.schedule_id in by_schedule:
            by_schedule[r.schedule_id].append(cell)
        if r.id == selected:
            cell["task_list"] = [task_view(t, lang, tz) for t in round_tasks(session, r.id)]
            chosen = cell
    rows = [
        {
            "id": s.id,
            "kind": s.kind,
            "name": s.name_en if lang == "en" and s.name_en else s.name_zh,
            "every": _cadence(s.interval_minutes, s.calendar, lang),
            "role": i18n.role_label(s.role, lang) if s.role else "",
            "cells": by_schedule[s.id],
        }
        for s in schedules
    ]
    counts: dict[str, int] = {}
    for r in rounds:
        counts[r.status] = counts.get(r.status, 0) + 1
    legend = [
        {"status": k, "css": ROUND_CSS[k], "label": label(SERVICE_STATUS_LABELS, k, lang), "n": counts.get(k, 0)}
        for k in ("done", "open", "missed")
    ]
    return {"schedules": rows, "selected": chosen, "legend": legend}
