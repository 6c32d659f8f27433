"""What the alarm list shows, shaped as plain dicts for the template and the live stream (reads: alarms.queries)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.const import SEVERITY_LABELS, alarm_state_label
from alarms.multipoint import CHECK_LABELS
from alarms.queries import query_alarms, room_ids
from alarms.service_round_defaults import KIND_LABELS as SERVICE_KIND_LABELS
from core import clock
from dashboards import i18n
from dashboards.i18n import Lang, fmt_value, label

ALARMS_SHOWN = 200


def alarm_list(
    session: Session,
    visible: AbstractSet[int],
    lang: Lang,
    tz: ZoneInfo,
    *,
    estate: str | None,
    state: str,
    severity: str | None,
) -> dict[str, Any]:
    rows, total = query_alarms(
        session,
        set(visible),
        estate=estate,
        state="open" if state == "open" else None,
        severity=severity,
        limit=ALARMS_SHOWN,
    )
    rooms = room_ids(session, visible)
    items = []
    for r in rows:
        metric = r.metric or ""
        items.append(
            {
                "id": r.id,
                "estate": r.estate_code,
                "title": r.title_en if lang == "en" else r.title_zh,
                "severity": r.severity,
                "severity_label": label(SEVERITY_LABELS, r.severity, lang),
                "state": r.state,
                "state_label": i18n.pick(alarm_state_label(r.state, r.clear_reason), lang),
                "raised": i18n.format_time(r.raised_at, tz, seconds=False),
                "device": i18n.device_title(r.device_name or "", "", r.device_code or "", lang)
                if r.device_code
                else "",
                "device_code": r.device_code or "",
                "room_code": r.room_code or "",
                "room_id": rooms.get((r.estate_code, r.room_code or "")),
                "unit_code": r.unit_code or "",
                "metric": i18n.point_label(metric, "", lang) if metric else subject_label(r.subject, r.detail, lang),
                "peak": fmt_value(r.peak),
                "last": fmt_value(r.last_value),
                "ticket_id": r.ticket_id,
                "ticket_number": r.ticket_number or "",
                "acknowledged_by": r.acknowledged_by or "",
                "cleared": i18n.format_time(r.cleared_at, tz, seconds=False) if r.cleared_at else "",
                "clear_note": r.clear_note or "",
            }
        )
    return {"alarms": items, "total": total, "shown": len(items), "now": i18n.format_time(clock.now(), tz, date=False)}


def subject_label(subject: str, detail: Mapping[str, Any] | None, lang: Lang) -> str:
    """An alarm without a point, named for people: the door or the (masked) card of an access alarm.

    The access evaluator keeps the door and the masked UID in `detail`, so the page never shows the
    ``door:<controller id>:<door>`` / ``card:<id>`` keys; other subjects are shown as they are.
    """
    detail = detail or {}
    kind = subject.split(":", 1)[0]
    if kind == "card" and detail.get("card"):
        text = i18n.t("alarm_subject_card", lang, card=detail["card"])
        return f"{text} · {i18n.t('alarm_subject_door', lang, door=detail['door'])}" if detail.get("door") else text
    if kind == "door" and detail.get("door"):
        return i18n.t("alarm_subject_door", lang, door=detail["door"])
    if kind == "device" and detail.get("check") in CHECK_LABELS:
        return label(CHECK_LABELS, detail["check"], lang)  # a multi-point alarm: what it weighs
    if kind == "round" and detail.get("kind") in SERVICE_KIND_LABELS:  # a missed customer-service round
        return i18n.t("csr_alarm_subject", lang, what=label(SERVICE_KIND_LABELS, detail["kind"], lang))
    return subject
