"""What the alarm list shows, shaped as plain dicts for the template and the live stream (reads: alarms.queries)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from alarms.const import SEVERITY_LABELS, SEVERITY_RANK, alarm_state_label
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
    return {
        "alarms": items,
        "groups": group_alarms(items, lang),
        "total": total,
        "shown": len(items),
        "now": i18n.format_time(clock.now(), tz, date=False),
    }


# How a group of alarms reads as one: the worst state of its members (someone must still acknowledge one).
_STATE_ORDER = {"active": 0, "acknowledged": 1, "cleared": 2}


def group_alarms(items: list[dict[str, Any]], lang: Lang) -> list[dict[str, Any]]:
    """One card per device and ticket (issue 15 §8: the three phases of one transformer were three cards while
    their ticket is one): alarms of the same device attached to the same ticket share a card listing each point.
    An alarm with no device or no ticket is a card of its own. Cards keep the list's order (the group stands where
    its first, most severe or newest, member stood)."""
    groups: list[dict[str, Any]] = []
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for a in items:
        key: tuple[Any, ...] = (
            (a["estate"], a["device_code"], a["ticket_id"]) if a["device_code"] and a["ticket_id"] else ("id", a["id"])
        )
        group = by_key.get(key)
        if group is None:
            group = {"id": a["id"], "points": []}
            by_key[key] = group
            groups.append(group)
        group["points"].append(a)
    for g in groups:
        points = g["points"]
        first = points[0]
        worst = max(points, key=lambda a: SEVERITY_RANK.get(a["severity"], 0))
        state = min(points, key=lambda a: _STATE_ORDER.get(a["state"], 0))
        g.update(
            {
                "estate": first["estate"],
                "severity": worst["severity"],
                "severity_label": worst["severity_label"],
                "state": state["state"],
                "state_label": state["state_label"],
                # One alarm keeps its rule's title; several are named for their device ("1号变压器 · 3 条报警").
                "title": first["title"]
                if len(points) == 1
                else i18n.t("alarm_group_title", lang, device=first["device"], n=len(points)),
                "raised": min(a["raised"] for a in points),
                "room_id": first["room_id"],
                "room_code": first["room_code"],
                "unit_code": first["unit_code"],
                "device": first["device"],
                "device_code": first["device_code"],
                "ticket_id": first["ticket_id"],
                "ticket_number": first["ticket_number"],
                "ids": " ".join(str(a["id"]) for a in points),
            }
        )
    return groups


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
