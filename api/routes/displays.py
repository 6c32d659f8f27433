"""Display tokens of the wall display (大屏): issued and revoked by the estate's project manager or an admin."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from accounts import display
from accounts import policy as accounts_policy
from accounts import service as accounts
from api.deps import EstateCode, ObjectId
from api.routes.estates import estate_or_404
from api.schemas import Input, Output
from storage.models import DisplayToken, StaffUser
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api", tags=["wall display"], responses=error_responses(401, 403, 404, 422))
DisplayAdmins = Annotated[StaffUser, Depends(require_roles(accounts_policy.DISPLAY_ADMINS))]


class DisplayTokenIn(Input):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00]*\S[^\x00]*$", description="e.g. 监控中心大屏")
    ttl_days: int = Field(default=365, ge=1, le=display.MAX_TTL.days)


class DisplayTokenOut(Output):
    id: int
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class DisplayTokenCreatedOut(DisplayTokenOut):
    token: str = Field(description="shown once: enter it on the screen at connect_url")
    connect_url: str


class DisplayTokenListOut(Output):
    estate_code: str
    items: list[DisplayTokenOut]


def _out(row: DisplayToken) -> DisplayTokenOut:
    return DisplayTokenOut.model_validate(row)


@router.get("/estates/{code}/display-tokens", response_model=DisplayTokenListOut)
def list_display_tokens(
    code: EstateCode, session: ReadSessionDep, user: DisplayAdmins, visible: VisibleEstates
) -> DisplayTokenListOut:
    """The estate's wall-display tokens, newest first (revoked and expired included)."""
    estate = estate_or_404(session, code, visible)
    return DisplayTokenListOut(estate_code=estate.code, items=[_out(t) for t in display.tokens_of(session, estate.id)])


@router.post(
    "/estates/{code}/display-tokens",
    response_model=DisplayTokenCreatedOut,
    status_code=201,
    responses=error_responses(400),
)
def create_display_token(
    code: EstateCode, body: DisplayTokenIn, session: SessionDep, user: DisplayAdmins, visible: VisibleEstates
) -> DisplayTokenCreatedOut:
    """A read-only token for one control-room screen of the estate (the secret is shown only here). Audited."""
    estate = estate_or_404(session, code, visible)
    secret, row = display.issue(
        session, estate, name=body.name, created_by=user.username, ttl=timedelta(days=body.ttl_days)
    )
    accounts.audit(session, user, "display_token.create", f"display_token:{row.id}", {"estate": estate.code})
    return DisplayTokenCreatedOut(
        **_out(row).model_dump(), token=secret, connect_url=f"/wall/connect?estate={estate.code}"
    )


@router.post("/display-tokens/{display_token_id}/revoke", response_model=DisplayTokenOut)
def revoke_display_token(
    display_token_id: ObjectId, session: SessionDep, user: DisplayAdmins, visible: VisibleEstates
) -> DisplayTokenOut:
    """Revoke a screen's token at once: its next page load or live update ends the display. Audited."""
    row = display.token_in(session, display_token_id, visible)
    display.revoke(session, row, user.username)
    accounts.audit(session, user, "display_token.revoke", f"display_token:{row.id}", {})
    return _out(row)
