"""energy reports: energy_meter_days, each meter's consumption per estate-local day (issue 15 §4)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0025"

down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "energy_meter_days",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("volume", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column(
            "held_from", postgresql.ARRAY(sa.DateTime(timezone=True)), server_default="{}", nullable=False
        ),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_register", sa.Numeric(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("volume >= 0", name=op.f("ck_energy_meter_days_volume")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_energy_meter_days_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_energy_meter_days_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", "day", name=op.f("pk_energy_meter_days")),
    )
    op.create_index(
        "ix_energy_meter_days_estate_id_day",
        "energy_meter_days",
        ["estate_id", "day"],
        postgresql_include=["device_id", "volume"],
    )
    op.create_index(
        "ix_energy_meter_days_held",
        "energy_meter_days",
        ["estate_id"],
        postgresql_where=sa.text("cardinality(held_from) > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_energy_meter_days_held", table_name="energy_meter_days")
    op.drop_index("ix_energy_meter_days_estate_id_day", table_name="energy_meter_days")
    op.drop_table("energy_meter_days")
