"""Staff roles and what each may do (DESIGN.md §8: engineers, stewards 管家, card and billing clerks)."""

from __future__ import annotations

from datetime import timedelta

from core.roles import Role as Role  # the vocabulary lives in core/roles.py; accounts grants it

ALL_ROLES = frozenset(Role)
EQUIPMENT_ROLES = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.viewer})
# Roles whose work needs residents' names and phone numbers (notices, cards, callbacks); the rest
# see them masked (张**, 138****5678) — PIPL's minimum-necessary principle.
PERSONAL_DATA_ROLES = frozenset({Role.admin, Role.steward, Role.manager, Role.card_admin, Role.billing_clerk})

ROLE_LABELS = {
    Role.admin: ("系统管理员", "Administrator"),
    Role.engineer: ("工程人员", "Engineer"),
    Role.steward: ("管家", "Steward"),
    Role.supervisor: ("工程主管", "Supervisor"),
    Role.manager: ("项目经理", "Project manager"),
    Role.card_admin: ("门禁卡管理员", "Card administrator"),
    Role.billing_clerk: ("收费员", "Billing clerk"),
    Role.viewer: ("只读用户", "Viewer"),
}

SESSION_TTL = timedelta(hours=12)  # one working shift plus overtime
# Bearer tokens expire: 90 days unless asked otherwise, never more than a year (an integration renews it).
TOKEN_DEFAULT_TTL = timedelta(days=90)
TOKEN_MAX_TTL = timedelta(days=365)
# Login limits, all checked before any password is hashed (argon2: ~125 ms and 64 MiB an attempt):
# - per (username, client address): LOGIN_MAX_FAILURES free failures within the window, then a back-off that
#   doubles with each further failure (30 s, 1 min, 2 min ... at most the window). The account is never locked:
#   its owner logs in from another address while someone guesses at it.
# - per client address: LOGIN_ADDRESS_MAX_FAILURES failures within the window over all usernames;
# - globally: LOGIN_GLOBAL_MAX_FAILURES failures a minute over every address (a spread-out guessing campaign).
LOGIN_MAX_FAILURES = 5
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
LOGIN_BACKOFF_BASE = timedelta(seconds=30)
LOGIN_ADDRESS_MAX_FAILURES = 30
LOGIN_GLOBAL_MAX_FAILURES = 300
LOGIN_GLOBAL_WINDOW = timedelta(minutes=1)

# The demo's account (steward demo): a loopback demo only. Production refuses to log anyone in with it.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "steward-demo"
