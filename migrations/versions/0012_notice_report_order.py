"""an agency's reports in list order, from the notices' own index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 06:00:00

An officer's inbox lists the reports routed to the agency, newest first, a page at a time.
Found through the reports, a page cost as much as the agency's whole inbox: every open report
was read and matched against the agency's notices before the newest fifty were chosen. Each
notice now carries its report's received_at (copied when it is made; a report's received_at
never changes), and the index (agency_id, report_received_at, report_id) gives an agency's
reports in list order: a page reads its notices newest first and stops once it is full.

The copy changes nothing a notice shows: the backfill leaves the reports' revisions (and the
export lines rendered from them) alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

COLUMN = 'report_received_at'
INDEX = 'ix_notices_agency_id_report_order'


@contextmanager
def _notices_rebuilt_on_sqlite() -> Iterator[bool]:
    """SQLite changes a column's nullability by copying the table, and the copy has none of
    the notices' triggers (migration 0011): they are read first and made again after. Yields
    whether the database is SQLite."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield False
        return
    triggers = bind.execute(sa.text("SELECT name, sql FROM sqlite_master "
                                    "WHERE type = 'trigger' AND tbl_name = 'notices'")).all()
    for trigger in triggers:
        op.execute(f'DROP TRIGGER {trigger.name}')
    yield True
    for trigger in triggers:
        op.execute(trigger.sql)


def upgrade() -> None:
    op.add_column('notices', sa.Column(COLUMN, sa.DateTime(timezone=True), nullable=True))
    backfill = sa.text(f"UPDATE notices SET {COLUMN} = (SELECT reports.received_at FROM "
                       "reports WHERE reports.id = notices.report_id)")
    with _notices_rebuilt_on_sqlite() as is_sqlite:
        if is_sqlite:
            op.execute(backfill)
        else:
            op.execute('ALTER TABLE notices DISABLE TRIGGER notices_revision_update')
            op.execute(backfill)
            op.execute('ALTER TABLE notices ENABLE TRIGGER notices_revision_update')
        with op.batch_alter_table('notices', schema=None) as batch_op:
            batch_op.alter_column(COLUMN, existing_type=sa.DateTime(timezone=True),
                                  nullable=False)
    op.create_index(INDEX, 'notices', ['agency_id', COLUMN, 'report_id'])


def downgrade() -> None:
    op.drop_index(INDEX, table_name='notices')
    with _notices_rebuilt_on_sqlite(), op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_column(COLUMN)
