"""shift handover and wall display: shift definitions, handover records (final once signed), display tokens

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shift_definitions",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name_zh", sa.String(length=32), nullable=False),
        sa.Column("name_en", sa.String(length=32), server_default="", nullable=False),
        sa.Column("starts_at", sa.Time(), nullable=False),
        sa.Column("ends_at", sa.Time(), nullable=False),
        sa.CheckConstraint("starts_at <> ends_at", name=op.f("ck_shift_definitions_not_empty")),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_shift_definitions_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_definitions")),
        sa.UniqueConstraint("estate_id", "code", name=op.f("uq_shift_definitions_estate_id_code")),
    )
    op.create_table(
        "shift_handovers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("shift_code", sa.String(length=16), nullable=False),
        sa.Column("shift_name_zh", sa.String(length=32), nullable=False),
        sa.Column("shift_name_en", sa.String(length=32), server_default="", nullable=False),
        sa.Column("shift_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shift_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outgoing_id", sa.Integer(), nullable=False),
        sa.Column("outgoing_name", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("snapshot", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incoming_id", sa.Integer(), nullable=True),
        sa.Column("incoming_name", sa.String(length=64), nullable=True),
        sa.Column("incoming_note", sa.Text(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("shift_end > shift_start", name=op.f("ck_shift_handovers_window")),
        sa.CheckConstraint("(signed_at IS NULL) = (incoming_id IS NULL)", name=op.f("ck_shift_handovers_signed")),
        sa.CheckConstraint(
            "incoming_id IS NULL OR incoming_id <> outgoing_id", name=op.f("ck_shift_handovers_two_people")
        ),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_shift_handovers_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["outgoing_id"], ["staff_users.id"], name=op.f("fk_shift_handovers_outgoing_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["incoming_id"], ["staff_users.id"], name=op.f("fk_shift_handovers_incoming_id_staff_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_handovers")),
        sa.UniqueConstraint("estate_id", "shift_start", name=op.f("uq_shift_handovers_estate_id_shift_start")),
    )
    # A signed record is final: not even the application's own code may change it afterwards.
    op.execute(
        """
CREATE FUNCTION shift_handover_signed_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.signed_at IS NOT NULL THEN
        RAISE EXCEPTION 'shift handover % is signed and final: UPDATE refused', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER shift_handovers_signed_is_final BEFORE UPDATE ON shift_handovers
    FOR EACH ROW EXECUTE FUNCTION shift_handover_signed_is_final();
"""
    )
    op.create_table(
        "display_tokens",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("estate_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["estate_id"], ["estates.id"], name=op.f("fk_display_tokens_estate_id_estates"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_display_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_display_tokens_token_hash")),
    )
    op.create_index(op.f("ix_display_tokens_estate_id"), "display_tokens", ["estate_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_display_tokens_estate_id"), table_name="display_tokens")
    op.drop_table("display_tokens")
    op.execute("DROP TRIGGER shift_handovers_signed_is_final ON shift_handovers")
    op.execute("DROP FUNCTION shift_handover_signed_is_final()")
    op.drop_table("shift_handovers")
    op.drop_table("shift_definitions")
