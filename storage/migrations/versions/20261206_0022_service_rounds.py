"""service rounds: round schedules and rounds of a whole estate (kind, role, calendar; room optional), round tasks

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

KINDS = (
    "kind in ('equipment','vacant_units','renovation_check','renovation_sample','household_visits','estate_patrol')"
)


def upgrade() -> None:
    op.add_column("round_schedules", sa.Column("kind", sa.String(length=24), server_default="equipment", nullable=False))
    op.add_column("round_schedules", sa.Column("role", sa.String(length=16), nullable=True))
    op.add_column("round_schedules", sa.Column("calendar", sa.String(length=16), nullable=True))
    op.alter_column("round_schedules", "room_id", existing_type=sa.Integer(), nullable=True)
    op.create_check_constraint(op.f("ck_round_schedules_kind"), "round_schedules", KINDS)
    op.create_check_constraint(
        op.f("ck_round_schedules_subject"), "round_schedules", "(kind = 'equipment') = (room_id IS NOT NULL)"
    )
    op.create_check_constraint(
        op.f("ck_round_schedules_calendar"), "round_schedules", "calendar is null or calendar in ('quarter')"
    )
    op.create_index(
        "uq_round_schedules_estate_code",
        "round_schedules",
        ["estate_id", "code"],
        unique=True,
        postgresql_where=sa.text("room_id IS NULL"),
    )
    op.add_column(
        "inspection_rounds", sa.Column("kind", sa.String(length=24), server_default="equipment", nullable=False)
    )
    op.alter_column("inspection_rounds", "room_id", existing_type=sa.Integer(), nullable=True)
    op.create_index(
        "ix_inspection_rounds_estate_id_kind_window_start",
        "inspection_rounds",
        ["estate_id", "kind", "window_start"],
        unique=False,
    )
    op.create_table(
        "round_tasks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("round_id", sa.BigInteger(), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("building_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("performed_by", sa.String(length=64), nullable=True),
        sa.Column("performed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("ticket_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("num_nonnulls(unit_id, building_id) = 1", name=op.f("ck_round_tasks_subject")),
        sa.CheckConstraint("status in ('pending','done','skipped')", name=op.f("ck_round_tasks_status")),
        sa.CheckConstraint("outcome is null or outcome in ('ok','finding')", name=op.f("ck_round_tasks_outcome")),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.id"], name=op.f("fk_round_tasks_building_id_buildings"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_round_tasks_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["inspection_rounds.id"],
            name=op.f("fk_round_tasks_round_id_inspection_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_round_tasks_ticket_id_tickets"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_round_tasks_unit_id_units"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_tasks")),
        sa.UniqueConstraint("round_id", "unit_id", name=op.f("uq_round_tasks_round_id_unit_id")),
        sa.UniqueConstraint("round_id", "building_id", name=op.f("uq_round_tasks_round_id_building_id")),
    )
    op.create_index(op.f("ix_round_tasks_round_id"), "round_tasks", ["round_id"], unique=False)
    op.create_index("ix_round_tasks_estate_id_status", "round_tasks", ["estate_id", "status"], unique=False)
    op.create_index("ix_round_tasks_unit_id", "round_tasks", ["unit_id"], unique=False)


def downgrade() -> None:
    op.drop_table("round_tasks")
    op.execute("DELETE FROM inspection_rounds WHERE room_id IS NULL")
    op.execute("DELETE FROM round_schedules WHERE room_id IS NULL")
    op.drop_index("ix_inspection_rounds_estate_id_kind_window_start", table_name="inspection_rounds")
    op.alter_column("inspection_rounds", "room_id", existing_type=sa.Integer(), nullable=False)
    op.drop_column("inspection_rounds", "kind")
    op.drop_index("uq_round_schedules_estate_code", table_name="round_schedules")
    op.drop_constraint(op.f("ck_round_schedules_calendar"), "round_schedules", type_="check")
    op.drop_constraint(op.f("ck_round_schedules_subject"), "round_schedules", type_="check")
    op.drop_constraint(op.f("ck_round_schedules_kind"), "round_schedules", type_="check")
    op.alter_column("round_schedules", "room_id", existing_type=sa.Integer(), nullable=False)
    op.drop_column("round_schedules", "calendar")
    op.drop_column("round_schedules", "role")
    op.drop_column("round_schedules", "kind")
