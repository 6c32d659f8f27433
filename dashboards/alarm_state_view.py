"""Alarm state as the equipment pages show it (issue 15 §1): a badge per point, device, room and estate, and the
limit beside a value in alarm. Reads are ``alarms.alarm_state``'s; this only shapes them.

A badge is a plain dict (the first render and every live update share it, see rooms_view): its severity drives
the CSS class ``sev-<severity>`` and ``data-severity`` on the element that carries it (``sev-ok`` without one).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from alarms.alarm_state import Limit, OpenAlarms
from alarms.const import SEVERITY_LABELS
from dashboards import i18n
from dashboards.i18n import Lang

# Shapes that differ as well as colours (colour-blind staff, a monochrome wall screen): ▲ 预警, ◆ 报警, ✖ critical.
SEVERITY_ICONS = {"warning": "▲", "alarm": "◆", "critical": "✖"}


def badge(state: OpenAlarms | None, lang: Lang, tz: ZoneInfo) -> dict[str, Any] | None:
    """What a point, device, room or estate shows of its open alarms; None: nothing open."""
    if state is None:
        return None
    sev_label = i18n.label(SEVERITY_LABELS, state.severity, lang)
    oldest = ""
    if state.oldest_at is not None:
        title = state.oldest_title_en if lang == "en" and state.oldest_title_en else state.oldest_title_zh
        oldest = i18n.t(
            "alarm_oldest", lang, time=i18n.format_time(state.oldest_at, tz, seconds=False, date=False), title=title
        )
    unacked = (
        i18n.t("alarm_unacked_n", lang, n=state.unacknowledged)
        if state.unacknowledged
        else i18n.t("alarm_all_acked", lang)
    )
    return {
        "severity": state.severity,
        "label": sev_label,
        "icon": SEVERITY_ICONS.get(state.severity, "!"),
        "count": state.count,
        "unacked": state.unacknowledged,
        "summary": i18n.t("alarm_open_n", lang, label=sev_label, n=state.count),
        "unacked_text": unacked,
        "oldest": oldest,
        "oldest_id": state.oldest_id,
    }


def limit_text(limit: Limit | None, unit: str, lang: Lang) -> str:
    """ "≥ 150.0 °C": the level the value crossed, in the value's unit and decimals; "" when not in alarm."""
    if limit is None:
        return ""
    shown = i18n.unit_display(unit, lang)
    return f"{limit.op} {i18n.format_value(limit.level, unit, lang)}" + (f" {shown}" if shown else "")


def severity_of(b: dict[str, Any] | None) -> str:
    return "ok" if b is None else str(b["severity"])
