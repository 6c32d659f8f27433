"""The hot-water notice queue: list, read, approve, send, cancel (permissions from billing.policy)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from api.deps import ObjectId
from api.schemas import NO_NUL, Input, Output
from billing import notice_queries, notices
from billing.const import NoticeStatus
from billing.policy import Action, may
from core.errors import Forbidden, NotFound
from storage.models import StaffUser
from web.deps import CurrentUser, SessionDep, VisibleEstates
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/billing", tags=["billing notices"], responses=error_responses(401, 403, 404, 422))


def _allowed(action: Action) -> Callable[[StaffUser], StaffUser]:
    def check(user: CurrentUser) -> StaffUser:
        if not may(user.role, action):
            raise Forbidden("your role may not do this / 当前角色无此权限")
        return user

    return check


Readers = Annotated[StaffUser, Depends(_allowed(Action.view_notices))]
Approvers = Annotated[StaffUser, Depends(_allowed(Action.approve_notices))]


class NoticeOut(Output):
    id: int
    estate_code: str
    account_id: int
    building_code: str
    unit_code: str
    kind: str = Field(description="renewal | renewal_second | restriction | suspension | restoration")
    number: str = Field(description="per estate and year, e.g. RS-2026-000123")
    status: str = Field(description="draft | approved | sent | cancelled")
    balance_fen: int = Field(description="balance when drafted, integer fen")
    pay_by: date | None
    effective_at: datetime | None = Field(description="the date a restriction or suspension notice states")
    executed_at: datetime | None
    template_version: str
    subject: str
    body: str = Field(description="the text as rendered and sent (plain text, 简体中文)")
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    sent_by: str | None
    sent_at: datetime | None


class CancelIn(Input):
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=NO_NUL)]


def _one(session: SessionDep, notice_id: int, visible: set[int]) -> notice_queries.NoticeRow:
    row = notice_queries.notice(session, notice_id, visible)
    if row is None:
        raise NotFound("notice not found / 通知不存在")
    return row


@router.get("/notices", response_model=list[NoticeOut])
def list_notices(
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    status: Annotated[list[NoticeStatus] | None, Query(description="only these statuses")] = None,
) -> list[notice_queries.NoticeRow]:
    """The notice queue of the caller's estates, newest first (at most 500)."""
    return notice_queries.queue(session, visible, statuses=status)


@router.get("/notices/{notice_id}", response_model=NoticeOut)
def get_notice(session: ReadSessionDep, user: Readers, visible: VisibleEstates, notice_id: ObjectId) -> object:
    """One notice with its rendered text."""
    return _one(session, notice_id, visible)


@router.post("/notices/{notice_id}/approve", response_model=NoticeOut, responses=error_responses(409))
def approve_notice(session: SessionDep, user: Approvers, visible: VisibleEstates, notice_id: ObjectId) -> object:
    """Approve a draft notice for sending."""
    _one(session, notice_id, visible)
    notices.approve(session, notice_id, actor=user.username)
    return _one(session, notice_id, visible)


@router.post("/notices/{notice_id}/send", response_model=NoticeOut, responses=error_responses(409))
def send_notice(session: SessionDep, user: Approvers, visible: VisibleEstates, notice_id: ObjectId) -> object:
    """Send an approved notice (a restriction or suspension notice only while its stated date is far enough)."""
    _one(session, notice_id, visible)
    notices.send(session, notice_id, actor=user.username)
    return _one(session, notice_id, visible)


@router.post(
    "/notices/{notice_id}/cancel",
    response_model=NoticeOut,
    responses=error_responses(400, 409),  # 400: not JSON
)
def cancel_notice(
    session: SessionDep, user: Approvers, visible: VisibleEstates, notice_id: ObjectId, payload: CancelIn
) -> object:
    """Withdraw a notice not yet sent, with a reason."""
    _one(session, notice_id, visible)
    notices.cancel(session, notice_id, actor=user.username, reason=payload.reason)
    return _one(session, notice_id, visible)
