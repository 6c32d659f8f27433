"""Who may see the delivery log, see whom it went to, and send a failed delivery again (the API and the pages ask here).

Recipients are e-mail addresses of staff (and, with an SMS or WeCom mention, phone numbers): personal data that
only those who manage staff see in full; everyone else sees them masked (PIPL's minimum-necessary principle).
Robot role tags (``role:engineer``) and log names are not personal and are shown as they are.
"""

from __future__ import annotations

import re

from core.roles import Role

# Engineers and supervisors check that escalations reached people; the clerk that notices went out.
READERS = frozenset({Role.admin, Role.manager, Role.supervisor, Role.engineer, Role.billing_clerk})
RETRIERS = frozenset({Role.admin, Role.manager})
UNMASKED = frozenset({Role.admin, Role.manager})

_PHONE = re.compile(r"\+?\d[\d\s-]{6,}\d")


def may_read(role: Role | str) -> bool:
    return Role(role) in READERS


def may_retry(role: Role | str) -> bool:
    """Send a failed or given-up delivery again now (audited)."""
    return Role(role) in RETRIERS


def mask_email(address: str) -> str:
    """wang.daming@example.com → w***@example.com (the domain says which mailbox system; the person is hidden)."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def shown_recipient(recipient: str, role: Role | str) -> str:
    """The recipient as this role may see it."""
    if Role(role) in UNMASKED:
        return recipient
    if "@" in recipient:
        return mask_email(recipient)
    if _PHONE.fullmatch(recipient.strip()):
        return mask_phone(recipient)
    return recipient


__all__ = ["READERS", "RETRIERS", "UNMASKED", "may_read", "may_retry", "shown_recipient"]
