"""The alarm banner of every staff page (issue 15 §2): what it shows, and when it has changed.

The banner lists the viewer's unacknowledged alarms at or above their chosen severity (default 报警; stored per
account by ``alarms.banner_prefs``). It travels on the page's own live stream (dashboards/streaming.py adds it
to every snapshot whose banner ``mark`` moved); a page without a stream opens ``/live/alarm-banner``
(dashboards/alarm_banner.py). The page script (static/alarm-banner.js) swaps the fragment in, plays the sound
for an alarm it has not announced yet and, while a critical one stays unacknowledged, repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from alarms import policy
from alarms.alarm_state import BannerAlarm, Limit, banner_alarms, banner_mark, point_limits
from alarms.banner_prefs import BannerPrefs, banner_prefs
from alarms.const import SEVERITY_LABELS, Severity
from dashboards import i18n
from dashboards.alarm_state_view import SEVERITY_ICONS, limit_text
from dashboards.alarms_view import subject_label
from dashboards.i18n import Lang
from dashboards.render import render_fragment
from dashboards.viewer import Viewer

# The banner names this many alarms (worst and newest first) and links to the alarm list for the rest.
BANNER_SHOWN = 5


@dataclass(frozen=True, slots=True)
class BannerMark:
    """What the banner depends on: the alarms in it (count, newest id, Σ id × rank) and the viewer's settings."""

    alarms: tuple[int, int, int]
    prefs: BannerPrefs
    lang: str

    @property
    def key(self) -> str:
        return f"{self.alarms[0]}.{self.alarms[1]}.{self.alarms[2]}.{self.prefs.min_severity}.{int(self.prefs.muted)}"


def mark(session: Session, viewer: Viewer) -> BannerMark | None:
    """The banner's change mark; None for a role that does not see alarms (no banner at all)."""
    if not policy.may_read_alarms(viewer.role):
        return None
    prefs = banner_prefs(session, viewer.user_id)
    return BannerMark(banner_mark(session, viewer.visible, prefs.min_severity), prefs, viewer.lang)


def payload(session: Session, viewer: Viewer, m: BannerMark) -> dict[str, Any]:
    """The banner as the page script takes it: the fragment, the ids in it (those critical apart) and mute."""
    rows, total = banner_alarms(session, viewer.visible, m.prefs.min_severity, limit=BANNER_SHOWN)
    lang = viewer.lang
    limits = point_limits(
        session, {r.estate_id for r in rows}, device_ids=[r.device_id for r in rows if r.device_id is not None]
    )
    items = [_item(r, lang, limits.get(r.point_id) if r.point_id is not None else None) for r in rows]
    html = render_fragment(
        "_alarm_banner.html",
        lang,
        items=items,
        total=total,
        more=max(0, total - len(items)),
        worst=items[0]["severity"] if items else "ok",
        can_act=policy.may_handle_alarms(viewer.role),
        prefs=m.prefs,
    )
    return {
        "key": m.key,
        "html": html,
        "ids": [r.id for r in rows],
        "critical": [r.id for r in rows if r.severity == Severity.critical],
        "total": total,
        "muted": m.prefs.muted,
        "min_severity": m.prefs.min_severity,
    }


def _item(r: BannerAlarm, lang: Lang, limit: Limit | None) -> dict[str, Any]:
    tz = i18n.zone(r.estate_tz)
    where = []
    if r.room_code:
        where.append(i18n.room_title(r.room_name or "", r.room_kind or "", r.room_code, lang))
    if r.device_code:
        where.append(i18n.device_title(r.device_name or "", r.device_kind or "", r.device_code, lang))
    if r.metric:
        where.append(i18n.point_label(r.metric, r.point_label or "", lang))
    elif (named := subject_label(r.subject, r.detail, lang)) != r.subject:
        where.append(named)  # a door, a card, a multi-point check; never a raw "device:17"
    value = ""
    if r.last_value is not None and r.unit is not None:
        unit = i18n.unit_display(r.unit, lang)
        value = f"{i18n.format_value(r.last_value, r.unit, lang)}" + (f" {unit}" if unit else "")
        crossed = limit_text(limit, r.unit, lang)
        if crossed:
            value += f" {crossed}"
    return {
        "id": r.id,
        "severity": r.severity,
        "label": i18n.label(SEVERITY_LABELS, r.severity, lang),
        "icon": SEVERITY_ICONS.get(r.severity, "!"),
        "title": r.title_en if lang == "en" and r.title_en else r.title_zh,
        "where": " · ".join(w for w in where if w),
        "value": value,
        "raised": i18n.format_time(r.raised_at, tz, seconds=False),
        "room_id": r.room_id,
        "ticket_id": r.ticket_id,
        "ticket_number": r.ticket_number or "",
    }
