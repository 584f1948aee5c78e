"""a notice's pushes of one status, from one index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 07:00:00

A listed report shows when each notice was delivered (its first sent push), and a list's
stamps count each notice's sent pushes. With one index on the notice and another on the
status, SQLite (without statistics) took the status's: every sent push of every notice was
read for each notice of a page. One index on both answers either question.
"""

from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_push_deliveries_notice_id_status', 'push_deliveries',
                    ['notice_id', 'status'])
    op.drop_index('ix_push_deliveries_notice_id', table_name='push_deliveries')


def downgrade() -> None:
    op.create_index('ix_push_deliveries_notice_id', 'push_deliveries', ['notice_id'])
    op.drop_index('ix_push_deliveries_notice_id_status', table_name='push_deliveries')
