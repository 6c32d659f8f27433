"""ticket clocks: tickets.clock_kind, the row of domain-defaults §4's platform table a ticket takes its clocks from

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

KINDS = (
    "clock_kind is null or clock_kind in ('critical','alarm','warning','meter_vacant','meter_vacant_manual','meter')"
)


def upgrade() -> None:
    op.add_column("tickets", sa.Column("clock_kind", sa.String(length=24), nullable=True))
    op.create_check_constraint(op.f("ck_tickets_clock_kind"), "tickets", KINDS)
    # Open platform tickets keep their stored due times (a running clock never moves); they take the route of
    # their row from now on. Alarm tickets by their priority as opened (warning→minor, alarm→high,
    # critical→urgent), rounds as missed rounds.
    op.execute(
        """
        UPDATE tickets SET clock_kind = CASE
            WHEN source = 'inspection' THEN 'warning'
            WHEN priority = 'urgent' THEN 'critical'
            WHEN priority = 'high' THEN 'alarm'
            ELSE 'warning' END
        WHERE source IN ('alarm', 'inspection')
        """
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_tickets_clock_kind"), "tickets", type_="check")
    op.drop_column("tickets", "clock_kind")
