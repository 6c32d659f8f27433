"""Who may see or do what in billing (the API and the pages both ask here, so they never disagree).

Roles are the strings of `accounts.const.Role` (billing may not import its sibling `accounts`).
Staff not marked `all_estates` act only on the estates they are assigned to (`staff_estates`).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import StaffEstate, StaffUser


class Action(StrEnum):
    view_accounts = "view_accounts"  # balances, ledger, charges, readings of a household
    top_up = "top_up"  # record a payment at the counter / by bank transfer
    refund = "refund"  # money back out of a balance (actor + reason, audited)
    adjust = "adjust"  # a correcting posting (actor + reason, audited)
    confirm_hold = "confirm_hold"  # record a meter replacement / reset for a held interval
    manage_tariffs = "manage_tariffs"  # add a price version (never retroactive)
    run_billing = "run_billing"  # start a billing run by hand
    import_arrears = "import_arrears"  # upload the fee system's property-fee arrears CSV
    view_dunning = "view_dunning"  # dunning cases, documents, tasks and the masked public list
    issue_dunning = "issue_dunning"  # run the dunning ladder by hand (the worker runs it daily)
    complete_dunning_task = "complete_dunning_task"  # record a lawyer's letter sent / a suit filed (who, when, note)
    view_notices = "view_notices"  # the notice queue and printable notices
    approve_notices = "approve_notices"  # approve, send or cancel a notice (restriction notices included)
    view_statements = "view_statements"  # quarterly statements, the quarters and whether they are closed
    close_period = "close_period"  # close a quarter: its statements become final
    record_manual_reading = "record_manual_reading"  # enter the SOP's quarterly hand-read register
    view_manual_readings = "view_manual_readings"  # the reconciliations, their verdicts and tickets


ADMIN, MANAGER, STEWARD, CLERK, ENGINEER, SUPERVISOR = (
    "admin",
    "manager",
    "steward",
    "billing_clerk",
    "engineer",
    "supervisor",
)

ALLOWED: dict[Action, frozenset[str]] = {
    Action.view_accounts: frozenset({ADMIN, MANAGER, STEWARD, CLERK}),
    Action.top_up: frozenset({ADMIN, MANAGER, CLERK}),
    # Money out and corrections: the clerk may, the project manager may; stewards may not.
    Action.refund: frozenset({ADMIN, MANAGER, CLERK}),
    Action.adjust: frozenset({ADMIN, MANAGER}),
    # The engineer who swapped the meter records its readings; the clerk and manager may too.
    Action.confirm_hold: frozenset({ADMIN, MANAGER, CLERK, ENGINEER, SUPERVISOR}),
    Action.manage_tariffs: frozenset({ADMIN, MANAGER}),
    Action.run_billing: frozenset({ADMIN, MANAGER, CLERK}),
    # Property-fee dunning (seeds/000: 客服部/管家 chase arrears; the project manager answers for the rate).
    Action.import_arrears: frozenset({ADMIN, MANAGER, CLERK}),
    # Stewards (管家) deliver the letters and phone the owners, so they see the ladder; they do not issue it.
    Action.view_dunning: frozenset({ADMIN, MANAGER, CLERK, STEWARD}),
    Action.issue_dunning: frozenset({ADMIN, MANAGER, CLERK}),
    # The tasks are the project manager's (seeds/000 3.5); the clerk who keeps the file records them too.
    Action.complete_dunning_task: frozenset({ADMIN, MANAGER, CLERK}),
    # Stewards hand notices to households, so they see (and print) the queue; approving a notice that can
    # lead to restriction is the project manager's or the clerk's decision.
    Action.view_notices: frozenset({ADMIN, MANAGER, STEWARD, CLERK}),
    Action.approve_notices: frozenset({ADMIN, MANAGER, CLERK}),
    # Statements are the household's money: whoever sees the accounts sees them (stewards hand them out).
    Action.view_statements: frozenset({ADMIN, MANAGER, STEWARD, CLERK}),
    # Closing makes a quarter's figures final: the clerk who keeps the books, or the project manager.
    Action.close_period: frozenset({ADMIN, MANAGER, CLERK}),
    # The SOP's manual reading: the clerk enters it from the reading sheet, the engineer reads on site.
    Action.record_manual_reading: frozenset({ADMIN, MANAGER, CLERK, ENGINEER}),
    Action.view_manual_readings: frozenset({ADMIN, MANAGER, CLERK, ENGINEER, SUPERVISOR, STEWARD}),
}


def may(role: str, action: Action) -> bool:
    """Whether a role may take `action` at all (before the estate scope)."""
    return role in ALLOWED[action]


def estate_ids(session: Session, user: StaffUser) -> set[int] | None:
    """The estates a user acts on; None means every estate."""
    if user.all_estates:
        return None
    return set(session.scalars(select(StaffEstate.estate_id).where(StaffEstate.user_id == user.id)))


def may_on_estate(session: Session, user: StaffUser, action: Action, estate_id: int) -> bool:
    """Whether `user` may take `action` on something of estate `estate_id`."""
    if not user.active:
        return False
    if not may(user.role, action):
        return False
    scope = estate_ids(session, user)
    return scope is None or estate_id in scope
