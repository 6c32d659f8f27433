"""estate model and ingest tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 01:39:49.008616
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('access_events',
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('controller_id', sa.Integer(), nullable=False),
    sa.Column('door', sa.String(length=64), nullable=False),
    sa.Column('card_uid', sa.String(length=20), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('controller_id', 'ts', 'card_uid', name=op.f('pk_access_events'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=128), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], unique=False)
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    op.create_index(op.f('ix_dead_letters_received_at'), 'dead_letters', ['received_at'], unique=False)
    op.create_table('estates',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('city', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), server_default='Asia/Shanghai', nullable=False),
    sa.Column('policy', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_estates')),
    sa.UniqueConstraint('code', name=op.f('uq_estates_code'))
    )
    op.create_table('meter_readings',
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('register', sa.Numeric(), nullable=False),
    sa.Column('reverse_register', sa.Numeric(), nullable=True),
    sa.Column('valve', sa.String(length=8), nullable=True),
    sa.Column('flags', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'ts', name=op.f('pk_meter_readings'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_pending', 'outbox', ['created_at'], unique=False, postgresql_where='sent_at IS NULL')
    op.create_table('quarantined_messages',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('device_code', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('reason', sa.String(length=48), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_messages'))
    )
    op.create_index(op.f('ix_quarantined_messages_device_code'), 'quarantined_messages', ['device_code'], unique=False)
    op.create_index(op.f('ix_quarantined_messages_reason'), 'quarantined_messages', ['reason'], unique=False)
    op.create_index(op.f('ix_quarantined_messages_received_at'), 'quarantined_messages', ['received_at'], unique=False)
    op.create_table('samples',
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('point_id', 'ts', name=op.f('pk_samples'))
    )
    op.create_table('samples_hourly',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('total', sa.Double(), nullable=False),
    sa.Column('min', sa.Double(), nullable=False),
    sa.Column('max', sa.Double(), nullable=False),
    sa.Column('last_ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('point_id', 'bucket', name=op.f('pk_samples_hourly'))
    )
    op.create_table('buildings',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('floors', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_buildings_estate_id_estates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_buildings')),
    sa.UniqueConstraint('estate_id', 'code', name=op.f('uq_buildings_estate_id_code'))
    )
    op.create_index(op.f('ix_buildings_estate_id'), 'buildings', ['estate_id'], unique=False)
    op.create_table('rooms',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('building_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_rooms_building_id_buildings'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_rooms_estate_id_estates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rooms')),
    sa.UniqueConstraint('estate_id', 'code', name=op.f('uq_rooms_estate_id_code'))
    )
    op.create_index(op.f('ix_rooms_estate_id'), 'rooms', ['estate_id'], unique=False)
    op.create_table('units',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('building_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('entrance', sa.String(length=16), nullable=False),
    sa.Column('floor', sa.SmallInteger(), nullable=False),
    sa.Column('area_m2', sa.Numeric(precision=8, scale=2), nullable=False),
    sa.Column('occupancy', sa.String(length=16), nullable=False),
    sa.Column('registered_occupants', sa.SmallInteger(), nullable=False),
    sa.Column('has_pv', sa.Boolean(), nullable=False),
    sa.CheckConstraint("occupancy in ('vacant','occupied','renovating')", name=op.f('ck_units_occupancy')),
    sa.CheckConstraint('registered_occupants >= 0', name=op.f('ck_units_registered_occupants')),
    sa.ForeignKeyConstraint(['building_id'], ['buildings.id'], name=op.f('fk_units_building_id_buildings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_units')),
    sa.UniqueConstraint('building_id', 'code', name=op.f('uq_units_building_id_code'))
    )
    op.create_index(op.f('ix_units_building_id'), 'units', ['building_id'], unique=False)
    op.create_table('devices',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=48), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('register_max', sa.Numeric(precision=20, scale=6), nullable=True),
    sa.Column('multiplier', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('resolution', sa.Numeric(precision=12, scale=6), nullable=True),
    sa.Column('has_valve', sa.Boolean(), nullable=False),
    sa.Column('expected_interval_s', sa.Integer(), nullable=False),
    sa.Column('installed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replaced_by_id', sa.Integer(), nullable=True),
    sa.Column('attrs', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_devices_estate_id_estates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['replaced_by_id'], ['devices.id'], name=op.f('fk_devices_replaced_by_id_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_devices_room_id_rooms'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_devices_unit_id_units'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
    sa.UniqueConstraint('code', name=op.f('uq_devices_code'))
    )
    op.create_index(op.f('ix_devices_estate_id'), 'devices', ['estate_id'], unique=False)
    op.create_index(op.f('ix_devices_room_id'), 'devices', ['room_id'], unique=False)
    op.create_index(op.f('ix_devices_unit_id'), 'devices', ['unit_id'], unique=False)
    op.create_table('residents',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('lease_end', sa.Date(), nullable=True),
    sa.Column('vulnerable', sa.Boolean(), nullable=False),
    sa.CheckConstraint("role in ('owner','tenant','family')", name=op.f('ck_residents_role')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_residents_unit_id_units'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_residents'))
    )
    op.create_index(op.f('ix_residents_unit_id'), 'residents', ['unit_id'], unique=False)
    op.create_table('device_state',
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_ts', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seq', sa.BigInteger(), nullable=True),
    sa.Column('online', sa.Boolean(), nullable=True),
    sa.Column('battery_v', sa.Double(), nullable=True),
    sa.Column('status_ts', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_state_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_device_state'))
    )
    op.create_table('points',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.CheckConstraint("kind in ('gauge','counter','state')", name=op.f('ck_points_kind')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_points_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points')),
    sa.UniqueConstraint('device_id', 'metric', name=op.f('uq_points_device_id_metric'))
    )
    op.create_index(op.f('ix_points_device_id'), 'points', ['device_id'], unique=False)
    op.create_table('seq_gaps',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('first_missing', sa.BigInteger(), nullable=False),
    sa.Column('last_missing', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_seq_gaps_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seq_gaps'))
    )
    op.create_index(op.f('ix_seq_gaps_device_id'), 'seq_gaps', ['device_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_seq_gaps_device_id'), table_name='seq_gaps')
    op.drop_table('seq_gaps')
    op.drop_index(op.f('ix_points_device_id'), table_name='points')
    op.drop_table('points')
    op.drop_table('device_state')
    op.drop_index(op.f('ix_residents_unit_id'), table_name='residents')
    op.drop_table('residents')
    op.drop_index(op.f('ix_devices_unit_id'), table_name='devices')
    op.drop_index(op.f('ix_devices_room_id'), table_name='devices')
    op.drop_index(op.f('ix_devices_estate_id'), table_name='devices')
    op.drop_table('devices')
    op.drop_index(op.f('ix_units_building_id'), table_name='units')
    op.drop_table('units')
    op.drop_index(op.f('ix_rooms_estate_id'), table_name='rooms')
    op.drop_table('rooms')
    op.drop_index(op.f('ix_buildings_estate_id'), table_name='buildings')
    op.drop_table('buildings')
    op.drop_table('samples_hourly')
    op.drop_table('samples')
    op.drop_index(op.f('ix_quarantined_messages_received_at'), table_name='quarantined_messages')
    op.drop_index(op.f('ix_quarantined_messages_reason'), table_name='quarantined_messages')
    op.drop_index(op.f('ix_quarantined_messages_device_code'), table_name='quarantined_messages')
    op.drop_table('quarantined_messages')
    op.drop_index('ix_outbox_pending', table_name='outbox', postgresql_where='sent_at IS NULL')
    op.drop_table('outbox')
    op.drop_table('meter_readings')
    op.drop_table('estates')
    op.drop_index(op.f('ix_dead_letters_received_at'), table_name='dead_letters')
    op.drop_table('dead_letters')
    op.drop_index(op.f('ix_audit_log_at'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('access_events')
