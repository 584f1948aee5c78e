"""export lines: each report's CSV row rendered ahead, and a revision that says when it is no
longer true

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 07:00:00

reports.revision is raised by the database on every change to a report, its notices or its
deadlines (triggers: no code path can forget it, and the ORM's, Core's and a person's SQL
alike count). An export line records the revision it was rendered from; an export uses it only
while the two agree (reporting/exports.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

CHILDREN = ('notices', 'deadlines')

SQLITE_TRIGGERS = [
    # An update of the report that did not itself raise the revision raises it (the update
    # below does not fire this trigger again: SQLite's triggers are not recursive).
    """CREATE TRIGGER reports_revision AFTER UPDATE ON reports
       FOR EACH ROW WHEN NEW.revision = OLD.revision
       BEGIN UPDATE reports SET revision = OLD.revision + 1 WHERE id = NEW.id; END""",
    *(f"""CREATE TRIGGER {table}_revision_{event.lower()} AFTER {event} ON {table}
          FOR EACH ROW BEGIN UPDATE reports SET revision = revision + 1
          WHERE id = {row}.report_id; END"""
      for table in CHILDREN
      for event, row in (('INSERT', 'NEW'), ('UPDATE', 'NEW'), ('DELETE', 'OLD'))),
]

# PostgreSQL: once per statement, over the rows it touched (transition tables), so that
# filing's one INSERT of deadlines raises the revision once, not once per deadline.
POSTGRESQL_TRIGGERS = [
    """CREATE FUNCTION besik_report_revision() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.revision = OLD.revision THEN NEW.revision := OLD.revision + 1; END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER reports_revision BEFORE UPDATE ON reports
       FOR EACH ROW EXECUTE FUNCTION besik_report_revision()""",
    """CREATE FUNCTION besik_report_part_revision() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         UPDATE reports SET revision = revision + 1
         WHERE id IN (SELECT report_id FROM touched);
         RETURN NULL;
       END $$""",
    *(f"""CREATE TRIGGER {table}_revision_{event.lower()} AFTER {event} ON {table}
          REFERENCING {rows} TABLE AS touched
          FOR EACH STATEMENT EXECUTE FUNCTION besik_report_part_revision()"""
      for table in CHILDREN
      for event, rows in (('INSERT', 'NEW'), ('UPDATE', 'NEW'), ('DELETE', 'OLD'))),
]


def upgrade() -> None:
    # A plain ADD COLUMN on both databases (a constant default): a batch operation would
    # copy the table on SQLite, which its foreign keys refuse once reports are referenced.
    op.add_column('reports', sa.Column('revision', sa.Integer(), server_default=sa.text('0'),
                                       nullable=False))
    op.create_index('ix_reports_received_at_id', 'reports',
                    ['received_at', 'id', 'revision', 'facility_id'])
    op.create_table(
        'export_lines',
        sa.Column('language', sa.String(length=8), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('report_id', sa.String(length=36), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('fingerprint', sa.String(length=16), nullable=False),
        sa.Column('rendered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stale_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('notices', sa.Integer(), nullable=False),
        sa.Column('deadlines', sa.Integer(), nullable=False),
        sa.Column('head', sa.Text(), nullable=False),
        sa.Column('tail', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['report_id'], ['reports.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('language', 'received_at', 'report_id'))
    op.create_index('ix_export_lines_truth', 'export_lines',
                    ['language', 'received_at', 'report_id', 'revision', 'fingerprint',
                     'rendered_at', 'stale_at'])
    triggers = (POSTGRESQL_TRIGGERS if op.get_bind().dialect.name == 'postgresql'
                else SQLITE_TRIGGERS)
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    is_postgresql = op.get_bind().dialect.name == 'postgresql'
    on = (lambda table: f' ON {table}') if is_postgresql else (lambda table: '')
    op.execute(f'DROP TRIGGER reports_revision{on("reports")}')
    for table in CHILDREN:
        for event in ('insert', 'update', 'delete'):
            op.execute(f'DROP TRIGGER {table}_revision_{event}{on(table)}')
    if is_postgresql:
        op.execute('DROP FUNCTION besik_report_part_revision()')
        op.execute('DROP FUNCTION besik_report_revision()')
    op.drop_index('ix_export_lines_truth', table_name='export_lines')
    op.drop_table('export_lines')
    op.drop_index('ix_reports_received_at_id', table_name='reports')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('revision')
