"""coverage gaps: the monitor's open gaps, alerted once

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 01:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coverage_gaps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=80), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['region_id'], ['regions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_coverage_gaps_open', 'coverage_gaps', ['kind', 'code'], unique=True,
                    sqlite_where=sa.text('closed_at IS NULL'),
                    postgresql_where=sa.text('closed_at IS NULL'))
    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gap_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_push_deliveries_gap_id', 'coverage_gaps', ['gap_id'],
                                    ['id'])


def downgrade() -> None:
    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_push_deliveries_gap_id', type_='foreignkey')
        batch_op.drop_column('gap_id')
    op.drop_index('ix_coverage_gaps_open', table_name='coverage_gaps')
    op.drop_table('coverage_gaps')
