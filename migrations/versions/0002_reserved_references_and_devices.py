"""reserved references and devices

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 07:45:26.812746
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devices',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=True),
    sa.Column('outbox_depth', sa.Integer(), nullable=False),
    sa.Column('oldest_unsent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['facility_id'], ['facilities.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_facility_id'), ['facility_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_user_id'), ['user_id'], unique=False)

    op.create_table('reserved_references',
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('facility_id', sa.Integer(), nullable=False),
    sa.Column('reserved_by_id', sa.Integer(), nullable=False),
    sa.Column('reserved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_by_report_id', sa.String(length=36), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['facility_id'], ['facilities.id'], ),
    sa.ForeignKeyConstraint(['reserved_by_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('reference')
    )
    with op.batch_alter_table('reserved_references', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reserved_references_facility_id'), ['facility_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reserved_references', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reserved_references_facility_id'))

    op.drop_table('reserved_references')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_user_id'))
        batch_op.drop_index(batch_op.f('ix_devices_facility_id'))

    op.drop_table('devices')
