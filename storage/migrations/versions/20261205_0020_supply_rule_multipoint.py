"""heat-station secondary supply: the one-point threshold rule becomes the station's emitter-cap rule

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 22:20:00

``heat_station.secondary_supply.high`` keeps its code but is judged per station from now on (a multi-point
``composite`` rule, alarms/multipoint_pack.py, refreshed by the rule packs after the upgrade). Its
threshold-era rows would not fit: an open alarm has a ``point:`` subject the multi-point evaluator never
updates (it would stay open for ever), and its evaluator state is a threshold state. So the open alarms of
that rule are ended (``clear_reason = 'rule_changed'``, at the upgrade; their tickets stay as they are) and
its states are dropped; the new rule raises afresh where the supply is still too hot. Data only: the
downgrade leaves them ended.
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

RULE = "heat_station.secondary_supply.high"


def upgrade() -> None:
    op.execute(
        f"""
        UPDATE alarms SET state = 'cleared', cleared_at = now(), clear_reason = 'rule_changed'
        WHERE state <> 'cleared' AND left(subject, 6) = 'point:'
          AND rule_id IN (SELECT id FROM alarm_rules WHERE code = '{RULE}')
        """
    )
    op.execute(
        f"""
        DELETE FROM alarm_states
        WHERE rule_id IN (SELECT id FROM alarm_rules WHERE code = '{RULE}' AND kind = 'threshold')
        """
    )


def downgrade() -> None:
    pass  # ended alarms stay ended; the rule packs of the older code turn the row back into a threshold rule
