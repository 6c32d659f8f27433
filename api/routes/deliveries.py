"""Notification deliveries (escalations, billing notices) of the caller's estates, and sending a failed one again.

Reads and the retry: ``notifications.queries`` / ``notifications.service``; who may see, whom they went to and who
may retry: ``notifications.policy`` (the pages ask it too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import ObjectId, PageDep
from api.pagination import page_out
from api.schemas import ESTATE_CODE, Output, Page
from core import clock
from core.errors import NotFound
from facility import queries as facility
from notifications import policy, queries, service
from storage.models import StaffUser
from web.deps import CurrentUser, SessionDep, VisibleEstates
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/notifications", tags=["operations"], responses=error_responses(401, 403, 404, 422))

DeliveryStatus = Literal["pending", "sent", "failed", "gave_up"]
ChannelName = Literal["log", "email", "wecom_robot"]


def _reader(user: CurrentUser) -> StaffUser:
    if not policy.may_read(user.role):
        raise Forbidden("your role may not see notification deliveries / 当前角色无权查看通知发送记录")
    return user


def _retrier(user: CurrentUser) -> StaffUser:
    if not policy.may_retry(user.role):
        raise Forbidden("your role may not retry deliveries / 当前角色无权重试发送")
    return user


Readers = Annotated[StaffUser, Depends(_reader)]
Retriers = Annotated[StaffUser, Depends(_retrier)]


class DeliveryOut(Output):
    id: int
    channel: ChannelName
    recipient: str = Field(description="masked (w***@example.com, 138****5678) for roles that do not manage staff")
    subject: str
    source: str = Field(description="ticket_escalation, billing_notice, ...")
    estate: str | None = Field(description="estate code (none: company-wide, head office only)")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _out(r: queries.DeliveryRow, role: str, codes: dict[int, str]) -> DeliveryOut:
    return DeliveryOut(
        id=r.id,
        channel=r.channel,  # type: ignore[arg-type]  # the table's check constraint keeps it one of these
        recipient=policy.shown_recipient(r.recipient, role),
        subject=r.subject,
        source=r.source,
        estate=codes.get(r.estate_id) if r.estate_id is not None else None,
        status=r.status,  # type: ignore[arg-type]
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        last_error=r.last_error,
        created_at=r.created_at,
        sent_at=r.sent_at,
    )


def _scope(
    session: Session, user: StaffUser, visible: set[int], estate: str | None
) -> tuple[list[int] | None, dict[int, str]]:
    codes = facility.estate_codes(session, visible)
    scope: list[int] | None = None if user.all_estates else list(codes)
    if estate is not None:
        scope = [i for i, code in codes.items() if code == estate][:1]
        if not scope:
            raise NotFound("estate not found / 未找到该小区")
    return scope, codes


@router.get("", response_model=Page[DeliveryOut])
def list_deliveries(
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    page: PageDep,
    estate: Annotated[str | None, Query(pattern=ESTATE_CODE, description="estate code")] = None,
    status: DeliveryStatus | None = None,
    channel: ChannelName | None = None,
    source: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> dict[str, Any]:
    """Deliveries of the caller's estates newest first: channel, recipient, subject, status, attempts, errors."""
    scope, codes = _scope(session, user, visible, estate)
    found = queries.deliveries_page(
        session, status=status, channel=channel, source=source, estate_ids=scope, limit=page.limit, offset=page.offset
    )
    return page_out(found, page, [_out(r, user.role, codes) for r in found.items])


@router.post("/{delivery_id}/retry", response_model=DeliveryOut, responses=error_responses(409))
def retry_delivery(delivery_id: ObjectId, session: SessionDep, user: Retriers, visible: VisibleEstates) -> DeliveryOut:
    """Send a failed or given-up delivery again at the dispatcher's next run (audited); others are 409."""
    exists, estate_id = queries.delivery_estate(session, delivery_id)
    # Company-wide deliveries are head office's; another estate's is a 404 like a missing one.
    if (
        not exists
        or (estate_id is None and not user.all_estates)
        or (estate_id is not None and estate_id not in visible)
    ):
        raise NotFound("delivery not found / 未找到该发送记录")
    service.retry_now(session, delivery_id, actor=user.username, now=clock.now())
    row = queries.delivery(session, delivery_id)
    assert row is not None  # locked and updated just now
    return _out(row, user.role, facility.estate_codes(session, visible))
