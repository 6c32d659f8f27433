"""Who may see or do what with access cards (the API and the pages both ask here, so they never disagree).

- card_admin (门禁卡管理员) and admin issue, report lost, replace, take back and revoke cards of their estates.
- The project manager and stewards (管家) see the register of their estates — holder, unit, type, doors,
  validity, status — because residents ask them which cards are live, but never the card numbers: a UID is
  what a cheap MIFARE clone copies, and their work never needs it (PIPL's minimum necessary). Their search
  does not match UIDs either, so the number cannot be probed.
- Swipe logs are whereabouts (PIPL Art. 28, sensitive personal information): card_admin and admin only.
- The door controllers' sync state (versions, pending since when; no card numbers): the card desk, and engineers
  read-only, who repair a controller that stays unsynced.
Roles are the strings of core.roles.Role; staff not marked all_estates act only on their assigned estates.
"""

from __future__ import annotations

from enum import StrEnum

from core.roles import Role


class Action(StrEnum):
    view_register = "view_register"  # the card register and a household's cards with its quota
    view_uids = "view_uids"  # card numbers (UIDs) and their Wiegand forms
    manage_cards = "manage_cards"  # issue, lost (+ replacement), return, move-out
    read_swipes = "read_swipes"  # the swipe log: card_admin and admin only, every read audited
    view_sync = "view_sync"  # the door controllers' whitelist sync state (versions, 待同步 since when)


CARD_DESK = frozenset({Role.admin.value, Role.card_admin.value})
ALLOWED: dict[Action, frozenset[str]] = {
    Action.view_register: CARD_DESK | {Role.manager.value, Role.steward.value},
    Action.view_uids: CARD_DESK,
    Action.manage_cards: CARD_DESK,
    Action.read_swipes: CARD_DESK,
    # Engineers read it too: an unsynced controller is a device fault (power, network) they go and fix.
    Action.view_sync: CARD_DESK | {Role.engineer.value},
}


def may(role: str, action: Action) -> bool:
    """Whether a role may take `action` at all (the estate scope is the caller's visible estates)."""
    return role in ALLOWED[action]
