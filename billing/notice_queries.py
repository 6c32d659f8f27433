"""Reads of the notice queue for the JSON API and the pages (typed rows; scoped to the caller's estates)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.const import NoticeStatus
from storage.models import BillingAccount, BillingNotice, Building, Estate, Unit

MAX_ROWS = 500


@dataclass(frozen=True, slots=True)
class NoticeRow:
    id: int
    estate_id: int
    estate_code: str
    estate_timezone: str
    account_id: int
    building_code: str
    unit_code: str
    kind: str
    number: str
    status: str
    balance_fen: int
    pay_by: date | None
    effective_at: datetime | None
    executed_at: datetime | None
    template_version: str
    subject: str
    body: str
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    sent_by: str | None
    sent_at: datetime | None


_COLUMNS = (
    BillingNotice.id,
    BillingNotice.estate_id,
    Estate.code,
    Estate.timezone,
    BillingNotice.account_id,
    Building.code,
    Unit.code,
    BillingNotice.kind,
    BillingNotice.number,
    BillingNotice.status,
    BillingNotice.balance_fen,
    BillingNotice.pay_by,
    BillingNotice.effective_at,
    BillingNotice.executed_at,
    BillingNotice.template_version,
    BillingNotice.subject,
    BillingNotice.body,
    BillingNotice.created_by,
    BillingNotice.created_at,
    BillingNotice.approved_by,
    BillingNotice.approved_at,
    BillingNotice.sent_by,
    BillingNotice.sent_at,
)


def queue(
    session: Session,
    estate_ids: Collection[int] | None,
    *,
    statuses: Collection[NoticeStatus] | None = None,
    ids: Collection[int] | None = None,
    account_id: int | None = None,
    limit: int = MAX_ROWS,
) -> list[NoticeRow]:
    """Notices of the given estates (None: every estate), newest first; optionally only some statuses, ids or
    one household's account."""
    stmt = (
        select(*_COLUMNS)
        .join(Estate, Estate.id == BillingNotice.estate_id)
        .join(BillingAccount, BillingAccount.id == BillingNotice.account_id)
        .join(Unit, Unit.id == BillingAccount.unit_id)
        .join(Building, Building.id == Unit.building_id)
    )
    if estate_ids is not None:
        stmt = stmt.where(BillingNotice.estate_id.in_(list(estate_ids)))
    if statuses:
        stmt = stmt.where(BillingNotice.status.in_([s.value for s in statuses]))
    if ids is not None:
        stmt = stmt.where(BillingNotice.id.in_(list(ids)))
    if account_id is not None:
        stmt = stmt.where(BillingNotice.account_id == account_id)
    stmt = stmt.order_by(BillingNotice.created_at.desc(), BillingNotice.id.desc()).limit(limit)
    return [NoticeRow(*r) for r in session.execute(stmt).all()]  # type: ignore[call-arg]


def notice(session: Session, notice_id: int, estate_ids: Collection[int] | None) -> NoticeRow | None:
    """One notice if it exists within the caller's estates (else None: the same answer as a missing one)."""
    rows = queue(session, estate_ids, ids=[notice_id], limit=1)
    return rows[0] if rows else None
