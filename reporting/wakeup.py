"""Waking the worker the moment a transaction leaves it work; its poll is only the fallback.

Work is a committed INSERT into one of WORK_TABLES: a push delivery queued (filing, an
amendment's new notice, a test push, an escalation, a reminder, a coverage alert), a notice
opened, or a deadline started (acknowledging a guardianship notice starts `examine_child`,
whose reminder may be due at once). `watch()` sees those INSERTs on the engine itself,
whoever makes them (ORM flush or Core), so no operation has to remember to wake anyone.

It rings on COMMIT only, never for a rollback:

- PostgreSQL: `pg_notify` inside the transaction, just before COMMIT; the server delivers it
  at commit and drops it on rollback. Each worker LISTENs on a connection of its own.
- SQLite has no server to carry a message. After COMMIT the committing process sends one
  datagram to each worker's Unix socket in `<database file>-wake/`. Chosen over polling
  `PRAGMA data_version`, which would cost a query every tick, still be up to a tick late and
  wake for every commit (sign-ins, audit entries): an idle worker here sleeps in poll() and
  costs nothing. Sending never blocks and never fails the transaction: no directory or no
  socket (no worker), a refused socket (a worker that died; the next worker to start removes
  it) and a full queue (the worker has a wake-up pending already) are all ignored. Each web
  process sends on its own; each worker binds its own socket, so several workers all wake and
  share the work through their row locks as before. The web processes must be able to write
  the sockets (the same user, as the Procfile runs them), or the worker only polls.

A missed wake-up (a worker restarting, a lost connection, a database path too long for a
socket) costs latency only: the worker still passes every WORKER_POLL_SECONDS, and listens
before its first pass, so nothing committed in between is missed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import socket
import time
import weakref
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, event, exc

log = logging.getLogger("besik.wakeup")

WORK_TABLES = frozenset({"push_deliveries", "notices", "deadlines"})
CHANNEL = "besik_work"
_QUEUED = "besik.queued_work"  # on the DBAPI connection's info, for its current transaction


class Listener(Protocol):
    """What the worker waits on between passes."""

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when woken (work may be waiting)."""

    def close(self) -> None:
        """Stop listening."""


def watch(engine: Engine) -> None:
    """Wake the workers whenever a transaction on `engine` that inserted work commits.

    Register after the engine's own commit listeners: on SQLite those commit (db.py), and the
    ring must follow the commit."""
    directory = socket_directory(engine)
    is_postgresql = engine.dialect.name == "postgresql"
    if directory is None and not is_postgresql:
        return  # an in-memory database has no other process to wake

    def forget(connection: Any) -> None:
        # Rolling back a connection the database cut: it is invalid, its info out of reach
        # (asking raises), and the next transaction's begin forgets for it.
        with contextlib.suppress(exc.SQLAlchemyError):
            connection.info.pop(_QUEUED, None)

    def executed(connection: Any, statement: Any, *_: Any) -> None:
        if _inserts_work(statement):
            connection.info[_QUEUED] = True

    def committing(connection: Any) -> None:
        if not connection.info.pop(_QUEUED, False):
            return
        if is_postgresql:
            notify(connection)
        elif directory is not None and not connection.connection.dbapi_connection.in_transaction:
            ring(directory)  # the commit is done (still in a transaction: it failed)

    event.listen(engine, "begin", forget)
    event.listen(engine, "rollback", forget)
    event.listen(engine, "after_execute", executed)
    event.listen(engine, "commit", committing)


def _inserts_work(statement: Any) -> bool:
    table = getattr(statement, "table", None)
    return bool(getattr(statement, "is_insert", False)) and getattr(table, "name", None) in (
        WORK_TABLES)


_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"


def notify(connection: Any) -> None:
    """PostgreSQL: queue the notification in the open transaction (sent at its COMMIT)."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_NOTIFY)
    except dialect.loaded_dbapi.Error as error:
        # Run on the driver's own cursor, its errors come out unwrapped: a connection the
        # database cut as it committed must be SQLAlchemy's OperationalError like any other
        # (the request answers 503, and the phone keeps the report), not a bare 500.
        raise exc.DBAPIError.instance(_NOTIFY, None, error, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from error
    finally:
        cursor.close()


def socket_directory(engine: Engine) -> Path | None:
    """Where SQLite's workers bind their wake-up sockets: beside the database file."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(f"{path}-wake")


