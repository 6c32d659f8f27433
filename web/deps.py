"""FastAPI dependencies the API and the pages share, each named once (SessionDep, CurrentUser, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from accounts import service as accounts
from accounts.const import Role
from storage.models import StaffUser
from web.cookies import SESSION_COOKIE
from web.errors import Forbidden, NotAuthenticated


def get_session(request: Request) -> Iterator[Session]:
    """One request, one transaction: committed when the route returns, rolled back if it raises."""
    factory = request.app.state.sessionmaker
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit (or roll back) when the route returns, *before* the response is sent. FastAPI's
# default for dependencies with yield ends them after the response, so a client could be told 2xx / 303 for a
# change not yet committed (or that then fails to commit), and a browser following a POST's redirect could read
# the state from before it (the flaky ticket browser test).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# Declared as security schemes so the OpenAPI document says which routes need a login and how to give one.
_bearer = HTTPBearer(auto_error=False, description="API token from POST /api/auth/tokens")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="browser session from POST /api/auth/login")


def get_current_user(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> StaffUser:
    user = None
    if bearer is not None:
        user = accounts.user_for_token(session, bearer.credentials.strip())
    elif cookie:
        user = accounts.user_for_session(session, cookie)
    if user is None:
        raise NotAuthenticated("login required / 请先登录")
    request.state.user = user
    return user


CurrentUser = Annotated[StaffUser, Depends(get_current_user)]


def require_roles(roles: frozenset[Role]) -> Callable[[StaffUser], StaffUser]:
    def check(user: CurrentUser) -> StaffUser:
        if Role(user.role) not in roles:
            raise Forbidden("your role may not do this / 当前角色无此权限")
        return user

    return check


def visible_estates(session: SessionDep, user: CurrentUser) -> set[int]:
    return accounts.visible_estate_ids(session, user)


VisibleEstates = Annotated[set[int], Depends(visible_estates)]
