"""outbox.device_id: the device a command is for, so only that device's ack marks it (issue 9 #6)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('outbox', sa.Column('device_id', sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f('fk_outbox_device_id_devices'), 'outbox', 'devices', ['device_id'], ['id'], ondelete='CASCADE'
    )
    op.create_index(op.f('ix_outbox_device_id'), 'outbox', ['device_id'], unique=False)
    # Existing rows: the device named by the downlink topic steward/{estate}/down/{device}/{command}.
    op.execute(
        """
        UPDATE outbox o SET device_id = d.id
        FROM devices d JOIN estates e ON e.id = d.estate_id
        WHERE split_part(o.topic, '/', 1) = 'steward' AND split_part(o.topic, '/', 3) = 'down'
          AND split_part(o.topic, '/', 2) = e.code AND split_part(o.topic, '/', 4) = d.code
        """
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_outbox_device_id'), table_name='outbox')
    op.drop_constraint(op.f('fk_outbox_device_id_devices'), 'outbox', type_='foreignkey')
    op.drop_column('outbox', 'device_id')
