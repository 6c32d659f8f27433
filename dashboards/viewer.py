"""Who is looking at a page (``Viewer``), and the two refusals every page can raise: ``LoginRequired`` (to the
login form) and ``PageError`` (the 403/404 page, rendered by dashboards/page_errors.py).

Who may see or do what is each domain's ``policy.py``; this module only asks it and turns a no into a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from access import policy as access_policy
from accounts import policy as accounts_policy
from accounts import service as accounts
from accounts.const import EQUIPMENT_ROLES, Role
from alarms import policy as alarms_policy
from billing import policy as billing_policy
from dashboards import i18n
from dashboards.i18n import Lang
from facility import energy_policy
from notifications import policy as notifications_policy
from storage.models import StaffUser
from tickets import policy as tickets_policy
from web.cookies import SESSION_COOKIE
from web.deps import SessionDep

LANG_COOKIE = "lang"


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageError(Exception):
    def __init__(self, status: int, viewer: Viewer | None = None) -> None:
        self.status = status
        self.viewer = viewer


@dataclass(frozen=True)
class Viewer:
    """Who is looking, as plain values: error pages render after the request's session has closed."""

    username: str
    display_name: str
    role: Role
    all_estates: bool
    lang: Lang
    visible: frozenset[int]
    user_id: int

    @classmethod
    def of(cls, session: Session, user: StaffUser, lang: Lang) -> Viewer:
        return cls(
            username=user.username,
            display_name=user.display_name or user.username,
            role=Role(user.role),
            all_estates=user.all_estates,
            lang=lang,
            visible=frozenset(accounts.visible_estate_ids(session, user)),
            user_id=user.id,
        )

    @property
    def sees_equipment(self) -> bool:
        return self.role in EQUIPMENT_ROLES

    @property
    def sees_ingest(self) -> bool:
        return accounts_policy.may_see_operations(self)  # as the JSON API's operations routes


def request_lang(request: Request) -> Lang:
    return i18n.norm_lang(request.cookies.get(LANG_COOKIE))


def here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    cookie = request.cookies.get(SESSION_COOKIE)
    user = accounts.user_for_session(session, cookie) if cookie else None
    if user is None:
        raise LoginRequired(here(request))
    return Viewer.of(session, user, request_lang(request))


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def require(viewer: Viewer, allowed: bool) -> Viewer:
    """The 403 page when the domain's policy said no."""
    if not allowed:
        raise PageError(403, viewer)
    return viewer


def equipment_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, viewer.sees_equipment)


EquipmentViewer = Annotated[Viewer, Depends(equipment_viewer)]


def can_see(viewer: Viewer | None, what: str) -> bool:
    """Navigation: which of these pages the viewer's role opens."""
    if viewer is None:
        return False
    if what == "alarms":
        return alarms_policy.may_read_alarms(viewer.role)
    if what == "tickets":
        return tickets_policy.may_read(viewer.role)
    if what == "billing":
        return billing_policy.may(viewer.role, billing_policy.Action.view_accounts)
    if what == "billing_holds":
        return billing_policy.may(viewer.role, billing_policy.Action.confirm_hold)
    if what == "billing_notices":
        return billing_policy.may(viewer.role, billing_policy.Action.view_notices)
    if what == "dunning":
        return billing_policy.may(viewer.role, billing_policy.Action.view_dunning)
    if what == "commands":
        return alarms_policy.may_read_commands(viewer.role)
    if what == "notifications":
        return notifications_policy.may_read(viewer.role)
    if what == "cards":
        return access_policy.may(viewer.role, access_policy.Action.view_register)
    if what == "statements":
        return billing_policy.may(viewer.role, billing_policy.Action.view_statements)
    if what == "manual_readings":
        return billing_policy.may(viewer.role, billing_policy.Action.view_manual_readings)
    if what == "callbacks":
        return tickets_policy.may_view_callback_report(viewer.role)
    if what == "service_tasks":
        return alarms_policy.may_record_service_task(viewer.role)
    if what == "access_sync":
        return access_policy.may(viewer.role, access_policy.Action.view_sync)
    if what == "daily_summary":
        return alarms_policy.may_read_daily_summary(viewer.role)
    if what == "energy":
        return energy_policy.may_read_energy(viewer.role)
    if what == "handover":
        return alarms_policy.may_hand_over(viewer.role)
    if what == "wall_tokens":
        return accounts_policy.may_manage_displays(viewer.role)
    return False


def safe_next(value: str | None) -> str:
    """Only a path on this site: never //evil.example or https://evil.example (open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value
