"""Engine and sessions: SQLite (WAL, BEGIN IMMEDIATE for writes) or PostgreSQL.

The only ways in are reading() and writing(). Requests read outside any write lock and open a
short writing() transaction only for their writes: on SQLite the write lock serialises every
writer, so what runs inside it must be brief. The SQLite lock protocol lives here alone.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, g, has_request_context
from sqlalchemy import Connection, Engine, Insert, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from . import percentiles, wakeup
from .errors import DATABASE_DOWN

SQLITE_BUSY_TIMEOUT_MS = 10_000
# The worker checkpoints the WAL every pass, off the request path (a checkpoint fsyncs the
# database file: ~20 ms here). Connections checkpoint themselves only past this many pages
# (~40 MB), so the WAL stays bounded even while no worker runs.
SQLITE_FALLBACK_CHECKPOINT_PAGES = 10_000
_WRITE = {"besik_write": True}


def make_engine(url: str) -> Engine:
    """An engine tuned for the database behind `url`."""
    # hide_parameters: an error must never write a child's or a mother's details to a log.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               hide_parameters=True)
        _tune_sqlite(engine, make_url(url).database)
        return engine
    # psycopg's prepare_threshold stays at its default (5): a statement run five times on a
    # connection is prepared, and never preparing (None) cost 0.3-0.6 ms more per statement
    # here (a filing runs about fifteen). PostgreSQL does then plan the compliance period
    # queries generically (after five custom plans); at 300,000 reports that was neither
    # consistently slower nor faster (one region: 239 ms generic against 313 custom; the
    # country: 392 against 295; medians of 12, on a loaded machine).
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         hide_parameters=True)


def _tune_sqlite(engine: Engine, path: str | None) -> None:
    # pysqlite's own transaction handling starts transactions lazily and as DEFERRED: a
    # read-then-write then races ("database is locked", duplicate sequence numbers). Take
    # over BEGIN ourselves, following SQLAlchemy's documented recipe.
    lock_path = f"{path}-writelock" if path and path != ":memory:" else None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before the nurse's phone is told "received" and drops
        # its copy; NORMAL could lose the last commits to a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_FALLBACK_CHECKPOINT_PAGES}")
        cursor.close()
        percentiles.install(dbapi_connection)
        if lock_path:
            record.info["lock_fd"] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    @event.listens_for(engine, "close")
    def _on_close(_dbapi_connection: Any, record: Any) -> None:
        fd = record.info.pop("lock_fd", None)
        if fd is not None:
            os.close(fd)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get("besik_write", False):
            connection.exec_driver_sql("BEGIN")  # readers stay concurrent under WAL
            return
        # SQLite's busy handler polls with sleeps of up to 100 ms, so waiting writers wake
        # late and in no order. A blocking flock hands the lock over at once, in turn.
        fd = connection.connection.info.get("lock_fd")
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception:
            _release(connection)
            raise

    def _release(connection: Any) -> None:
        fd = connection.connection.info.get("lock_fd")
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _end_then_release(connection: Any, end: str) -> None:
        # SQLAlchemy announces commit/rollback before the driver runs it. Handing the lock on
        # only afterwards keeps the next writer from finding SQLite still locked and sleeping
        # in its busy handler; the driver's own call that follows finds nothing left to do.
        try:
            getattr(connection.connection.dbapi_connection, end)()
        except sqlite3.Error:
            pass  # the driver's call, next, raises it wrapped as SQLAlchemy's error
        finally:
            _release(connection)

    event.listen(engine, "commit", lambda connection: _end_then_release(connection, "commit"))
    event.listen(engine, "rollback",
                 lambda connection: _end_then_release(connection, "rollback"))


def _read_engine(engine: Engine) -> Engine:
    """What readers run on: the same pool, and no write gets through (ReadOnlyError).

    PostgreSQL: each statement on its own (autocommit). Under READ COMMITTED, its default,
    every statement sees a fresh snapshot anyway, so a read transaction bought nothing but
    a BEGIN and a ROLLBACK, two round trips of a poll's five (polls answered a quarter
    faster without them). A read that needs one moment asks for it (exports.snapshot:
    REPEATABLE READ). Without a transaction nothing would roll a stray write back, hence
    the readers' refusal (_refuse_writes). SQLite: a read transaction, as before (its BEGIN
    is no round trip)."""
    options: dict[str, Any] = {"besik_read": True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return engine.execution_options(**options)


class ReadOnlyError(RuntimeError):
    """A reading() session was asked to write (a programming error: use writing())."""


def _refuse_writes(state: Any) -> None:
    # The session's own INSERT, UPDATE and DELETE statements. (An engine-wide check of every
    # statement, Core ones on session.connection() included, cost filing 10 % of its CPU.)
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlyError("reading() sessions never write; use writing()")


def _refuse_flush(session: Session, *_: Any) -> None:
    # Called only when there is something to flush: free for a session that only reads.
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        raise ReadOnlyError("reading() sessions never write; use writing()")


class Database:
    """One engine, and the only two ways into it: reading() and writing()."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        # After make_engine: on SQLite its commit listener commits, and the ring comes after.
        wakeup.watch(self.engine)
        # The same pool; its connections take SQLite's write lock at BEGIN.
        self.write_engine = self.engine.execution_options(**_WRITE)
        self._readers = sessionmaker(bind=_read_engine(self.engine), expire_on_commit=False)
        event.listen(self._readers, "do_orm_execute", _refuse_writes)
        event.listen(self._readers, "before_flush", _refuse_flush)
        self._writers = sessionmaker(bind=self.write_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    def new_reader(self) -> Session:
        """A session that only reads: on SQLite it never takes the write lock."""
        return self._readers()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A fresh read-only session, closed at the end (nothing is ever committed)."""
        session = self._readers()
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction (SQLite: the write lock from BEGIN): commits once at the
        end, rolls back on any error. Load what you change inside it."""
        session = self._writers()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def listen(self) -> wakeup.Listener:
        """What the worker waits on between passes: woken when a transaction that queued
        work commits (wakeup.py)."""
        return wakeup.listen(self.engine)

    def checkpoint(self) -> None:
        """Copy SQLite's WAL into the database file without blocking anyone (PASSIVE)."""
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown)."""
        self.engine.dispose()


def insert_rows(connection: Connection, statement: Insert, rows: list[dict[str, Any]],
                params: dict[str, Any] | None = None) -> None:
    """Rows of one column set as one INSERT: several as one statement of several VALUES, not
    psycopg's executemany, which runs a statement per row (a cost in Python for each, and
    PostgreSQL's statement triggers once per row). `params`: the statement's other values."""
    if len(rows) == 1:
        connection.execute(statement, {**rows[0], **(params or {})})
    else:
        connection.execute(statement.values(rows), params or {})


def get_db() -> Database:
    """The app's database."""
    db: Database = current_app.extensions["besik.db"]
    return db


