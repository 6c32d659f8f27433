"""Device commands (the outbox) of the caller's estates with their delivery status, and why each was queued.

Reads: ``storage.outbox_reads``; who may read and which commands: ``alarms.policy`` (the pages ask it too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from alarms import policy
from api.deps import PageDep
from api.pagination import page_out
from api.schemas import ESTATE_CODE, NO_NUL, Output, Page
from core.errors import NotFound
from facility import queries as facility
from storage import outbox_reads
from storage.models import StaffUser
from web.deps import CurrentUser, VisibleEstates
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api/commands", tags=["operations"], responses=error_responses(401, 403, 404, 422))

CommandStatus = Literal["pending", "sent", "acknowledged", "refused", "expired", "failed"]
Origin = Literal["alarm", "billing", "other"]


def command_reader(user: CurrentUser) -> StaffUser:
    if not policy.may_read_commands(user.role):
        raise Forbidden("your role may not see device commands / 当前角色无权查看设备指令")
    return user


Readers = Annotated[StaffUser, Depends(command_reader)]


class CommandOut(Output):
    id: int
    estate: str | None = Field(description="estate code (none: a command to no known device, head office only)")
    device: str | None = Field(description="device code")
    command: str = Field(description="the downlink command: valve, acl, ...")
    action: str | None = Field(description="e.g. close / open for a valve")
    status: CommandStatus
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    expires_at: datetime | None
    expired_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    origin: Origin = Field(description="alarm (a ticket's valve closure), billing (supply change) or other")
    reason: str | None = Field(description="the payload's reason, e.g. billing_restriction, vacant_flow")
    ticket_id: int | None
    ticket_number: str | None
    account_id: int | None = Field(description="the household account whose supply change queued it")
    alarm_id: int | None = Field(description="the 'command not acknowledged' alarm it raised")


@router.get("", response_model=Page[CommandOut])
def list_commands(
    session: ReadSessionDep,
    user: Readers,
    visible: VisibleEstates,
    page: PageDep,
    estate: Annotated[str | None, Query(pattern=ESTATE_CODE, description="estate code")] = None,
    status: CommandStatus | None = None,
    device: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL, description="device code")] = None,
    command: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="valve, acl, ...")] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$", description="close, open, ...")] = None,
    origin: Origin | None = None,
) -> dict[str, Any]:
    """Commands of the caller's estates newest first, with status, attempts, times, last error and origin links."""
    codes = facility.estate_codes(session, visible)
    scope: list[int] | None = None if user.all_estates else list(codes)
    if estate is not None:
        scope = [i for i, code in codes.items() if code == estate][:1]
        if not scope:
            raise NotFound("estate not found / 未找到该小区")
    allowed = policy.command_origins(user.role)
    origins: set[str] | None = set(allowed) if allowed is not None else None
    if origin is not None:
        origins = {str(origin)} & origins if origins is not None else {str(origin)}
    found = outbox_reads.commands_page(
        session,
        estate_ids=scope,
        status=status,
        device_code=device,
        command=command,
        action=action,
        origins=origins,
        limit=page.limit,
        offset=page.offset,
    )
    items = [
        CommandOut.model_validate(
            {
                **_fields(r),
                "estate": codes.get(r.estate_id) if r.estate_id is not None else None,
                "device": r.device_code,
            }
        )
        for r in found.items
    ]
    return page_out(found, page, items)


def _fields(r: outbox_reads.CommandRow) -> dict[str, Any]:
    keys = CommandOut.model_fields.keys() - {"estate", "device"}
    return {k: getattr(r, k) for k in keys}
