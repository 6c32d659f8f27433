"""access alarm rules: the 'access' rule kind (denied-swipe streak, forced / held-open door, lost card)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 05:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OLD_KINDS = "kind in ('threshold','repeat','rate_of_change','stale','composite','meter','round','command')"
NEW_KINDS = "kind in ('threshold','repeat','rate_of_change','stale','composite','meter','round','command','access')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_alarm_rules_kind"), "alarm_rules", type_="check")
    op.create_check_constraint(op.f("ck_alarm_rules_kind"), "alarm_rules", NEW_KINDS)


def downgrade() -> None:
    # Their alarms go with them (alarms.rule_id cascades; a ticket keeps its history, its alarm_id set null).
    op.execute("DELETE FROM alarm_rules WHERE kind = 'access'")
    op.drop_constraint(op.f("ck_alarm_rules_kind"), "alarm_rules", type_="check")
    op.create_check_constraint(op.f("ck_alarm_rules_kind"), "alarm_rules", OLD_KINDS)
