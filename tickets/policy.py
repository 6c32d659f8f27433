"""Who may do what with repair tickets: the one place the JSON API and the pages ask.

Who may do what (domain-defaults §4, seeds/004 接修流程): stewards, supervisors, managers and admins log,
dispatch and close tickets; the assigned engineer (or a supervisor / admin) accepts, arrives and resolves;
stewards, managers and admins record the callback (回访); managers and admins extend a patrol finding's
one-week deadline (延期).

Two questions, kept apart because the API and the pages answer them the same way:

- ``may_act`` — role and ownership. Refused: 403 (API) or the 403 page. Asked before the service runs.
- ``step_open`` — whether the ticket's status admits the step now. The service enforces it (409 / a flash
  message); the pages ask it only to decide which step forms to show.

``allowed_steps`` is both at once: the forms a page offers, and the steps the API would accept now.
"""

from __future__ import annotations

from enum import StrEnum

from core.roles import Role
from storage.models import Ticket
from tickets.const import REOPENABLE, TicketStatus
from tickets.service import needs_callback

A, E, S, SU, M, V = Role.admin, Role.engineer, Role.steward, Role.supervisor, Role.manager, Role.viewer
READ_ROLES = frozenset({A, E, S, SU, M, V})
DESK_ROLES = frozenset({A, S, SU, M})  # log, dispatch, close, reopen, route to warranty
WORK_ROLES = frozenset({A, E, SU})  # accept, on site, resolve (engineers only on their own tickets)
CALLBACK_ROLES = frozenset({A, S, M})  # callback and complaint feedback (客服)
COMMENT_ROLES = frozenset({A, E, S, SU, M})
# §4: a patrol finding is fixed within one week "unless a manager extends it" — the 项目经理 (and head office).
EXTEND_ROLES = frozenset({A, M})
# The monthly callback report (回访统计): the customer-service desk, the supervisors and managers who answer for
# the targets, and read-only dashboards. Engineers are not judged by it.
REPORT_ROLES = frozenset({A, S, SU, M, V})
# The warranty table (handover dates, developer, periods): read by whoever reads tickets (it explains why a
# ticket went to the developer); edited by the project manager and head office, who hold the handover papers.
WARRANTY_READ_ROLES = READ_ROLES
WARRANTY_EDIT_ROLES = frozenset({A, M})
# The developer charge-backs: the fee side bills them; the project manager and supervisor follow them up.
CHARGEBACK_ROLES = frozenset({A, M, SU, Role.billing_clerk})


class Step(StrEnum):
    """The lifecycle steps a page offers as forms (the API has these and more: feedback, warranty, comment)."""

    dispatch = "dispatch"
    accept = "accept"
    on_site = "on_site"
    resolve = "resolve"
    callback = "callback"
    close = "close"
    reopen = "reopen"


STEP_ROLES: dict[Step, frozenset[Role]] = {
    Step.dispatch: DESK_ROLES,
    Step.accept: WORK_ROLES,
    Step.on_site: WORK_ROLES,
    Step.resolve: WORK_ROLES,
    Step.callback: CALLBACK_ROLES,
    Step.close: DESK_ROLES,
    Step.reopen: DESK_ROLES,
}
# Steps an engineer takes only on the tickets dispatched to them; supervisors and admins may step in.
OWN_WORK = frozenset({Step.accept, Step.on_site, Step.resolve})
_S = TicketStatus


def may_extend(role: Role | str) -> bool:
    return Role(role) in EXTEND_ROLES


def may_view_callback_report(role: Role | str) -> bool:
    return Role(role) in REPORT_ROLES


def may_read(role: Role | str) -> bool:
    return Role(role) in READ_ROLES


def role_may(role: Role | str, step: Step) -> bool:
    """The role check alone (the API's route dependency, the page's first check)."""
    return Role(role) in STEP_ROLES[step]


def owns_work(role: Role | str, user_id: int, t: Ticket) -> bool:
    """Engineers act only on their own tickets; every other role that may work may step in."""
    return Role(role) != Role.engineer or t.assignee_id == user_id


def may_act(role: Role | str, user_id: int, t: Ticket, step: Step) -> bool:
    """Role and ownership: what is refused with 403 before the service runs."""
    return role_may(role, step) and (step not in OWN_WORK or owns_work(role, user_id, t))


def step_open(t: Ticket, step: Step) -> bool:
    """Whether the ticket's status admits the step now (the service refuses the rest with 409)."""
    status = TicketStatus(t.status)
    if step is Step.dispatch:
        return status in (_S.received, _S.dispatched, _S.accepted)
    if step is Step.accept:
        return status == _S.dispatched
    if step is Step.on_site:
        return status in (_S.dispatched, _S.accepted)
    if step is Step.resolve:
        return status == _S.on_site
    if step is Step.callback:
        return status == _S.resolved
    if step is Step.close:
        return status in (_S.received, _S.dispatched, _S.callback_done) or (
            status == _S.resolved and not needs_callback(t)
        )
    return status in REOPENABLE  # Step.reopen


def allowed_steps(role: Role | str, user_id: int, t: Ticket) -> dict[str, bool]:
    """Which steps this user may take on this ticket now (role × ownership × status): the page's forms."""
    return {step.value: may_act(role, user_id, t, step) and step_open(t, step) for step in Step}