@contextmanager
def reading() -> Iterator[Session]:
    """Read. In a request: the request's session, kept until teardown so that the signed-in
    user and the templates can load lazily; it sees every write the request made before.
    Elsewhere (CLI): a fresh session."""
    if not has_request_context():
        with get_db().reading() as session:
            yield session
        return
    if "db_session" not in g:
        g.db_session = get_db().new_reader()
    elif g.pop("db_stale", False):
        # On SQLite a read transaction is a snapshot taken before this request's last write:
        # start a new one (the objects loaded so far reload when next touched).
        g.db_session.rollback()
    yield g.db_session


@contextmanager
def writing() -> Iterator[Session]:
    """Write, in one transaction committed at the end (or rolled back on error)."""
    try:
        with get_db().writing() as session:
            yield session
    finally:
        if has_request_context():
            g.db_stale = True


def take_turns(session: Session, name: str) -> None:
    """Hold the lock called `name` until the transaction ends, so that writers which read
    something and then write from what they read (a policy version built on the one in force)
    go one after the other instead of losing each other's change. SQLite's write lock already
    serialises every writer; PostgreSQL needs a transaction-scoped advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": zlib.crc32(name.encode())})


def close_session(_exc: BaseException | None = None) -> None:
    """Teardown: end the request's read session and return its connection."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        try:
            session.close()
        except DATABASE_DOWN:
            # Its connection died with the database (ending the read transaction failed):
            # there was nothing to keep, and raising here would turn the answer already
            # made, perhaps a 201, into a 500. The connection is not reused.
            session.invalidate()
