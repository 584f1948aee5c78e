"""Engine and sessions: SQLite (WAL, BEGIN IMMEDIATE for writes) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, g, has_request_context, request
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000


def make_engine(url: str) -> Engine:
    """An engine tuned for the database behind `url`."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and as DEFERRED: a
    # read-then-write then races ("database is locked", duplicate sequence numbers). Take
    # over BEGIN ourselves, following SQLAlchemy's documented recipe.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front; readers stay concurrent under WAL.
        if connection.get_execution_options().get("besik_write", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Database:
    """One engine with two session factories: read-only-ish and writing."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        writer = self.engine.execution_options(besik_write=True)
        self.reader_factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.writer_factory = sessionmaker(bind=writer, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    def session(self, *, write: bool = True) -> Session:
        """A new session; `write` sessions take SQLite's write lock at BEGIN."""
        return (self.writer_factory if write else self.reader_factory)()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A writing session that commits once at the end, or rolls back on error."""
        session = self.session(write=True)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown)."""
        self.engine.dispose()


def get_db() -> Database:
    """The app's database."""
    db: Database = current_app.extensions["besik.db"]
    return db


def get_session() -> Session:
    """The request's session, opened on first use; unsafe methods get a writing session."""
    if "db_session" not in g:
        write = not (has_request_context() and request.method in ("GET", "HEAD", "OPTIONS"))
        g.db_session = get_db().session(write=write)
    session: Session = g.db_session
    return session


def close_session(_exc: BaseException | None = None) -> None:
    """Teardown: roll back anything uncommitted and return the connection."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
