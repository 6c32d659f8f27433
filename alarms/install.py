"""Install every default rule pack in one call (`steward db upgrade`, the demo, the benches).

Idempotent: rules are upserted by code, an operator's `enabled` choice is kept.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from alarms.access_pack import ensure_access_rules
from alarms.meter_pack import ensure_meter_rules
from alarms.multipoint_pack import ensure_multipoint_rules
from alarms.packs import ensure_default_rules
from alarms.rounds import ensure_default_schedules, ensure_round_rule
from alarms.service_rounds import ensure_service_schedules
from alarms.stale import ensure_default_stale_rules
from storage.models import Estate


def install_rule_packs(session: Session) -> int:
    """Threshold and multi-point packs (domain-defaults §2), meter anomaly rules (§3), the stale-data rule, the
    missed-round rule and the access rules (issue 12 §4), and every estate's default inspection
    schedules (§1) and customer-service rounds (issue 14 §5). Returns how many rules."""
    n = ensure_default_rules(session) + ensure_multipoint_rules(session) + ensure_meter_rules(session)
    n += ensure_default_stale_rules(session) + ensure_round_rule(session) + ensure_access_rules(session)
    for estate_id in session.scalars(select(Estate.id)).all():
        ensure_default_schedules(session, estate_id)
        ensure_service_schedules(session, estate_id)
    return n


__all__ = ["install_rule_packs"]
