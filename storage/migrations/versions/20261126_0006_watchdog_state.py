"""watchdog_state: since when the stale watchdog has watched without a gap

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 08:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('watchdog_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('watching_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_watchdog_state'))
    )


def downgrade() -> None:
    op.drop_table('watchdog_state')
