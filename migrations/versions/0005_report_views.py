"""report views (report:viewed once per session for lists)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('report_views',
    sa.Column('session_key', sa.String(length=80), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('session_key', 'report_id')
    )


def downgrade() -> None:
    op.drop_table('report_views')
