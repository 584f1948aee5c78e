"""places and people administered without SQL

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 04:00:00

- regions carry their Kazakh and Russian names (the English one is `name`);
- districts, facilities and agencies are deactivated, never deleted;
- a report keeps the district it was routed by (backfilled from its facility);
- a password an admin set must be changed at the next sign-in.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

PLACES = ('districts', 'facilities', 'agencies')


def upgrade() -> None:
    with op.batch_alter_table('regions') as batch_op:
        batch_op.add_column(sa.Column('name_kk', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('name_ru', sa.String(length=200), nullable=True))
    for table in PLACES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('is_active', sa.Boolean(), nullable=False,
                                          server_default=sa.true()))
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    # On SQLite a column with a foreign key needs batch mode: the reports table is copied
    # once (seconds for a million reports).
    with op.batch_alter_table('reports') as batch_op:
        batch_op.add_column(sa.Column('district_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_reports_district_id', 'districts', ['district_id'],
                                    ['id'])
    op.execute('UPDATE reports SET district_id = (SELECT facilities.district_id FROM facilities '
               'WHERE facilities.id = reports.facility_id)')


def downgrade() -> None:
    with op.batch_alter_table('reports') as batch_op:
        batch_op.drop_constraint('fk_reports_district_id', type_='foreignkey')
        batch_op.drop_column('district_id')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('must_change_password')
    for table in PLACES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column('is_active')
    with op.batch_alter_table('regions') as batch_op:
        batch_op.drop_column('name_ru')
        batch_op.drop_column('name_kk')
