"""The worker wakes when a transaction that queued work commits; its poll is the fallback.

A real worker process polling every 60 s must deliver within seconds (the wake-up, not the
poll); only a commit rings, never a rollback; filing never depends on a worker listening.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text

from reporting import alerts, wakeup
from reporting.config import REPO_ROOT, Settings
from reporting.db import Database
from reporting.models import PushDelivery, PushSubscription, User
from reporting.vocabulary import DeliveryKind
from tests.conftest import bearer, postgresql_lane_only, report_body
from tests.push_service import PushService, Subscription

LONG_POLL_SECONDS = 60
# Far below the poll: only a wake-up delivers this fast (a loaded 2-core machine included).
WOKEN_WITHIN_SECONDS = 10
# How long a listener is given to show a wake-up that must not come.
QUIET_SECONDS = 0.5

sqlite_lane_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Boom(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.fixture
def app(push_app: Flask) -> Flask:
    return push_app


@pytest.fixture
def database(app: Flask) -> Database:
    db: Database = app.extensions["besik.db"]
    return db


@pytest.fixture
def listener(database: Database) -> Iterator[wakeup.Listener]:
    """A worker's listener, in this process."""
    listening = database.listen()
    yield listening
    listening.close()


def subscribe(client, app: Flask, service: PushService,
              email: str = "officer@besik.example") -> Subscription:
    subscription = service.new_subscription()
    response = client.post("/api/v1/push/subscriptions", json=subscription.as_json(),
                           headers=bearer(app, email))
    assert response.status_code == 201, response.get_json()
    return subscription


