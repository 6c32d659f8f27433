"""daily summaries: the 18:30 summary of each estate's day, one row per estate and local date

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
# Written after 0022 (another branch); this branch has no 0022 yet, so it points at 0021 until the merge re-chains it.
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_summaries",
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_daily_summaries_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("estate_id", "day", name=op.f("pk_daily_summaries")),
    )


def downgrade() -> None:
    op.drop_table("daily_summaries")