def ring(directory: Path) -> None:
    """SQLite: one datagram to every worker's socket; never blocks, never raises."""
    try:
        with os.scandir(directory) as entries, socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            for entry in entries:
                if entry.name.endswith(".sock"):
                    # ENOENT, ECONNREFUSED (dead worker), EAGAIN (queue full: already woken)
                    with contextlib.suppress(OSError):
                        sender.sendto(b"!", entry.path)
    except OSError:
        pass  # no directory yet: no worker has ever listened


def listen(engine: Engine) -> Listener:
    """A listener for the worker: LISTEN on PostgreSQL, a socket on SQLite, else a sleep."""
    if engine.dialect.name == "postgresql":
        return PostgresListener(engine)
    directory = socket_directory(engine)
    if directory is not None:
        with contextlib.suppress(OSError):
            return SocketListener(directory)
        log.warning("cannot listen for wake-ups in %s: polling only", directory)
    return Sleeper()


class Sleeper:
    """No wake-ups: the poll alone."""

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return False

    def close(self) -> None:
        pass


class SocketListener:
    """SQLite: this worker's datagram socket in the wake-up directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        _remove_dead_sockets(directory)
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(3)}.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(str(self.path))
        except OSError:
            self._socket.close()
            raise
        self._socket.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self._socket, select.POLLIN)
        # Also at interpreter exit (Ctrl-C); after SIGKILL the next worker removes it.
        self._finalizer = weakref.finalize(self, _unbind, self._socket, self.path)

    def wait(self, timeout: float) -> bool:
        if not self._poll.poll(max(0.0, timeout) * 1000):
            return False
        with contextlib.suppress(BlockingIOError):
            while True:  # many commits, one pass
                self._socket.recv(16)
        return True

    def close(self) -> None:
        self._finalizer()


def _unbind(sock: socket.socket, path: Path) -> None:
    sock.close()
    with contextlib.suppress(OSError):
        path.unlink()


def _remove_dead_sockets(directory: Path) -> None:
    # A killed worker leaves its socket behind; nobody receives on it any more.
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.setblocking(False)
        for path in directory.glob("*.sock"):
            try:
                probe.sendto(b"!", str(path))
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:
                pass


class PostgresListener:
    """PostgreSQL: LISTEN on a connection of the worker's own, outside the pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None
        self._is_down = False  # said once in the log, not at every poll of an outage
        self._connect()

    def _connect(self) -> bool:
        import psycopg

        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        cparams.setdefault("connect_timeout", 10)
        try:
            connection = psycopg.connect(*cargs, **cparams, autocommit=True)
            try:
                connection.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error:
                connection.close()
                raise
        except psycopg.Error as exc:
            self._down(exc)
            return False
        if self._is_down:
            log.info("listening for wake-ups again")
        self._connection, self._is_down = connection, False
        self._poll = select.poll()
        self._poll.register(connection.fileno(), select.POLLIN)
        return True

    def _down(self, exc: Exception) -> None:
        if not self._is_down:
            log.warning("not listening for wake-ups (%s): polling until the database is back",
                        type(exc).__name__)
        self._is_down = True

    def wait(self, timeout: float) -> bool:
        import psycopg

        if self._connection is None:
            if self._connect():
                return True  # wake-ups may have been missed while not listening: pass now
            time.sleep(timeout)
            return False
        try:
            if self._drain():
                return True
            # Poll the socket for the whole timeout: psycopg's own notifies() would wake
            # every 0.1 s to look for Ctrl-C, which an idle worker pays for in CPU.
            if not self._poll.poll(max(0.0, timeout) * 1000):
                return False
            if self._drain():
                return True
            # Something came that was no notification: most likely the server ending the
            # connection, which reading notifications alone does not always report. Ask.
            self._connection.execute("SELECT 1")
            return False
        except psycopg.Error as exc:
            self._down(exc)
            self.close()
            return True

    def _drain(self) -> bool:
        # Everything already received: many commits, one pass.
        return bool(list(self._connection.notifies(timeout=0)))

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
