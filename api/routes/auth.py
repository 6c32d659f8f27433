"""Login (session cookie for browsers), logout, who am I, bearer tokens, staff accounts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import func, select

from accounts import policy
from accounts import service as accounts
from accounts.const import SESSION_TTL, Role
from api.deps import SESSION_COOKIE, CurrentUser, PageDep, SessionDep, require_roles
from api.errors import error_responses
from api.schemas import LoginIn, Page, TokenIn, TokenOut, UserIn, UserOut
from storage.models import StaffUser

router = APIRouter(tags=["auth"])
Admin = Annotated[StaffUser, Depends(require_roles(policy.USER_ADMINS))]
TokenMakers = Annotated[StaffUser, Depends(require_roles(policy.TOKEN_MAKERS))]


@router.post("/api/auth/login", response_model=UserOut, responses=error_responses(400, 401, 422, 429))
def login(body: LoginIn, request: Request, response: Response, session: SessionDep) -> StaffUser:
    """Log in with username and password; sets the session cookie."""
    client = request.client.host if request.client else ""
    try:
        user = accounts.authenticate(session, body.username, body.password, client=client)
    except accounts.LoginFailed:
        session.commit()  # the failure feeds the rate limit: it must outlive this failed request
        raise
    secret = accounts.start_web_session(session, user)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    accounts.audit(session, user, "login", f"user:{user.id}", {"client": client})
    return user


@router.post("/api/auth/logout", status_code=204, responses=error_responses(401))
def logout(request: Request, response: Response, session: SessionDep, user: CurrentUser) -> None:
    """End the browser session."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        accounts.end_web_session(session, cookie)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/api/auth/me", response_model=UserOut, responses=error_responses(401))
def me(user: CurrentUser) -> StaffUser:
    """The logged-in staff member."""
    return user


@router.post(
    "/api/auth/tokens", response_model=TokenOut, status_code=201, responses=error_responses(400, 401, 403, 422)
)
def create_token(body: TokenIn, session: SessionDep, user: TokenMakers) -> TokenOut:
    """Create a bearer token for an integration (shown once)."""
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    token = accounts.create_token(session, user, body.name, ttl=ttl)
    accounts.audit(session, user, "token.create", f"user:{user.id}", {"name": body.name})
    return TokenOut(token=token, name=body.name)


@router.get("/api/users", response_model=Page[UserOut], responses=error_responses(401, 403, 422))
def list_users(session: SessionDep, user: Admin, page: PageDep) -> dict[str, Any]:
    """Staff accounts (administrators only; a scoped administrator sees the accounts of its estates)."""
    visible = policy.users_visible_to(user)
    total = session.scalar(select(func.count()).select_from(StaffUser).where(visible)) or 0
    items = session.scalars(
        select(StaffUser).where(visible).order_by(StaffUser.id).limit(page.limit).offset(page.offset)
    ).all()
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


@router.post("/api/users", response_model=UserOut, status_code=201, responses=error_responses(400, 401, 403, 409, 422))
def create_user(body: UserIn, session: SessionDep, user: Admin) -> StaffUser:
    """Create a staff account scoped to estates (administrators only, never beyond their own role and estates)."""
    policy.check_grant(session, user, role=Role(body.role), estates=body.estates, all_estates=body.all_estates)
    created = accounts.create_user(
        session,
        username=body.username,
        password=body.password,
        role=Role(body.role),
        display_name=body.display_name,
        estates=body.estates,
        all_estates=body.all_estates,
    )
    accounts.audit(session, user, "user.create", f"user:{created.id}", {"role": body.role})
    return created
