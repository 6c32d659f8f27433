"""billing statements: quarters per estate (open/closed), quarterly statements, late-charge booking, manual readings

billing_periods closes an estate's quarter; billing_statements holds one statement per household and
quarter; meter_charges.booked_period marks a late reading's charge booked in a later open quarter;
billing_manual_readings keeps the SOP's hand-read registers and their reconciliation verdicts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('meter_charges', sa.Column('booked_period', sa.String(length=7), nullable=True))
    op.create_index(
        'ix_meter_charges_booked_period', 'meter_charges', ['booked_period'], unique=False,
        postgresql_where=sa.text('booked_period IS NOT NULL'),
    )
    op.create_table('billing_periods',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=8), server_default='open', nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=True),
    sa.CheckConstraint("status in ('open','closed')", name=op.f('ck_billing_periods_status')),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_billing_periods_span')),
    sa.CheckConstraint("(status = 'closed') = (closed_at IS NOT NULL)", name=op.f('ck_billing_periods_closed_when')),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_billing_periods_estate_id_estates'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_periods')),
    sa.UniqueConstraint('estate_id', 'period', name=op.f('uq_billing_periods_estate_id_period')),
    )
    op.create_table('billing_statements',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opening_fen', sa.BigInteger(), nullable=False),
    sa.Column('charges_fen', sa.BigInteger(), nullable=False),
    sa.Column('charges_m3', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('late_fen', sa.BigInteger(), nullable=False),
    sa.Column('late_m3', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('payments_fen', sa.BigInteger(), nullable=False),
    sa.Column('refunds_fen', sa.BigInteger(), nullable=False),
    sa.Column('adjustments_fen', sa.BigInteger(), nullable=False),
    sa.Column('closing_fen', sa.BigInteger(), nullable=False),
    sa.Column('first_reading_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_register', sa.Numeric(), nullable=True),
    sa.Column('last_reading_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_register', sa.Numeric(), nullable=True),
    sa.Column('by_tariff', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('late', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        'closing_fen = opening_fen + payments_fen - refunds_fen + adjustments_fen - charges_fen - late_fen',
        name=op.f('ck_billing_statements_balances'),
    ),
    sa.ForeignKeyConstraint(['account_id'], ['billing_accounts.id'], name=op.f('fk_billing_statements_account_id_billing_accounts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_billing_statements_estate_id_estates'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_statements')),
    sa.UniqueConstraint('account_id', 'period', name=op.f('uq_billing_statements_account_id_period')),
    )
    op.create_index('ix_billing_statements_estate_id_period', 'billing_statements', ['estate_id', 'period'], unique=False)
    op.create_table('billing_manual_readings',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Numeric(), nullable=False),
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.Column('in_sop_window', sa.Boolean(), nullable=False),
    sa.Column('register', sa.Numeric(), nullable=True),
    sa.Column('register_method', sa.String(length=16), nullable=True),
    sa.Column('difference', sa.Numeric(), nullable=True),
    sa.Column('tolerance', sa.Numeric(), nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.BigInteger(), nullable=True),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("verdict in ('ok','mismatch','no_data')", name=op.f('ck_billing_manual_readings_verdict')),
    sa.CheckConstraint('value >= 0', name=op.f('ck_billing_manual_readings_value')),
    sa.UniqueConstraint('device_id', 'read_at', name=op.f('uq_billing_manual_readings_device_id_read_at')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_billing_manual_readings_device_id_devices'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_billing_manual_readings_estate_id_estates'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_billing_manual_readings_ticket_id_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_manual_readings')),
    )
    op.create_index('ix_billing_manual_readings_estate_id_read_at', 'billing_manual_readings', ['estate_id', 'read_at'], unique=False)


def downgrade() -> None:
    op.drop_table('billing_manual_readings')
    op.drop_table('billing_statements')
    op.drop_table('billing_periods')
    op.drop_index('ix_meter_charges_booked_period', table_name='meter_charges')
    op.drop_column('meter_charges', 'booked_period')
