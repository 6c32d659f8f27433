"""access cards: doors, cards and their scopes; billing kinds for card fees and renovation deposits

access_doors are the doors of the estate's door controllers; access_cards the 《智能卡发放登记表》 records;
access_card_doors each card's scope. A controller's whitelist is derived from them (access/whitelist.py).
The ledger gains the estate accounts and transaction kinds of card fees and renovation-pass deposits.

Revision ID: 0015
Revises: 0013 (the lead re-chains onto 0014 at merge)
Create Date: 2026-12-05 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

ACCOUNT_KINDS_OLD = "kind in ('hot_water','cash_counter','cash_bank_transfer','cash_online','revenue_hot_water','adjustments')"
ACCOUNT_KINDS_NEW = (
    "kind in ('hot_water','cash_counter','cash_bank_transfer','cash_online','revenue_hot_water','adjustments',"
    "'revenue_access_cards','deposits_held','revenue_forfeits')"
)
TX_KINDS_OLD = "kind in ('payment','charge','refund','adjustment')"
TX_KINDS_NEW = "kind in ('payment','charge','refund','adjustment','fee','deposit','deposit_refund','deposit_forfeit')"


def upgrade() -> None:
    op.drop_constraint(op.f('ck_billing_accounts_kind'), 'billing_accounts', type_='check')
    op.create_check_constraint(op.f('ck_billing_accounts_kind'), 'billing_accounts', ACCOUNT_KINDS_NEW)
    op.drop_constraint(op.f('ck_ledger_transactions_kind'), 'ledger_transactions', type_='check')
    op.create_check_constraint(op.f('ck_ledger_transactions_kind'), 'ledger_transactions', TX_KINDS_NEW)

    op.create_table('access_doors',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('controller_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('building_id', sa.Integer(), nullable=True),
    sa.Column('entrance', sa.String(length=16), nullable=True),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind in ('gate','building','unit_entrance','garage','equipment_room')", name=op.f('ck_access_doors_kind')),
    sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_access_doors_building_id_buildings'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['controller_id'], ['devices.id'], name=op.f('fk_access_doors_controller_id_devices'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_access_doors_estate_id_estates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_access_doors_room_id_rooms'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_doors')),
    sa.UniqueConstraint('estate_id', 'code', name=op.f('uq_access_doors_estate_id_code'))
    )
    op.create_index(op.f('ix_access_doors_controller_id'), 'access_doors', ['controller_id'], unique=False)
    op.create_index(op.f('ix_access_doors_estate_id'), 'access_doors', ['estate_id'], unique=False)
    op.create_table('access_cards',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('card_type', sa.String(length=16), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('uid', sa.String(length=20), nullable=False),
    sa.Column('holder_name', sa.String(length=64), nullable=False),
    sa.Column('holder_phone', sa.String(length=32), server_default='', nullable=False),
    sa.Column('staff_role', sa.String(length=24), nullable=True),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('time_profile', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_by', sa.String(length=64), nullable=False),
    sa.Column('status_reason', sa.Text(), server_default='', nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('free', sa.Boolean(), nullable=False),
    sa.Column('fee_fen', sa.Integer(), server_default='0', nullable=False),
    sa.Column('deposit_fen', sa.Integer(), server_default='0', nullable=False),
    sa.Column('deposit_state', sa.String(length=16), server_default='none', nullable=False),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.CheckConstraint("card_type in ('owner','family','tenant','renovation','visitor','staff')", name=op.f('ck_access_cards_card_type')),
    sa.CheckConstraint("status in ('active','lost','revoked','expired','returned')", name=op.f('ck_access_cards_status')),
    sa.CheckConstraint("deposit_state in ('none','held','refunded','forfeited')", name=op.f('ck_access_cards_deposit_state')),
    sa.CheckConstraint("uid ~ '^[0-9A-F]+$'", name=op.f('ck_access_cards_uid_hex')),
    sa.CheckConstraint('fee_fen >= 0 AND deposit_fen >= 0', name=op.f('ck_access_cards_money')),
    sa.CheckConstraint('valid_until IS NULL OR valid_until > valid_from', name=op.f('ck_access_cards_validity')),
    sa.CheckConstraint("(card_type = 'staff') OR unit_id IS NOT NULL", name=op.f('ck_access_cards_unit_unless_staff')),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_access_cards_estate_id_estates'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['replaces_id'], ['access_cards.id'], name=op.f('fk_access_cards_replaces_id_access_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_access_cards_unit_id_units'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_cards'))
    )
    op.create_index(op.f('ix_access_cards_estate_id'), 'access_cards', ['estate_id'], unique=False)
    op.create_index('ix_access_cards_unit_status', 'access_cards', ['unit_id', 'status'], unique=False)
    op.create_index('ix_access_cards_expiry', 'access_cards', ['valid_until'], unique=False, postgresql_where="status = 'active'")
    op.create_index('uq_access_cards_live_uid', 'access_cards', ['format', 'uid'], unique=True, postgresql_where="status = 'active'")
    op.create_table('access_card_doors',
    sa.Column('card_id', sa.Integer(), nullable=False),
    sa.Column('door_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['card_id'], ['access_cards.id'], name=op.f('fk_access_card_doors_card_id_access_cards'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['door_id'], ['access_doors.id'], name=op.f('fk_access_card_doors_door_id_access_doors'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('card_id', 'door_id', name=op.f('pk_access_card_doors'))
    )
    op.create_index(op.f('ix_access_card_doors_door_id'), 'access_card_doors', ['door_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_access_card_doors_door_id'), table_name='access_card_doors')
    op.drop_table('access_card_doors')
    op.drop_index('uq_access_cards_live_uid', table_name='access_cards', postgresql_where="status = 'active'")
    op.drop_index('ix_access_cards_expiry', table_name='access_cards', postgresql_where="status = 'active'")
    op.drop_index('ix_access_cards_unit_status', table_name='access_cards')
    op.drop_index(op.f('ix_access_cards_estate_id'), table_name='access_cards')
    op.drop_table('access_cards')
    op.drop_index(op.f('ix_access_doors_estate_id'), table_name='access_doors')
    op.drop_index(op.f('ix_access_doors_controller_id'), table_name='access_doors')
    op.drop_table('access_doors')
    op.drop_constraint(op.f('ck_ledger_transactions_kind'), 'ledger_transactions', type_='check')
    op.create_check_constraint(op.f('ck_ledger_transactions_kind'), 'ledger_transactions', TX_KINDS_OLD)
    op.drop_constraint(op.f('ck_billing_accounts_kind'), 'billing_accounts', type_='check')
    op.create_check_constraint(op.f('ck_billing_accounts_kind'), 'billing_accounts', ACCOUNT_KINDS_OLD)
