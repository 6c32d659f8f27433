"""alarm rules, per-(rule, point) evaluator state, alarms (one open per rule+point)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:31:52.057382
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alarm_rules',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('severity_policy', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default='true', nullable=False),
    sa.CheckConstraint("kind in ('threshold','repeat','rate_of_change','stale','composite')", name=op.f('ck_alarm_rules_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarm_rules')),
    sa.UniqueConstraint('code', name=op.f('uq_alarm_rules_code'))
    )
    op.create_index(op.f('ix_alarm_rules_metric'), 'alarm_rules', ['metric'], unique=False)
    op.create_table('alarm_states',
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('state', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['point_id'], ['points.id'], name=op.f('fk_alarm_states_point_id_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['alarm_rules.id'], name=op.f('fk_alarm_states_rule_id_alarm_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'point_id', name=op.f('pk_alarm_states'))
    )
    op.create_table('alarms',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('clear_reason', sa.String(length=32), nullable=True),
    sa.Column('peak', sa.Double(), nullable=True),
    sa.Column('last_value', sa.Double(), nullable=True),
    sa.CheckConstraint("severity in ('warning','alarm','critical')", name=op.f('ck_alarms_severity')),
    sa.CheckConstraint("state in ('active','acknowledged','cleared')", name=op.f('ck_alarms_state')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_alarms_device_id_devices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['estate_id'], ['estates.id'], name=op.f('fk_alarms_estate_id_estates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['point_id'], ['points.id'], name=op.f('fk_alarms_point_id_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['alarm_rules.id'], name=op.f('fk_alarms_rule_id_alarm_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alarms'))
    )
    op.create_index(op.f('ix_alarms_device_id'), 'alarms', ['device_id'], unique=False)
    op.create_index('ix_alarms_estate_id_state', 'alarms', ['estate_id', 'state'], unique=False)
    op.create_index(op.f('ix_alarms_point_id'), 'alarms', ['point_id'], unique=False)
    op.create_index('uq_alarms_open_rule_point', 'alarms', ['rule_id', 'point_id'], unique=True, postgresql_where="state <> 'cleared'")


def downgrade() -> None:
    op.drop_index('uq_alarms_open_rule_point', table_name='alarms', postgresql_where="state <> 'cleared'")
    op.drop_index(op.f('ix_alarms_point_id'), table_name='alarms')
    op.drop_index('ix_alarms_estate_id_state', table_name='alarms')
    op.drop_index(op.f('ix_alarms_device_id'), table_name='alarms')
    op.drop_table('alarms')
    op.drop_table('alarm_states')
    op.drop_index(op.f('ix_alarm_rules_metric'), table_name='alarm_rules')
    op.drop_table('alarm_rules')
