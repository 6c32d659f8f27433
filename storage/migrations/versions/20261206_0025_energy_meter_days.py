"""energy reports: energy_meter_days (each meter's consumption per estate-local day) and its sums per
building and day (energy_building_days) and per meter and month (energy_meter_months) (issue 15 §4)

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
    op.create_index("ix_energy_meter_days_estate_id_day", "energy_meter_days", ["estate_id", "day"])
    op.create_index(
        "ix_energy_meter_days_held",
        "energy_meter_days",
        ["estate_id"],
        postgresql_where=sa.text("cardinality(held_from) > 0"),
    )


    op.create_table(
        "energy_building_days",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=True),
        sa.Column("master", sa.Boolean(), nullable=False),
        sa.Column("volume", sa.Numeric(precision=24, scale=6), nullable=False),
        sa.Column("held", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("volume >= 0", name=op.f("ck_energy_building_days_volume")),
        sa.ForeignKeyConstraint(
            ["building_id"],
            ["buildings.id"],
            name=op.f("fk_energy_building_days_building_id_buildings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_energy_building_days_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_building_days")),
    )
    op.create_index("ix_energy_building_days_estate_id_day", "energy_building_days", ["estate_id", "day"])
    op.create_table(
        "energy_meter_months",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("volume", sa.Numeric(precision=24, scale=6), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_energy_meter_months_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_energy_meter_months_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", "month", name=op.f("pk_energy_meter_months")),
    )
    op.create_index("ix_energy_meter_months_estate_id_month", "energy_meter_months", ["estate_id", "month"])


def downgrade() -> None:
    op.drop_index("ix_energy_meter_months_estate_id_month", table_name="energy_meter_months")
    op.drop_table("energy_meter_months")
    op.drop_index("ix_energy_building_days_estate_id_day", table_name="energy_building_days")
    op.drop_table("energy_building_days")
    op.drop_index("ix_energy_meter_days_held", table_name="energy_meter_days")
    op.drop_index("ix_energy_meter_days_estate_id_day", table_name="energy_meter_days")
    op.drop_table("energy_meter_days")
