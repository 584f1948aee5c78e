"""The two ways into the database: reading() never takes the write lock; writing() loads what
it changes inside its own transaction and commits once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import event, select, update

from reporting import audit
from reporting.models import Report
from tests.conftest import bearer, report_body

CHAIN_LENGTH = 20_000

VERIFY_IN_ANOTHER_PROCESS = """
import sys, time
from reporting import create_app
app = create_app()
runner = app.test_cli_runner()
print("ready", flush=True)
started = time.monotonic()
result = runner.invoke(args=["audit-verify"])
print(result.output.strip(), flush=True)
print(f"took {time.monotonic() - started:.3f}", flush=True)
sys.exit(result.exit_code)
"""


def _grow_chain(app, entries: int) -> None:
    now = datetime.now(UTC)
    with app.extensions["besik.db"].writing() as session:
        for start in range(0, entries, 5000):
            audit.record_all(session, [audit.Entry("test:padding", actor_id=None,
                                                   subject=f"pad:{i}", data={"i": i})
                                       for i in range(start, start + 5000)], now=now)


def test_filing_is_not_held_up_while_audit_verify_walks_a_long_chain(app, settings, nurse):
    _grow_chain(app, CHAIN_LENGTH)
    client = app.test_client()
    # The first request of an app pays for its caches: not what this test measures.
    assert client.post("/api/v1/reports", json=report_body(), headers=nurse).status_code == 201
    env = {**os.environ, "BESIK_ENV": "demo", "SECRET_KEY": "test",
           "DATABASE_URL": settings.database_url}
    verifier = subprocess.Popen([sys.executable, "-c", VERIFY_IN_ANOTHER_PROCESS], env=env,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert verifier.stdout is not None
        assert verifier.stdout.readline().strip() == "ready"
        slowest, filed_while_verifying = 0.0, 0
        while verifier.poll() is None:
            started = time.monotonic()
            response = client.post("/api/v1/reports", json=report_body(), headers=nurse)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 201
            filed_while_verifying += verifier.poll() is None
        output = verifier.stdout.read().split("\n")
    finally:
        verifier.kill()
        verifier.wait()
        verifier.stdout.close()
    assert verifier.returncode == 0, output
    assert output[0].startswith("ok "), output
    assert int(output[0].split()[1]) > CHAIN_LENGTH
    took = float(output[1].split()[1])
    assert filed_while_verifying >= 3, f"verification took {took} s: too short to overlap"
    # Behind a verification that held the write lock, a filing would wait about as long as
    # the whole walk; on a busy machine a filing alone can take a few hundred milliseconds.
    assert slowest < min(took / 2, 1.0), f"a filing took {slowest:.3f} s; the walk {took} s"


def test_read_only_commands_run_while_a_writer_holds_the_lock(app):
    database = app.extensions["besik.db"]
    outputs: list[str] = []

    def show_policy() -> None:
        outputs.append(app.test_cli_runner().invoke(args=["policy", "show"]).output)

    with database.writing() as session:
        session.execute(update(Report).values(notes="held"))  # the write lock is ours
        reader = threading.Thread(target=show_policy)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "policy show waited for the write lock"
    assert "report_to_guardianship" in outputs[0]


def test_acknowledging_judges_the_report_as_it_is_inside_the_write(app, client, nurse):
    """Whatever changed the report between the officer's read and the write is seen."""
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    engine = app.extensions["besik.db"].engine
    closed_meanwhile = []

    # Runs before the write lock is taken (db.py's listener is on the engine, this one on the
    # writers' engine, whose own listeners run first): another writer closes the report in
    # the window between the request's reads and its write.
    write_engine = app.extensions["besik.db"].write_engine

    @event.listens_for(write_engine, "begin")
    def _close_first(connection) -> None:
        if not closed_meanwhile:
            closed_meanwhile.append(True)
            with engine.connect() as other:
                other.execute(update(Report).where(Report.id == report["id"])
                              .values(state="closed"))
                other.commit()

    response = client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    event.remove(write_engine, "begin", _close_first)
    assert response.status_code == 200
    assert closed_meanwhile
    with app.extensions["besik.db"].reading() as session:
        state = session.scalars(select(Report.state).where(Report.id == report["id"])).one()
    assert state == "closed", "acknowledging reopened a closed report from a stale read"


def test_a_request_reads_what_it_wrote(app):
    """The request's read session is a snapshot on SQLite: after a write it starts anew."""
    from sqlalchemy import func

    from reporting.db import reading, writing
    from reporting.models import AuditEntry

    count = select(func.count()).select_from(AuditEntry)
    with app.test_request_context("/"):
        with reading() as session:
            before = session.scalar(count)
        with writing() as session:
            audit.record(session, "test:written", actor_id=None)
        with reading() as session:
            assert session.scalar(count) == before + 1


def test_a_reading_session_refuses_to_write_and_nothing_is_written(app, client, nurse):
    """Readers run without a transaction on PostgreSQL (nothing would roll a write back):
    a changed object, an UPDATE and a new object through reading() are all refused."""
    import pytest

    from reporting.db import ReadOnlyError
    from reporting.models import AuditEntry

    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    database = app.extensions["besik.db"]
    with pytest.raises(ReadOnlyError), database.reading() as session:
        session.get(Report, report["id"]).notes = "changed in a reader"
        session.flush()
    with pytest.raises(ReadOnlyError), database.reading() as session:
        session.execute(update(Report).values(notes="changed in a reader"))
    with pytest.raises(ReadOnlyError), database.reading() as session:
        session.add(AuditEntry(seq=10**9, at=datetime.now(UTC), tag="test:written-in-a-reader",
                               data={}, prev_hash="0" * 64, hash="0" * 64))
        session.flush()
    with database.reading() as session:
        assert session.get(Report, report["id"]).notes is None
        assert session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "test:written-in-a-reader")).first() is None


def test_a_postgresql_reader_spends_no_round_trip_on_a_transaction(app):
    """Each of a reader's statements is its own transaction there (its own now()): no BEGIN
    and no ROLLBACK around a request's reads, and the same snapshots READ COMMITTED gave."""
    from sqlalchemy import text

    database = app.extensions["besik.db"]
    if database.is_sqlite:
        return  # SQLite's read transaction is its snapshot, and BEGIN costs no round trip
    with database.reading() as session:
        first = session.scalar(text("SELECT now()"))
        time.sleep(0.01)
        second = session.scalar(text("SELECT now()"))
    assert second > first
    with database.writing() as session:  # writers keep their transaction
        first = session.scalar(text("SELECT now()"))
        time.sleep(0.01)
        assert session.scalar(text("SELECT now()")) == first
