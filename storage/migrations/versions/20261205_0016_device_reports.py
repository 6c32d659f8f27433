"""device reports: each door controller's reported whitelist state; outbox status 'refused'

device_whitelist_states keeps what each controller says it holds (version, digest, entries), from its
(re)connect status or its first answer to a whitelist command. An outbox row the device answered with anything
but "applied" is closed as 'refused' (the reason in last_error); the open set (ix_outbox_open) stays
pending|sent, so the dispatcher never resends it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
# TEMPORARY: 0014 and 0015 are written on other branches; the lead re-chains this to '0015' at merge.
down_revision = "0015"
branch_labels = None
depends_on = None

OLD_STATUSES = "status in ('pending','sent','acknowledged','expired','failed')"
NEW_STATUSES = "status in ('pending','sent','acknowledged','refused','expired','failed')"


def upgrade() -> None:
    op.create_table(
        "device_whitelist_states",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.CheckConstraint("via in ('status','ack')", name=op.f("ck_device_whitelist_states_via")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_whitelist_states_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_whitelist_states")),
    )
    op.drop_constraint(op.f("ck_outbox_status"), "outbox", type_="check")
    op.create_check_constraint(op.f("ck_outbox_status"), "outbox", NEW_STATUSES)


def downgrade() -> None:
    # The old schema has no 'refused': such a command was never applied, closest to 'failed' (reason kept).
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'refused'")
    op.drop_constraint(op.f("ck_outbox_status"), "outbox", type_="check")
    op.create_check_constraint(op.f("ck_outbox_status"), "outbox", OLD_STATUSES)
    op.drop_table("device_whitelist_states")
