"""Login (session cookie for browsers), logout, who am I, bearer tokens, staff accounts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from accounts import policy, queries
from accounts import service as accounts
from accounts.const import Role
from api.deps import ObjectId, PageDep
from api.pagination import page_out
from api.schemas import LoginIn, Page, PasswordChangeIn, TokenIn, TokenInfoOut, TokenOut, UserIn, UserOut
from core.errors import NotFound
from storage.models import ApiToken, StaffUser
from web.cookies import SESSION_COOKIE, clear_session_cookie, is_production, set_session_cookie
from web.deps import CurrentUser, SessionDep, require_roles
from web.errors import error_responses

router = APIRouter(tags=["auth"])


Admin = Annotated[StaffUser, Depends(require_roles(policy.USER_ADMINS))]
TokenMakers = Annotated[StaffUser, Depends(require_roles(policy.TOKEN_MAKERS))]


@router.post("/api/auth/login", response_model=UserOut, responses=error_responses(400, 401, 422, 429))
def login(body: LoginIn, request: Request, response: Response, session: SessionDep) -> StaffUser:
    """Log in with username and password; sets the session cookie."""
    client = request.client.host if request.client else ""
    try:
        user = accounts.authenticate(
            session, body.username, body.password, client=client, production=is_production(request)
        )
    except accounts.LoginFailed:
        session.commit()  # the failure feeds the rate limit: it must outlive this failed request
        raise
    secret = accounts.start_web_session(session, user)
    set_session_cookie(response, request, secret)
    accounts.audit(session, user, "login", f"user:{user.id}", {"client": client})
    return user


@router.post("/api/auth/logout", status_code=204, responses=error_responses(401))
def logout(request: Request, response: Response, session: SessionDep, user: CurrentUser) -> None:
    """End the browser session."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        accounts.end_web_session(session, cookie)
    clear_session_cookie(response)


@router.get("/api/auth/me", response_model=UserOut, responses=error_responses(401))
def me(user: CurrentUser) -> StaffUser:
    """The logged-in staff member."""
    return user


@router.post(
    "/api/auth/tokens", response_model=TokenOut, status_code=201, responses=error_responses(400, 401, 403, 422)
)
def create_token(body: TokenIn, session: SessionDep, user: TokenMakers) -> TokenOut:
    """Create a bearer token for an integration (shown once; expires after `ttl_days`, default 90)."""
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    token, row = accounts.issue_token(session, user, body.name, ttl=ttl)
    assert row.expires_at is not None  # every token expires
    accounts.audit(session, user, "token.create", f"token:{row.id}", {"name": body.name})
    return TokenOut(token=token, name=body.name, id=row.id, expires_at=row.expires_at)


@router.get("/api/auth/tokens", response_model=list[TokenInfoOut], responses=error_responses(401, 403))
def list_tokens(session: SessionDep, user: TokenMakers) -> list[ApiToken]:
    """The caller's own bearer tokens (never their secrets)."""
    return queries.tokens_of(session, user.id)


@router.post("/api/auth/tokens/{token_id}/revoke", status_code=204, responses=error_responses(401, 403, 404, 422))
def revoke_token(token_id: ObjectId, session: SessionDep, user: TokenMakers) -> None:
    """Revoke a bearer token now: one's own, or (administrators) one of an account they manage."""
    token = session.get(ApiToken, token_id)
    owner = session.get(StaffUser, token.user_id) if token else None
    if token is None or owner is None or not policy.may_revoke_token(session, user, owner):
        raise NotFound("token not found / 未找到该令牌")
    accounts.revoke_token(session, token)
    accounts.audit(session, user, "token.revoke", f"token:{token.id}", {"owner": owner.username})


@router.post("/api/auth/password", status_code=204, responses=error_responses(400, 401, 403, 422, 429))
def change_password(body: PasswordChangeIn, request: Request, session: SessionDep, user: CurrentUser) -> None:
    """Change one's own password; the current one is asked again. Other browser sessions end."""
    client = request.client.host if request.client else ""
    try:
        accounts.change_password(
            session,
            user,
            body.current_password,
            body.new_password,
            keep_session=request.cookies.get(SESSION_COOKIE),
            client=client,
        )
    except accounts.WrongPassword:
        session.commit()  # the failure feeds the rate limit, as a failed login does
        raise
    accounts.audit(session, user, "password.change", f"user:{user.id}")


@router.get("/api/users", response_model=Page[UserOut], responses=error_responses(401, 403, 422))
def list_users(session: SessionDep, user: Admin, page: PageDep) -> dict[str, Any]:
    """Staff accounts (administrators only; a scoped administrator sees the accounts of its estates)."""
    found = queries.users_page(session, policy.users_visible_to(user), limit=page.limit, offset=page.offset)
    return page_out(found, page)


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


@router.post(
    "/api/users/{user_id}/deactivate", response_model=UserOut, responses=error_responses(401, 403, 404, 409, 422)
)
def deactivate_user(user_id: ObjectId, session: SessionDep, user: Admin) -> StaffUser:
    """Switch an account off (administrators, within their estates): its sessions and tokens end at once."""
    target = session.get(StaffUser, user_id)
    if target is None:
        raise NotFound("user not found / 未找到该用户")
    policy.check_deactivate(session, user, target)
    accounts.deactivate_user(session, target)
    accounts.audit(session, user, "user.deactivate", f"user:{target.id}")
    return target
