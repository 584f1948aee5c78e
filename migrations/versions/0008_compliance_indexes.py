"""compliance indexes: the dashboard reads one period, not every report ever filed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 04:00:00

Three single-column indexes become composite ones that start with the same column (so every
query the old one served, the new one serves), and one partial index is added:

- reports (facility_id, received_at): a region's reports of a period, one range per facility;
- notices (agency_id, sent_at, acknowledged_at, ack_due_at, escalation_level): an agency's
  notices of a period and all the dashboard asks of them, without reading the table;
- deadlines (report_id, rule, due_at, met_at): a report's deadline of one rule, and whether
  it was met in time, without reading the table;
- deadlines (due_at) WHERE met_at IS NULL: what is overdue now, oldest first, among the
  deadlines still open only.

On PostgreSQL, CREATE INDEX holds off writes to its table while it builds (inside the
migration's transaction): for 1,000,000 reports, measure with bench/dashboard.py --reuse on a
database built before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

OPEN = sa.text('met_at IS NULL')


def upgrade() -> None:
    op.create_index('ix_reports_facility_id_received_at', 'reports',
                    ['facility_id', 'received_at'])
    op.drop_index('ix_reports_facility_id', table_name='reports')
    op.create_index('ix_notices_agency_id_sent_at', 'notices',
                    ['agency_id', 'sent_at', 'acknowledged_at', 'ack_due_at',
                     'escalation_level'])
    op.drop_index('ix_notices_agency_id', table_name='notices')
    op.create_index('ix_deadlines_report_id_rule', 'deadlines',
                    ['report_id', 'rule', 'due_at', 'met_at'])
    op.drop_index('ix_deadlines_report_id', table_name='deadlines')
    op.create_index('ix_deadlines_overdue', 'deadlines', ['due_at'],
                    sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    op.drop_index('ix_deadlines_overdue', table_name='deadlines')
    op.create_index('ix_deadlines_report_id', 'deadlines', ['report_id'])
    op.drop_index('ix_deadlines_report_id_rule', table_name='deadlines')
    op.create_index('ix_notices_agency_id', 'notices', ['agency_id'])
    op.drop_index('ix_notices_agency_id_sent_at', table_name='notices')
    op.create_index('ix_reports_facility_id', 'reports', ['facility_id'])
    op.drop_index('ix_reports_facility_id_received_at', table_name='reports')
