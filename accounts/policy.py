"""Who may do what with staff accounts and platform-wide data: the one place the API and the pages ask.

Scope is the rule beside the role: an account sees the estates assigned to it, or every estate when it is
head office's (``all_estates``). Scoped staff never reach beyond their estates, so they can neither grant
more than they hold nor see or change what belongs to every estate at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from accounts.const import Role
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from storage.models import Estate, StaffEstate, StaffUser

# Who manages accounts at all, and who makes integration tokens.
USER_ADMINS = frozenset({Role.admin})
TOKEN_MAKERS = frozenset({Role.admin, Role.engineer})
# Ingest counters and dead letters (scoped to the caller's estates; counters for head office only).
OPERATORS = frozenset({Role.admin, Role.engineer})

# A role may grant only roles at or below its own rank. Roles of one rank are peers doing different work.
ROLE_RANK: dict[Role, int] = {
    Role.viewer: 0,
    Role.engineer: 1,
    Role.steward: 1,
    Role.card_admin: 1,
    Role.billing_clerk: 1,
    Role.supervisor: 2,
    Role.manager: 3,
    Role.admin: 4,
}


def may_manage_users(user: StaffUser) -> bool:
    return Role(user.role) in USER_ADMINS


def may_grant_role(actor_role: Role, role: Role) -> bool:
    """Nobody grants a role above their own."""
    return ROLE_RANK[Role(role)] <= ROLE_RANK[Role(actor_role)]


def estate_ids_of(session: Session, user: StaffUser) -> set[int]:
    """The estates the account may see (every estate for head office)."""
    if user.all_estates:
        return set(session.scalars(select(Estate.id)))
    return set(session.scalars(select(StaffEstate.estate_id).where(StaffEstate.user_id == user.id)))


def estate_codes_of(session: Session, user: StaffUser) -> list[str]:
    """The codes of the estates the account is assigned to (head office is scoped by ``all_estates`` instead)."""
    return list(
        session.scalars(
            select(Estate.code)
            .join(StaffEstate, StaffEstate.estate_id == Estate.id)
            .where(StaffEstate.user_id == user.id)
        )
    )


def check_grant(session: Session, actor: StaffUser, *, role: Role, estates: Iterable[str], all_estates: bool) -> None:
    """Refuse an account the actor could not hold itself: a higher role, all estates, or estates not its own.

    For a scoped actor an unknown estate and another's estate get the same answer, so existence is not leaked."""
    if not may_manage_users(actor):
        raise Forbidden("your role may not manage accounts / 当前角色无权管理账号")
    if not may_grant_role(Role(actor.role), role):
        raise Forbidden(f"you may not grant the role {Role(role).value} / 不能授予高于自身的角色")
    if actor.all_estates:
        return  # head office may grant any estate, or all of them; unknown codes are the service's 422
    if all_estates:
        raise Forbidden("only head-office administrators grant all estates / 只有总部管理员可授予全部小区")
    codes = sorted(set(estates))
    if not codes:
        raise InvalidInput("name at least one of your estates / 请至少指定一个您负责的小区")
    mine = set(
        session.scalars(
            select(Estate.code)
            .join(StaffEstate, StaffEstate.estate_id == Estate.id)
            .where(StaffEstate.user_id == actor.id, Estate.code.in_(codes))
        )
    )
    outside = [c for c in codes if c not in mine]
    if outside:
        raise Forbidden(f"estates outside your scope: {', '.join(outside)} / 不在您负责范围内的小区")


def users_visible_to(actor: StaffUser) -> ColumnElement[bool]:
    """A filter on StaffUser: head office lists every account; a scoped admin the accounts sharing one of its
    estates, never head office's own (those reach beyond it)."""
    if actor.all_estates:
        return true()
    mine = select(StaffEstate.estate_id).where(StaffEstate.user_id == actor.id)
    shares = exists().where(StaffEstate.user_id == StaffUser.id, StaffEstate.estate_id.in_(mine))
    return and_(StaffUser.all_estates.is_(False), shares)


def may_see_user(session: Session, actor: StaffUser, target: StaffUser) -> bool:
    """The actor manages accounts and the target is among those it lists."""
    if not may_manage_users(actor):
        return False
    return session.scalar(select(StaffUser.id).where(StaffUser.id == target.id, users_visible_to(actor))) is not None


def check_deactivate(session: Session, actor: StaffUser, target: StaffUser) -> None:
    """An admin switches off accounts it can see (404 otherwise, as for a missing one), never its own, never a
    role above its own."""
    if not may_see_user(session, actor, target):
        raise NotFound("user not found / 未找到该用户")
    if target.id == actor.id:
        raise Conflict("you cannot deactivate your own account / 不能停用自己的账号")
    if not may_grant_role(Role(actor.role), Role(target.role)):
        raise Forbidden("you may not deactivate a higher role / 不能停用高于自身角色的账号")


def may_revoke_token(session: Session, actor: StaffUser, owner: StaffUser) -> bool:
    """One's own tokens, or those of an account one manages."""
    return actor.id == owner.id or may_see_user(session, actor, owner)


# --- platform operations (ingest) ---------------------------------------------------------------------------


class Staff(Protocol):
    """Who asks: an account (``StaffUser``) or the pages' ``Viewer`` of one."""

    @property
    def role(self) -> str: ...
    @property
    def all_estates(self) -> bool: ...


def may_see_operations(user: Staff) -> bool:
    """Dead letters and quarantine (of the caller's estates)."""
    return Role(user.role) in OPERATORS


def may_see_ingest_status(user: Staff) -> bool:
    """Ingest processes and their counters span every estate: head-office operators only."""
    return may_see_operations(user) and bool(user.all_estates)


def topic_scope(column: Any, all_estates: bool, estate_codes: Iterable[str]) -> ColumnElement[bool]:
    """A filter on a message's topic: head office sees every message, estate staff those of their estates."""
    if all_estates:
        return true()
    codes = list(estate_codes)
    if not codes:
        return false()
    return or_(*[column.like(topic_like(c)) for c in codes])


def topic_like(code: str) -> str:
    """The LIKE pattern of an estate's topics (``_`` and ``%`` in a code match only themselves)."""
    escaped = code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"steward/{escaped}/%"


# --- wall displays (大屏) -----------------------------------------------------------------------------------------

# A control-room screen's display token reads one estate's wall display: the project manager and admins issue and
# revoke them (the screen hangs in the estate's 监控中心, which the manager answers for).
DISPLAY_ADMINS = frozenset({Role.admin, Role.manager})


def may_manage_displays(role: Role | str) -> bool:
    return Role(role) in DISPLAY_ADMINS
