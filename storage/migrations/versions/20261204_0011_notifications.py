"""notifications: delivery queue, staff e-mail, outbox status / expiry / next attempt, 'command' alarm rules

notification_deliveries is the queue of notifications/ (one row per key, channel and recipient: a notice
is never sent twice). The outbox gets the columns worker/outbox.py lacked: a status (pending, sent,
acknowledged, expired, failed), when it expired, when to try next (replacing the dispatcher's in-memory
backoff) and the last error. Existing rows get the status their timestamps imply.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

OLD_KINDS = "kind in ('threshold','repeat','rate_of_change','stale','composite','meter','round')"
NEW_KINDS = "kind in ('threshold','repeat','rate_of_change','stale','composite','meter','round','command')"


def upgrade() -> None:
    op.create_table('notification_deliveries',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=True),
    sa.Column('extra', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status in ('pending','sent','failed','gave_up')", name=op.f('ck_notification_deliveries_status')),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_notification_deliveries_estate_id_estates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_deliveries')),
    sa.UniqueConstraint('key', 'channel', 'recipient', name=op.f('uq_notification_deliveries_key_channel_recipient'))
    )
    op.create_index(op.f('ix_notification_deliveries_estate_id'), 'notification_deliveries', ['estate_id'], unique=False)
    op.create_index('ix_notification_deliveries_due', 'notification_deliveries', ['next_attempt_at'], unique=False, postgresql_where="status IN ('pending','failed')")
    op.create_index('ix_notification_deliveries_source_status', 'notification_deliveries', ['source', 'status'], unique=False)

    op.add_column('staff_users', sa.Column('email', sa.String(length=254), nullable=True))

    op.add_column('outbox', sa.Column('status', sa.String(length=16), server_default='pending', nullable=False))
    op.add_column('outbox', sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('outbox', sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('outbox', sa.Column('last_error', sa.Text(), nullable=True))
    op.execute(
        """
        UPDATE outbox SET status = CASE
            WHEN acked_at IS NOT NULL THEN 'acknowledged'
            WHEN sent_at IS NOT NULL THEN 'sent'
            WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
            ELSE 'pending' END,
          expired_at = CASE WHEN acked_at IS NULL AND sent_at IS NULL AND expires_at <= now() THEN expires_at END,
          -- Sent and not acknowledged: the ack deadline counts from the send (the default 60 s timeout).
          next_attempt_at = CASE WHEN acked_at IS NULL AND sent_at IS NOT NULL THEN sent_at + interval '60 seconds' END
        """
    )
    op.create_check_constraint(op.f('ck_outbox_status'), 'outbox', "status in ('pending','sent','acknowledged','expired','failed')")
    op.drop_index('ix_outbox_pending', table_name='outbox', postgresql_where='sent_at IS NULL')
    op.create_index('ix_outbox_open', 'outbox', ['created_at'], unique=False, postgresql_where="status IN ('pending','sent')")

    op.drop_constraint(op.f('ck_alarm_rules_kind'), 'alarm_rules', type_='check')
    op.create_check_constraint(op.f('ck_alarm_rules_kind'), 'alarm_rules', NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM alarm_rules WHERE kind = 'command'")
    op.drop_constraint(op.f('ck_alarm_rules_kind'), 'alarm_rules', type_='check')
    op.create_check_constraint(op.f('ck_alarm_rules_kind'), 'alarm_rules', OLD_KINDS)
    op.drop_index('ix_outbox_open', table_name='outbox', postgresql_where="status IN ('pending','sent')")
    op.create_index('ix_outbox_pending', 'outbox', ['created_at'], unique=False, postgresql_where='sent_at IS NULL')
    op.drop_constraint(op.f('ck_outbox_status'), 'outbox', type_='check')
    op.drop_column('outbox', 'last_error')
    op.drop_column('outbox', 'next_attempt_at')
    op.drop_column('outbox', 'expired_at')
    op.drop_column('outbox', 'status')
    op.drop_column('staff_users', 'email')
    op.drop_index('ix_notification_deliveries_source_status', table_name='notification_deliveries')
    op.drop_index('ix_notification_deliveries_due', table_name='notification_deliveries', postgresql_where="status IN ('pending','failed')")
    op.drop_index(op.f('ix_notification_deliveries_estate_id'), table_name='notification_deliveries')
    op.drop_table('notification_deliveries')
