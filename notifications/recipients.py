"""Who on the staff hears of something: e-mail addresses by role and estate (escalations, billing notices)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.models import StaffEstate, StaffUser


def staff_emails(session: Session, estate_id: int, roles: Collection[str]) -> list[str]:
    """E-mail addresses of active staff of `roles` who see `estate_id` (scoped to it, or head office)."""
    on_estate = select(StaffEstate.user_id).where(StaffEstate.estate_id == estate_id)
    rows = session.scalars(
        select(StaffUser.email)
        .where(
            StaffUser.active.is_(True),
            StaffUser.role.in_(list(roles)),
            StaffUser.email.is_not(None),
            StaffUser.email != "",
            or_(StaffUser.all_estates.is_(True), StaffUser.id.in_(on_estate)),
        )
        .order_by(StaffUser.id)
    )
    return sorted({str(e).strip() for e in rows if e and "@" in e})
