"""reporting outcome on the report: the dashboard judges a period's reports without their
deadlines

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 06:00:00

Whether a facility reported in time is settled at filing: the two reporting deadlines
(report_to_guardianship and its statutory bound) are made then, due from discovery, and met
then or never (only when a guardianship agency was notified). The report now carries their
due times and the moment they were met, so that the compliance figures read one range of
reports instead of looking up two deadlines per report by its key (on 1,000,000 reports, the
country's 30 days: about 72,000 reports, 144,000 lookups). The deadlines stay the record;
these columns are copied from them at filing, and here from the deadlines already stored.

The two indexes of a period's reports, the country's (received_at, ...) and a facility's
(facility_id, received_at, ...), now carry the outcome: both databases answer the figures
from the index alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

INTERNAL, STATUTORY = 'report_to_guardianship', 'report_to_guardianship_statutory'
OUTCOME = ['discovered_at', 'reported_at', 'guardianship_due_at',
           'guardianship_statutory_due_at', 'guardianship_reported_at']


def _deadline(column: str, rule: str) -> sa.TextClause:
    return sa.text(f"(SELECT d.{column} FROM deadlines d "  # noqa: S608 (constants only)
                   f"WHERE d.report_id = reports.id AND d.rule = '{rule}')")


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guardianship_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('guardianship_statutory_due_at',
                                      sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('guardianship_reported_at', sa.DateTime(timezone=True),
                                      nullable=True))
    reports = sa.table('reports', sa.column('guardianship_due_at'),
                       sa.column('guardianship_statutory_due_at'),
                       sa.column('guardianship_reported_at'))
    op.execute(reports.update().values(
        guardianship_due_at=_deadline('due_at', INTERNAL),
        guardianship_statutory_due_at=_deadline('due_at', STATUTORY),
        guardianship_reported_at=_deadline('met_at', INTERNAL)))
    op.create_index('ix_reports_received_at_outcome', 'reports',
                    ['received_at', 'facility_id', *OUTCOME])
    op.drop_index('ix_reports_received_at', table_name='reports')
    op.create_index('ix_reports_facility_id_received_at_outcome', 'reports',
                    ['facility_id', 'received_at', *OUTCOME])
    op.drop_index('ix_reports_facility_id_received_at', table_name='reports')


def downgrade() -> None:
    op.create_index('ix_reports_facility_id_received_at', 'reports',
                    ['facility_id', 'received_at'])
    op.drop_index('ix_reports_facility_id_received_at_outcome', table_name='reports')
    op.create_index('ix_reports_received_at', 'reports', ['received_at'])
    op.drop_index('ix_reports_received_at_outcome', table_name='reports')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('guardianship_reported_at')
        batch_op.drop_column('guardianship_statutory_due_at')
        batch_op.drop_column('guardianship_due_at')
