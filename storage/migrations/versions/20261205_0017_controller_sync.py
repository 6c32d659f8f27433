"""controller sync: each door controller's desired and applied whitelist version (access/sync.py)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_controller_sync",
        sa.Column("controller_id", sa.Integer(), nullable=False),
        sa.Column("desired_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("desired_digest", sa.String(length=64), nullable=False),
        sa.Column("entries", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("applied_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_full_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_full_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("full_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("full_reason", sa.String(length=32), nullable=True),
        sa.Column("last_queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconcile_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["controller_id"],
            ["devices.id"],
            name=op.f("fk_access_controller_sync_controller_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("controller_id", name=op.f("pk_access_controller_sync")),
    )
    op.create_index(
        "ix_access_controller_sync_pending",
        "access_controller_sync",
        ["pending_since"],
        unique=False,
        postgresql_where="pending_since IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_access_controller_sync_pending", table_name="access_controller_sync")
    op.drop_table("access_controller_sync")
