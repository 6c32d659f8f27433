"""Who may see and handle alarms, change alarm rules and record inspection rounds: the API and the pages ask here.

A rule's own parameters apply to every estate, so changing them is head office's (all-estates staff); staff of
some estates tune the rule for their estates, rooms and devices with overrides, and see only those overrides.
"""

from __future__ import annotations

from collections.abc import Set

from accounts.const import EQUIPMENT_ROLES, Role
from storage.models import StaffUser

ALARM_READERS = EQUIPMENT_ROLES | {Role.steward}  # stewards see alarms too: residents call about them
ALARM_HANDLERS = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager})
RULE_EDITORS = frozenset({Role.admin, Role.supervisor, Role.manager})


def may_edit_rules(user: StaffUser) -> bool:
    return Role(user.role) in RULE_EDITORS


def may_change_rule_everywhere(user: StaffUser) -> bool:
    """A change to the rule itself reaches every estate: only all-estates rule editors make it."""
    return may_edit_rules(user) and bool(user.all_estates)


def may_override_in(user: StaffUser, estate_id: int | None, visible: Set[int]) -> bool:
    """An override of an estate (or a room or device of it) the editor may see."""
    return may_edit_rules(user) and estate_id is not None and estate_id in visible


# Inspection rounds: equipment staff see the calendar; engineers, supervisors and admins record a manual round.
ROUND_READERS = EQUIPMENT_ROLES
ROUND_RECORDERS = frozenset({Role.admin, Role.engineer, Role.supervisor})


def may_read_alarms(role: Role | str) -> bool:
    return Role(role) in ALARM_READERS


def may_handle_alarms(role: Role | str) -> bool:
    """Acknowledge (确认) and clear with a reason (手动解除)."""
    return Role(role) in ALARM_HANDLERS


# Device commands (the outbox): equipment staff follow every command of their estates; the billing clerk follows
# the valve commands of supply restriction and restoration (billing's), which are what households ask about.
COMMAND_READERS = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.billing_clerk})
_COMMAND_ORIGINS: dict[Role, frozenset[str]] = {Role.billing_clerk: frozenset({"billing"})}


def may_read_commands(role: Role | str) -> bool:
    return Role(role) in COMMAND_READERS


def command_origins(role: Role | str) -> frozenset[str] | None:
    """The command origins (storage.outbox_reads.ORIGINS) the role sees; None: all of them."""
    return _COMMAND_ORIGINS.get(Role(role))


def may_read_rounds(role: Role | str) -> bool:
    return Role(role) in ROUND_READERS


def may_record_round(role: Role | str) -> bool:
    return Role(role) in ROUND_RECORDERS


# The 18:30 daily summary (alarms/daily_summary.py): the customer-service desk that writes it (seeds/001 4.10), the
# department heads it goes to (supervisors, the project manager), head office and read-only dashboards. Engineers
# follow their tickets and rounds on those pages; the card desk and the billing clerk have no part in it.
SUMMARY_READERS = frozenset({Role.admin, Role.steward, Role.supervisor, Role.manager, Role.viewer})


def may_read_daily_summary(role: Role | str) -> bool:
    return Role(role) in SUMMARY_READERS


# Customer-service rounds (alarms/service_rounds.py): the estate's calendar and task lists are read by those who do
# the rounds (stewards, engineers, the supervisor), by the project manager and by read-only dashboards; a task is
# recorded by the staff on site. The task page lists the rounds of one's own role (round_schedules.role); admins
# and the project manager, who answer for every round, see every role's.
SERVICE_ROUND_READERS = frozenset({Role.admin, Role.manager, Role.supervisor, Role.engineer, Role.steward, Role.viewer})
SERVICE_TASK_RECORDERS = frozenset({Role.admin, Role.manager, Role.supervisor, Role.engineer, Role.steward})
SERVICE_EVERY_ROLE = frozenset({Role.admin, Role.manager})


def may_read_service_rounds(role: Role | str) -> bool:
    return Role(role) in SERVICE_ROUND_READERS


def may_record_service_task(role: Role | str) -> bool:
    return Role(role) in SERVICE_TASK_RECORDERS


def service_roles_of(role: Role | str) -> frozenset[str] | None:
    """The round roles (round_schedules.role) whose tasks the role's task page lists; None: every role's."""
    r = Role(role)
    if r in SERVICE_EVERY_ROLE:
        return None
    return frozenset({r.value})


# Shift handover (交接班): the engineers who keep the shifts, their supervisor and the project manager hand over,
# sign and read the records of their estates (head office's admin too). Who may set an estate's shift times:
# the supervisor who draws up the roster, the project manager and admins.
HANDOVER_ROLES = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager})
SHIFT_EDITORS = frozenset({Role.admin, Role.supervisor, Role.manager})


def may_hand_over(role: Role | str) -> bool:
    """Read the handover page and records, hand a shift over (交班) and sign for one (接班签字)."""
    return Role(role) in HANDOVER_ROLES


def may_edit_shifts(role: Role | str) -> bool:
    return Role(role) in SHIFT_EDITORS
