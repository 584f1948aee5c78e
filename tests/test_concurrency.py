"""Two processes filing at once: every report stored, every reference distinct, no error."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from reporting.config import Settings
from reporting.models import AuditEntry, Deadline, Notice, Report
from tests.conftest import at_once, bearer, report_body, serving

PER_PROCESS = 200


def _file_many(settings: Settings, token_header: dict[str, str], start, results) -> None:
    from reporting import create_app

    app = create_app(settings)
    client = app.test_client()
    discovered = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    statuses = []
    start.wait()
    for _ in range(PER_PROCESS):
        body = {"id": str(uuid.uuid4()), "circumstance": "other",
                "discovered_at": discovered, "child": {"sex": "unknown"}}
        statuses.append(client.post("/api/v1/reports", json=body,
                                    headers=token_header).status_code)
    app.extensions["besik.db"].dispose()
    results.put(statuses)


def test_two_processes_filing_200_each_get_400_distinct_references(settings, app, nurse):
    from reporting import audit

    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_file_many, args=(settings, nurse, start, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    statuses = [s for _ in workers for s in results.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert statuses == [201] * (2 * PER_PROCESS)
    with app.extensions["besik.db"].writing() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2 * PER_PROCESS
        references = session.scalars(select(Report.reference)).all()
        assert len(set(references)) == 2 * PER_PROCESS
        numbers = sorted(int(r.rsplit("-", 1)[1]) for r in references)
        assert numbers == list(range(1, 2 * PER_PROCESS + 1))
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.tag == "report:filed")) == 2 * PER_PROCESS
        assert audit.verify(session).is_ok


def test_the_same_id_racing_from_two_processes_is_stored_once(settings, app, nurse):
    """A phone's sync event and online replay may send one report twice at the same moment."""
    ctx = multiprocessing.get_context("spawn")
    body = {"id": str(uuid.uuid4()), "circumstance": "other",
            "discovered_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
            "child": {"sex": "unknown"}}
    with ctx.Pool(4) as pool:
        statuses = pool.starmap(_file_one, [(settings, nurse, body)] * 8)
    assert sorted(statuses) == [200] * 7 + [201]
    with app.extensions["besik.db"].writing() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 1


def _file_one(settings: Settings, token_header: dict[str, str], body: dict) -> int:
    from reporting import create_app

    app = create_app(settings)
    status = app.test_client().post("/api/v1/reports", json=body,
                                    headers=token_header).status_code
    app.extensions["besik.db"].dispose()
    return status


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _count_writers_queued(database):
    """How many other writers wait behind the open write transaction, as a callable."""
    if database.is_sqlite:
        entered = []

        # Runs before db.py's own listener (on the engine), which blocks on the write lock.
        @event.listens_for(database.write_engine, "begin")
        def _begin(connection) -> None:
            entered.append(1)

        # The test's own writer is the first.
        return lambda: len(entered) - 1

    def waiting() -> int:
        with database.engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()").scalar_one()

    return waiting


@pytest.mark.parametrize("reserved", [False, True], ids=["assigned", "reserved"])
def test_a_duplicate_that_passed_the_check_while_the_first_was_writing_gets_the_first(
        app, nurse, reserved):
    """Requests that found the id new, then waited for the write lock, answer 200.

    The test files the report itself and holds its write transaction open while four
    requests with the same id check it (not yet visible) and queue for the lock. Each must
    then fail its INSERT on the id, or its claim on the reserved reference, and answer with
    the stored report: never 500, and never a 422 that would make the phone resend the
    report without its reference (which the server would then refuse as a different one).
    """
    from reporting.models import User
    from reporting.reports import clean_report, file_report, plan_filing

    body = report_body()
    if reserved:
        reply = app.test_client().post("/api/v1/references/reserve", json={"count": 1},
                                       headers=nurse)
        body["reference"] = reply.get_json()["references"][0]
    database = app.extensions["besik.db"]
    collisions: list[BaseException] = []

    @event.listens_for(database.engine, "handle_error")
    def _seen(context) -> None:
        if "UNIQUE" in str(context.original_exception).upper():
            collisions.append(context.original_exception)

    def post(results: list[int]) -> None:
        results.append(app.test_client().post("/api/v1/reports", json=body,
                                              headers=nurse).status_code)

    statuses: list[int] = []
    threads = [threading.Thread(target=post, args=(statuses,)) for _ in range(4)]
    now = datetime.now(UTC)
    queued = _count_writers_queued(database)
    with app.app_context(), database.writing() as session:
        reporter = session.scalars(select(User).where(
            User.email == "nurse@besik.example")).one()
        cleaned = clean_report(body, now)
        report = file_report(session, plan_filing(session, reporter, cleaned), cleaned, now=now)
        for thread in threads:
            thread.start()
        # Each request checks the id (not yet committed), then queues behind this writer.
        _wait_until(lambda: queued() == len(threads))
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 4
    # With a reserved reference, the claim fails before any INSERT is tried.
    assert len(collisions) == (0 if reserved else 4)
    with database.writing() as session:
        assert session.scalars(select(Report.reference)).all() == [report.reference]


ROUNDS = 3


def test_two_officers_acknowledging_one_notice_at_once_record_one_acknowledgement(app, nurse):
    """officer@ and head@ (both GRD-AST-YES) tap Acknowledge together, over real HTTP."""
    import requests

    officers = [bearer(app, "officer@besik.example"), bearer(app, "head@besik.example")]
    client = app.test_client()
    reports = [client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
               for _ in range(ROUNDS)]
    with serving(app) as base:
        for report in reports:
            url = f"{base}/api/v1/reports/{report['id']}/acknowledge"
            responses = at_once(*(lambda h=h: requests.post(url, headers=h, json={"note": "x"},
                                                            timeout=60) for h in officers))
            assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
            first, second = (r.json() for r in responses)
            assert first["acknowledged_at"] == second["acknowledged_at"] is not None
            assert first["acknowledged_by"] == second["acknowledged_by"] is not None
            assert first["acknowledged_by"]["name"] in ("Dana Serikovna", "Marat Askarovich")
    with app.extensions["besik.db"].reading() as session:
        for report in reports:
            notice_id = report["notices"][0]["id"]
            acks = session.scalars(select(AuditEntry).where(
                AuditEntry.tag == "notice:acknowledged",
                AuditEntry.subject == f"notice:{notice_id}")).all()
            assert len(acks) == 1
            notice = session.get(Notice, notice_id)
            assert acks[0].actor_id == notice.acknowledged_by_id
            assert session.scalar(select(func.count()).select_from(Deadline).where(
                Deadline.report_id == report["id"],
                Deadline.rule == "register_in_data_bank")) == 1  # started once
