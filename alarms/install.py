"""Install every default rule pack in one call (`steward db upgrade`, the demo, the benches).

Idempotent: rules are upserted by code, an operator's `enabled` choice is kept.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from alarms.meter_pack import ensure_meter_rules
from alarms.packs import ensure_default_rules


def install_rule_packs(session: Session) -> int:
    """Threshold packs (domain-defaults §2) and meter anomaly rules (§3); returns how many rules."""
    return ensure_default_rules(session) + ensure_meter_rules(session)


__all__ = ["install_rule_packs"]
