"""amendment reason: why a report was corrected

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('report_amendments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('report_amendments', schema=None) as batch_op:
        batch_op.drop_column('reason')
