"""callbacks and warranty: tickets.fault (in-person callback), warranty handovers and terms, developer charge-backs

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("fault", sa.String(length=16), nullable=True))
    op.create_check_constraint(op.f("ck_tickets_fault"), "tickets", "fault is null or fault in ('outage','leak')")
    op.create_table(
        "warranty_handovers",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=True),
        sa.Column("handover_on", sa.Date(), nullable=False),
        sa.Column("developer", sa.String(length=64), nullable=False),
        sa.Column("response_days", sa.SmallInteger(), server_default="7", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("response_days between 1 and 90", name=op.f("ck_warranty_handovers_response_days")),
        sa.ForeignKeyConstraint(
            ["building_id"],
            ["buildings.id"],
            name=op.f("fk_warranty_handovers_building_id_buildings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_warranty_handovers_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warranty_handovers")),
    )
    op.create_index(
        "uq_warranty_handovers_estate",
        "warranty_handovers",
        ["estate_id"],
        unique=True,
        postgresql_where=sa.text("building_id IS NULL"),
    )
    op.create_index(
        "uq_warranty_handovers_building",
        "warranty_handovers",
        ["building_id"],
        unique=True,
        postgresql_where=sa.text("building_id IS NOT NULL"),
    )
    op.create_table(
        "warranty_terms",
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=24), nullable=False),
        sa.Column("years", sa.SmallInteger(), nullable=True),
        sa.Column("heating_seasons", sa.SmallInteger(), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "item in ('roof_waterproofing','heating','decoration','mep')", name=op.f("ck_warranty_terms_item")
        ),
        sa.CheckConstraint("(years is null) <> (heating_seasons is null)", name=op.f("ck_warranty_terms_one_measure")),
        sa.CheckConstraint("years is null or years between 0 and 50", name=op.f("ck_warranty_terms_years")),
        sa.CheckConstraint(
            "heating_seasons is null or heating_seasons between 0 and 50",
            name=op.f("ck_warranty_terms_heating_seasons"),
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_warranty_terms_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("estate_id", "item", name=op.f("pk_warranty_terms")),
    )
    op.create_table(
        "ticket_chargebacks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(length=64), nullable=False),
        sa.Column("warranty_item", sa.String(length=24), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("missed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount_fen is null or amount_fen >= 0", name=op.f("ck_ticket_chargebacks_amount_fen")),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_ticket_chargebacks_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_chargebacks_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_chargebacks")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_ticket_chargebacks_ticket_id")),
    )
    op.create_index(op.f("ix_ticket_chargebacks_estate_id"), "ticket_chargebacks", ["estate_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ticket_chargebacks_estate_id"), table_name="ticket_chargebacks")
    op.drop_table("ticket_chargebacks")
    op.drop_table("warranty_terms")
    op.drop_index("uq_warranty_handovers_building", table_name="warranty_handovers")
    op.drop_index("uq_warranty_handovers_estate", table_name="warranty_handovers")
    op.drop_table("warranty_handovers")
    op.drop_constraint(op.f("ck_tickets_fault"), "tickets", type_="check")
    op.drop_column("tickets", "fault")
