"""The CSV export's lines rendered ahead: an export that copies them writes the same file as
one that renders every row, and a line stops being used the moment it stops being true (its
report, notices or deadlines changed, whoever wrote; a place or person it names was renamed;
a deadline it shows as pending fell due)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select, text, update

from reporting import exports
from reporting.models import Deadline, ExportLine, Facility, Report, User
from reporting.vocabulary import ExportFormat
from reporting.worker import Worker
from tests.conftest import bearer, postgresql_lane_only, report_body
from tests.test_exports import _as_csv_text, _expected, _read_csv, filed  # noqa: F401


def _export(app: Any, now: datetime, *, use_lines: bool, lang: str = "en"
            ) -> tuple[bytes, exports.Export]:
    with app.app_context():
        job = exports.Export(ExportFormat.CSV, exports.Filters(), lang, now, use_lines=use_lines)
        return b"".join(exports.run(job, None)), job


def _same_file_either_way(app: Any, now: datetime, lang: str = "en") -> exports.Export:
    """The export copying lines writes exactly what rendering every row writes."""
    fresh, _ = _export(app, now, use_lines=False, lang=lang)
    copied, job = _export(app, now, use_lines=True, lang=lang)
    # Byte for byte up to the audit head, which the first export's own audit entry moved.
    assert copied.rsplit(b"# audit-head", 1)[0] == fresh.rsplit(b"# audit-head", 1)[0]
    assert copied.count(b"\r\n") == fresh.count(b"\r\n") == job.rows + 2
    return job


def _render(app: Any, now: datetime) -> exports.Sweep:
    with app.app_context():
        return exports.render_ahead(app.extensions["besik.db"], now)


def test_an_export_of_lines_rendered_ahead_is_the_database_row_for_row(app, filed, db, clock):
    now = clock.now()
    sweep = _render(app, now)
    assert (sweep.reports, sweep.rendered) == (15, 15)  # 5 reports in 3 languages
    data, job = _export(app, now, use_lines=True)
    assert job.rows == 5 and job.rows_rendered == 0  # every row copied
    db.expire_all()
    with app.test_request_context(), force_locale("en"):
        expected = _expected(db, now)
    assert _read_csv(data)[1] == _as_csv_text(expected)
    for lang in ("kk", "ru"):
        assert _same_file_either_way(app, now, lang).rows_rendered == 0
    assert _render(app, now).rendered == 0  # nothing left to render


def test_a_filter_and_fewer_columns_pad_the_lines_alike(app, client, filed, clock):
    """A region's export has fewer notice and deadline columns than the lines were kept
    with: the padding follows the export, not the line."""
    now = clock.now()
    _render(app, now)
    with app.app_context():
        for filters in ({"region": "AST"}, {"facility": "PC1"}):
            with app.extensions["besik.db"].reading() as session:
                chosen = exports.resolve_filters(session, filters, None)
            runs = []
            for use_lines in (False, True):
                job = exports.Export(ExportFormat.CSV, chosen, "en", now, use_lines=use_lines)
                data = b"".join(exports.run(job, None)).rsplit(b"# audit-head", 1)[0]
                runs.append((data, job.rows_rendered))
            assert runs[1][0] == runs[0][0] and runs[1][1] == 0


def _acknowledge(app: Any, client: Any, ids: list[str]) -> None:
    officer = bearer(app, "officer@besik.example")
    assert client.post(f"/api/v1/reports/{ids[1]}/acknowledge",
                       headers=officer).status_code == 200


def _act(app: Any, client: Any, ids: list[str]) -> None:
    officer = bearer(app, "officer@besik.example")
    assert client.post(f"/api/v1/reports/{ids[0]}/actions", json={"action": "examined"},
                       headers=officer).status_code == 201


def _amend(app: Any, client: Any, ids: list[str]) -> None:
    nurse = bearer(app, "nurse@besik.example")
    answer = client.post(f"/api/v1/reports/{ids[4]}/amendments",
                         json={"changes": {"risk_flags": ["mother_minor"]},
                               "reason": "the mother is 16"}, headers=nurse)
    assert answer.status_code == 201, answer.get_json()


def _escalate(app: Any, client: Any, ids: list[str]) -> None:
    assert Worker(app.extensions["besik.db"], app.config["BESIK"],
                  name="w").run_once().escalated > 0


def _by_hand(app: Any, client: Any, ids: list[str]) -> None:
    """SQL written by a person, past every code path: the database still counts it."""
    with app.extensions["besik.db"].writing() as session:
        session.execute(text("UPDATE notices SET escalation_level = 7 WHERE report_id = :id"),
                        {"id": ids[2]})


def _rename_facility(app: Any, client: Any, ids: list[str]) -> None:
    with app.extensions["besik.db"].writing() as session:
        session.execute(update(Facility).where(Facility.code == "PC1")
                        .values(name="Perinatal Centre No. 1 (renamed)"))


def _rename_officer(app: Any, client: Any, ids: list[str]) -> None:
    with app.extensions["besik.db"].writing() as session:
        session.execute(update(User).where(User.email == "officer@besik.example")
                        .values(name="Dana Serikovna-Akhmetova"))


CHANGES: list[tuple[str, Callable[[Any, Any, list[str]], None], timedelta]] = [
    ("acknowledged", _acknowledge, timedelta(0)),
    ("acted on", _act, timedelta(0)),
    ("amended", _amend, timedelta(0)),
    ("escalated", _escalate, timedelta(hours=1)),  # the new notice falls due, unanswered
    ("changed by hand", _by_hand, timedelta(0)),
    ("facility renamed", _rename_facility, timedelta(0)),
    ("officer renamed", _rename_officer, timedelta(0)),
    ("a deadline fell due", lambda app, client, ids: None, timedelta(days=5)),
]


def test_a_line_is_not_used_once_it_is_no_longer_true(app, client, filed, clock):
    ids = filed["ids"]
    for name, change, later in CHANGES:
        _render(app, clock.now())
        assert _same_file_either_way(app, clock.now()).rows_rendered == 0, name
        clock.advance(later)
        change(app, client, ids)
        job = _same_file_either_way(app, clock.now())
        assert job.rows_rendered > 0, name  # the line was not copied: it would be wrong


def test_the_database_raises_a_reports_revision_on_every_change(app, filed, db):
    """Triggers, not code: an UPDATE of the report, and an INSERT, UPDATE or DELETE of a
    notice or deadline of it, each raise its revision."""
    report_id = filed["ids"][0]

    def revision() -> int:
        with app.extensions["besik.db"].reading() as session:
            return session.scalar(select(Report.revision).where(Report.id == report_id))

    statements = [
        "UPDATE reports SET notes = 'x' WHERE id = :id",
        "UPDATE notices SET escalation_level = 3 WHERE report_id = :id",
        "UPDATE deadlines SET basis = 'y' WHERE report_id = :id",
        "INSERT INTO deadlines (report_id, rule, due_at, basis, is_basis_verified) "
        "SELECT report_id, 'extra', due_at, basis, is_basis_verified FROM deadlines "
        "WHERE report_id = :id AND rule = 'report_to_guardianship'",
        "DELETE FROM deadlines WHERE report_id = :id AND rule = 'extra'",
    ]
    for statement in statements:
        before = revision()
        with app.extensions["besik.db"].writing() as session:
            session.execute(text(statement), {"id": report_id})
        assert revision() > before, statement
    with app.extensions["besik.db"].reading() as session:  # the others were left alone
        others = session.scalars(select(Report.revision).where(Report.id != report_id)).all()
    assert len(others) == 4


def test_a_line_rendered_from_an_older_revision_is_never_used(app, client, filed, clock):
    """A sweep that read a report just before it changed stores what it read: the line
    carries the old revision, and the export renders the report afresh."""
    now = clock.now()
    ids = filed["ids"]
    db = app.extensions["besik.db"]
    with app.app_context(), db.reading() as session:
        old = exports.render_lines(session, ids, "en", now)  # read before the change
    _acknowledge(app, client, ids)
    with db.writing() as session:
        exports.keep_lines(session, old)  # written after it
    job = _same_file_either_way(app, now)
    assert job.rows_rendered == 1  # the acknowledged report; the other four were copied


def test_the_worker_renders_the_lines_ahead(app, filed, clock):
    worker = Worker(app.extensions["besik.db"], app.config["BESIK"], name="w")
    with app.app_context():
        assert worker.render_export_lines(clock.now()).rendered == 15
    with app.extensions["besik.db"].reading() as session:
        assert session.scalar(select(func.count()).select_from(ExportLine)) == 15
        for report_id in filed["ids"]:
            stale = set(session.scalars(select(ExportLine.stale_at).where(
                ExportLine.report_id == report_id)))
            pending = session.scalars(select(func.min(Deadline.due_at)).where(
                Deadline.report_id == report_id, Deadline.met_at.is_(None),
                Deadline.due_at >= clock.now())).one()
            # True until the first of its pending deadlines falls due.
            assert stale == {pending}
    assert _same_file_either_way(app, clock.now()).rows_rendered == 0


@postgresql_lane_only
def test_filing_raises_a_new_reports_revision_once_per_table_not_once_per_row(
        app, client, nurse):
    """PostgreSQL's revision triggers run once per statement: filing writes a report's
    notices in one INSERT and its deadlines in another, so the new report is updated twice
    (one notice and four deadlines here, two notices and six with a risk flag), not once
    per row."""
    for body in (report_body(), report_body(risk_flags=["payment_suspected"])):
        response = client.post("/api/v1/reports", json=body, headers=nurse)
        assert response.status_code == 201, response.get_json()
        with app.extensions["besik.db"].reading() as session:
            revision = session.scalar(select(Report.revision)
                                      .where(Report.id == response.get_json()["id"]))
        assert len(response.get_json()["deadlines"]) > 3
        assert revision == 2, body


@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_a_line_of_another_language_is_not_used(app, filed, clock, lang):
    now = clock.now()
    with app.app_context():
        exports.render_ahead(app.extensions["besik.db"], now, languages=["en"])
    assert _same_file_either_way(app, now, lang).rows_rendered == 5


@postgresql_lane_only
def test_postgresql_looks_each_line_up_by_its_key_whatever_its_statistics_say(app, filed,
                                                                               clock):
    """The worker's first pass fills export_lines after the last ANALYZE saw it empty (this
    server runs without autovacuum; a busy one may analyze late). Planned from those
    statistics as a join, the lines were read whole for every report: a pass over 1,000,000
    reports slowed to ~200 reports/s. Each report's line must be found by its key."""
    now = clock.now()
    database = app.extensions["besik.db"]
    with database.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE export_lines")  # empty
    assert _render(app, now).rendered == 15
    with app.app_context(), database.reading() as session:
        kept = exports.fingerprint(session)
    query = exports._sweep_query(kept, "en", now, (now, "~"), 2000, "postgresql")
    with database.engine.begin() as connection:
        # A few rows here: scanning them beats any index. Plans as at scale, where it does not.
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        compiled = query.compile(dialect=connection.dialect)
        plan = "\n".join(connection.exec_driver_sql(
            "EXPLAIN " + str(compiled), compiled.params).scalars())
    lookups = [line for line in plan.splitlines() if "Index Cond" in line
               and "received_at = reports.received_at" in line
               and "report_id = (reports.id)::text" in line]
    assert lookups, plan
    assert "Materialize" not in plan and "Hash" not in plan, plan
