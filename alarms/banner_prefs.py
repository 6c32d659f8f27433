"""Each staff member's alarm banner settings (issue 15 §2): the lowest severity that shows and sounds, and mute.

Stored per account (``staff_alarm_prefs``), not per browser, so the engineer who muted the control-room PC's
sound finds it muted on their phone too, and a new account starts at the default: 报警 and above, sound on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import Severity
from storage.models import StaffAlarmPrefs

DEFAULT_MIN_SEVERITY = Severity.alarm


@dataclass(frozen=True, slots=True)
class BannerPrefs:
    min_severity: str = str(DEFAULT_MIN_SEVERITY)
    muted: bool = False


def banner_prefs(session: Session, user_id: int) -> BannerPrefs:
    row = session.get(StaffAlarmPrefs, user_id, populate_existing=True)
    if row is None:
        return BannerPrefs()
    return BannerPrefs(min_severity=row.banner_min_severity, muted=row.muted)


def set_banner_prefs(
    session: Session, user_id: int, *, min_severity: str | None = None, muted: bool | None = None
) -> BannerPrefs:
    """Change what is given, keep the rest; raises ValueError on an unknown severity."""
    current = banner_prefs(session, user_id)
    new = BannerPrefs(
        min_severity=str(Severity(min_severity)) if min_severity is not None else current.min_severity,
        muted=current.muted if muted is None else muted,
    )
    stmt = insert(StaffAlarmPrefs).values(
        user_id=user_id, banner_min_severity=new.min_severity, muted=new.muted, updated_at=func.now()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[StaffAlarmPrefs.user_id],
            set_={"banner_min_severity": new.min_severity, "muted": new.muted, "updated_at": func.now()},
        )
    )
    return new


__all__ = ["DEFAULT_MIN_SEVERITY", "BannerPrefs", "banner_prefs", "set_banner_prefs"]