def file(client, nurse: dict[str, str]) -> dict:
    response = client.post("/api/v1/reports", json=report_body(), headers=nurse)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def start_worker(settings: Settings, service: PushService, log: Path
                 ) -> subprocess.Popen[bytes]:
    """`flask worker` as the Procfile runs it, polling only every LONG_POLL_SECONDS."""
    env = {**os.environ, "BESIK_ENV": "demo", "SECRET_KEY": "test",
           "DATABASE_URL": settings.database_url,
           "VAPID_PRIVATE_KEY_FILE": str(settings.vapid_private_key_file),
           "AUDIT_KEY_FILE": str(settings.audit_key_file),
           "PUSH_ALLOWED_HOSTS": service.allowed_entry,
           "WORKER_POLL_SECONDS": str(LONG_POLL_SECONDS)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def notice_pushes(service: PushService) -> list[str]:
    return [str(r.payload["notice_id"]) for r in service.received()
            if r.payload and r.payload.get("type") == "notice"]


def wait_for_notice(service: PushService, notice_id: str, timeout: float, log: Path) -> float:
    """Seconds until the push about `notice_id` arrived; fails after `timeout`."""
    began = time.monotonic()
    while notice_id not in notice_pushes(service):
        if time.monotonic() - began > timeout:
            pytest.fail(f"no push about notice {notice_id} within {timeout}s (the worker polls "
                        f"every {LONG_POLL_SECONDS}s); worker log:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.02)
    return time.monotonic() - began


def test_a_filing_wakes_a_worker_that_polls_once_a_minute(client, app, nurse, push_service,
                                                          push_settings, tmp_path):
    subscribe(client, app, push_service)
    first = file(client, nurse)
    log = tmp_path / "worker.log"
    worker = start_worker(push_settings, push_service, log)
    try:
        # Its first pass delivers the report filed before it started: past that pass's claim,
        # later reports can only arrive by a wake-up (or a minute later, by the poll).
        wait_for_notice(push_service, first["notices"][0]["id"], 60, log)
        for _ in range(3):
            notice = file(client, nurse)["notices"][0]["id"]
            waited = wait_for_notice(push_service, notice, WOKEN_WITHIN_SECONDS, log)
            assert waited < WOKEN_WITHIN_SECONDS
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    pushed = notice_pushes(push_service)
    assert len(pushed) == len(set(pushed)) == 4  # none twice


def queue_test_message(database: Database, *, fail: bool = False) -> None:
    """One push delivery for the officer's device, committed (or rolled back)."""
    with database.writing() as session:
        subscription = session.scalars(select(PushSubscription)).first()
        assert subscription is not None
        alerts.queue(session, [subscription], None, DeliveryKind.TEST, datetime.now(UTC))
        session.flush()
        if fail:
            raise Boom


def test_only_a_commit_that_queued_work_wakes_the_worker(client, app, nurse, push_service,
                                                         database, listener):
    subscribe(client, app, push_service)  # a commit, but no work
    assert not listener.wait(QUIET_SECONDS)
    with pytest.raises(Boom):
        queue_test_message(database, fail=True)
    assert not listener.wait(QUIET_SECONDS)  # rolled back: no wake-up
    for locale in ("kk", "ru", "en") * 5:  # through the pool, past the one that rolled back
        with database.writing() as session:
            session.scalars(select(User)).first().locale = locale
    assert not listener.wait(QUIET_SECONDS)
    with database.reading() as session:
        assert session.scalars(select(PushDelivery)).all() == []
    queue_test_message(database)
    assert listener.wait(WOKEN_WITHIN_SECONDS)
    assert not listener.wait(QUIET_SECONDS)  # one commit, one wake-up, drained
    file(client, nurse)
    assert listener.wait(WOKEN_WITHIN_SECONDS)


def test_acknowledging_wakes_the_worker(client, app, nurse, listener):
    report = file(client, nurse)
    assert listener.wait(WOKEN_WITHIN_SECONDS)
    while listener.wait(QUIET_SECONDS):
        pass
    # Acknowledging starts examine_child, whose reminder may be due at once.
    response = client.post(f"/api/v1/reports/{report['id']}/acknowledge",
                           headers=bearer(app, "officer@besik.example"))
    assert response.status_code == 200, response.get_json()
    assert listener.wait(WOKEN_WITHIN_SECONDS)


def test_filing_needs_no_worker_listening(client, app, nurse, database):
    for _ in range(3):
        file(client, nurse)
    with database.reading() as session:
        assert len(session.scalars(select(PushDelivery)).all()) == 0  # nobody subscribed
        assert session.execute(text("SELECT count(*) FROM notices")).scalar() == 3


@sqlite_lane_only
def test_filing_ignores_dead_and_full_wakeup_sockets(client, app, nurse, push_service,
                                                     database):
    subscribe(client, app, push_service)
    directory = wakeup.socket_directory(database.engine)
    assert directory is not None and not directory.exists()
    file(client, nurse)  # no directory: no worker ever listened
    directory.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(directory / "1-dead.sock"))
    dead.close()  # its file stays, as a killed worker's does: ECONNREFUSED
    full = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    full.bind(str(directory / "2-full.sock"))  # never read: its queue fills, then EAGAIN
    (directory / "3-not-a-socket.sock").write_text("")
    filed: list[dict] = []

    def file_many() -> None:
        for _ in range(25):  # more than the kernel's datagram queue (net.unix.max_dgram_qlen)
            filed.append(file(client, nurse))

    filer = threading.Thread(target=file_many, daemon=True)
    filer.start()
    filer.join(timeout=120)
    full.close()
    assert not filer.is_alive(), "a filing blocked on a worker's full socket"
    assert len(filed) == 25
    with database.reading() as session:
        assert len(session.scalars(select(PushDelivery)).all()) == 26


@sqlite_lane_only
def test_every_sqlite_worker_wakes_and_a_dead_ones_socket_is_removed(
        client, app, push_service, database):
    subscribe(client, app, push_service)
    directory = wakeup.socket_directory(database.engine)
    assert directory is not None
    first, second = database.listen(), database.listen()
    try:
        queue_test_message(database)
        assert first.wait(WOKEN_WITHIN_SECONDS) and second.wait(WOKEN_WITHIN_SECONDS)
        assert isinstance(first, wakeup.SocketListener)
        first._socket.close()  # killed: its file is left behind
        assert first.path.exists()
        third = database.listen()  # a worker restarting
        try:
            assert not first.path.exists()
            queue_test_message(database)
            assert second.wait(WOKEN_WITHIN_SECONDS) and third.wait(WOKEN_WITHIN_SECONDS)
        finally:
            third.close()
    finally:
        first.close()
        second.close()
    assert list(directory.iterdir()) == []


@postgresql_lane_only
def test_a_lost_listening_connection_is_replaced(client, app, push_service, database,
                                                 listener):
    subscribe(client, app, push_service)
    assert isinstance(listener, wakeup.PostgresListener)
    backend = listener._connection.info.backend_pid  # a server restart, a proxy's timeout
    with database.engine.begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": backend}).scalar()
    assert listener.wait(WOKEN_WITHIN_SECONDS)  # lost: pass now, wake-ups may be missed
    assert listener.wait(WOKEN_WITHIN_SECONDS)  # listening again: pass now once more
    while listener.wait(QUIET_SECONDS):
        pass
    queue_test_message(database)
    assert listener.wait(WOKEN_WITHIN_SECONDS)


def test_wake_ups_soon_after_a_pass_are_gathered_into_the_next_one(client, nurse, listener,
                                                                  monkeypatch):
    """A burst of filings costs the worker one pass, not one each: woken within
    GATHER_SECONDS of the last pass, it waits out the rest and takes every commit of that
    time; woken later, it passes at once."""
    from reporting import worker

    # Widened so that the burst surely falls inside it on a loaded machine.
    monkeypatch.setattr(worker, "GATHER_SECONDS", 2.0)
    pass_started = time.monotonic()
    file(client, nurse)
    assert listener.wait(WOKEN_WITHIN_SECONDS)
    burst = threading.Timer(0.1, lambda: [file(client, nurse) for _ in range(3)])
    burst.start()
    worker.gather(listener, pass_started)
    burst.join()
    assert time.monotonic() - pass_started >= worker.GATHER_SECONDS
    assert not listener.wait(QUIET_SECONDS), "a commit of the gathering time woke again"

    file(client, nurse)
    assert listener.wait(WOKEN_WITHIN_SECONDS)
    waited = time.monotonic()
    worker.gather(listener, waited - worker.GATHER_SECONDS)  # the last pass is long past
    assert time.monotonic() - waited < 1.0


@postgresql_lane_only
def test_a_connection_cut_as_its_filing_commits_answers_503_and_keeps_nothing(
        client, app, nurse, database, push_service, monkeypatch):
    """The NOTIFY runs on the driver's own cursor as the filing commits. If the database
    cuts the connection just then, the filing answers 503 in the API's shape (the phone
    keeps the report and sends it again), not a bare 500, and nothing of it is stored."""
    from sqlalchemy import func

    from reporting.models import Report

    subscribe(client, app, push_service)  # filing queues a push: its commit notifies
    engine = database.engine
    body = report_body()
    notify = wakeup.notify

    def cut_then_notify(connection) -> None:
        pid = connection.connection.dbapi_connection.info.backend_pid
        with engine.connect() as other:
            # Waits (up to 30 s) until the backend is gone: the NOTIFY meets a dead connection.
            assert other.execute(text("SELECT pg_terminate_backend(:pid, 30000)"),
                                 {"pid": pid}).scalar_one()
        notify(connection)

    monkeypatch.setattr(wakeup, "notify", cut_then_notify)
    response = client.post("/api/v1/reports", json=body, headers=nurse)
    monkeypatch.undo()
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    with database.reading() as session:
        assert session.scalar(select(func.count()).select_from(Report)
                              .where(Report.id == body["id"])) == 0
    again = client.post("/api/v1/reports", json=body, headers=nurse)  # the phone's resend
    assert again.status_code == 201, again.get_json()
