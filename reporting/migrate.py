"""Applying the Alembic migrations from code (init-db, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

from .config import REPO_ROOT


class MigrationError(RuntimeError):
    """A migration would leave the database inconsistent; nothing was changed."""


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at migrations/ and `url`, with no .ini file."""
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (idempotent), in one transaction.

    SQLite changes a table's columns by copying it, and a table that other rows refer to
    cannot be dropped while its foreign keys are enforced: they are off for the migration
    (SQLite allows it outside a transaction only) and every reference is checked before
    the commit, so nothing inconsistent is ever kept."""
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as connection:
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                "PRAGMA foreign_keys=OFF")
        try:
            # besik_write: on SQLite, the app's write lock (writers wait, none interleave).
            with connection.execution_options(besik_write=True).begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if is_sqlite:
                    _check_references(connection)
        finally:
            if is_sqlite:
                connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys=ON")


def _check_references(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise MigrationError(f"migrations would break {len(broken)} references, e.g. "
                             f"{tuple(broken[0])}")
