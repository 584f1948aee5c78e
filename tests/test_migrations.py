"""One migration chain, from empty, on SQLite and PostgreSQL; it matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from reporting.db import Database
from reporting.migrate import alembic_config, upgrade
from reporting.models import Base


def test_migrations_from_empty_on_sqlite_match_the_models(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    upgrade(database.engine)
    upgrade(database.engine)  # idempotent
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert conn.execute(text("SELECT seq FROM audit_head")).scalar_one() == 0
    database.dispose()


def test_migrated_database_matches_the_models_on_every_lane(app):
    """The app fixture's database was migrated from empty (PostgreSQL: schema dropped first)."""
    engine = app.extensions["besik.db"].engine
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
    assert set(inspect(engine).get_table_names()) >= {t.name for t in Base.metadata.sorted_tables}


def test_the_chain_has_one_head_and_downgrades_to_empty(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    config = alembic_config(url)
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
