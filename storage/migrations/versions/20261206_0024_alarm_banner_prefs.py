"""alarm state and banner (issue 15 §1-2): staff_alarm_prefs, and a partial index over the open alarms

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
# Issue 15's migrations are 0022 (…), 0023 (…), 0024 (this one). Until the branches are merged this one
# sits directly on 0021 so the branch's own tests can run; the merge sets it to "0023".
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_alarm_prefs",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("banner_min_severity", sa.String(length=16), server_default="alarm", nullable=False),
        sa.Column("muted", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "banner_min_severity in ('warning','alarm','critical')",
            name=op.f("ck_staff_alarm_prefs_banner_min_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_users.id"], name=op.f("fk_staff_alarm_prefs_user_id_staff_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_staff_alarm_prefs")),
    )
    op.create_index(
        "ix_alarms_open_estate", "alarms", ["estate_id"], postgresql_where=sa.text("state <> 'cleared'")
    )


def downgrade() -> None:
    op.drop_index("ix_alarms_open_estate", table_name="alarms")
    op.drop_table("staff_alarm_prefs")
