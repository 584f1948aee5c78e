"""The compliance log export: CSV and XLSX match the database row for row, filters, language,
scope, audit, the command line, and LibreOffice opening the file."""

from __future__ import annotations

import csv
import io
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask_babel import force_locale
from sqlalchemy import select

from reporting import exports, labels, xlsx
from reporting.deadlines import deadline_state, to_local
from reporting.models import AuditEntry, AuditHead, Facility, Report
from reporting.vocabulary import AckChannel, Circumstance, ExportFormat, RiskFlag
from reporting.worker import Worker
from tests.conftest import (
    OTHER_AGENCY,
    OTHER_FACILITY,
    OTHER_NURSE,
    OTHER_REGION,
    add_other_region,
    add_user,
    bearer,
    login,
    postgresql_lane_only,
    report_body,
)

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 11:00 in Almaty


def _file(client: Any, headers: dict[str, str], minutes_ago: int, **body: Any) -> dict:
    discovered = (T0 - timedelta(minutes=minutes_ago)).isoformat()
    response = client.post("/api/v1/reports", json=report_body(discovered_at=discovered,
                                                               **body), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def filed(app, client, nurse, clock):
    """Reports in two regions: acknowledged, late, risk-flagged (police too), escalated."""
    clock.freeze(T0)
    add_other_region(app)
    officer = bearer(app, "officer@besik.example")
    r1 = _file(client, nurse, 10)
    r2 = _file(client, nurse, 120, circumstance="left_without_notice")
    r3 = _file(client, nurse, 5, risk_flags=["payment_suspected", "mother_minor"])
    other = _file(client, bearer(app, OTHER_NURSE), 3)
    clock.advance(timedelta(minutes=10))
    assert client.post(f"/api/v1/reports/{r1['id']}/acknowledge",
                       headers=officer).status_code == 200
    clock.advance(timedelta(minutes=30))
    Worker(app.extensions["besik.db"], app.config["BESIK"], name="w").run_once()
    clock.advance(timedelta(days=1))  # another day: the period filter has two days to tell
    r4 = _file(client, nurse, -24 * 60 + 5)
    return {"admin": bearer(app, "admin@besik.example"),
            "ids": [r1["id"], r2["id"], r3["id"], other["id"], r4["id"]]}


def _local(moment: datetime | None) -> str | None:
    return to_local(moment).isoformat(timespec="seconds") if moment else None


def _expected(db: Any, now: datetime, report_ids: list[str] | None = None) -> list[list[Any]]:
    """The rows as the ORM sees the database, built here independently of the SQL export."""
    query = select(Report).order_by(Report.received_at, Report.id)
    if report_ids is not None:
        query = query.where(Report.id.in_(report_ids))
    reports = db.scalars(query).all()
    notice_slots = max(len(r.notices) for r in reports)
    deadline_slots = max(len(r.deadlines) for r in reports)
    rows = []
    for r in reports:
        row: list[Any] = [
            r.reference, r.id, r.facility.code, r.facility.name, r.district.code,
            str(Circumstance(r.circumstance).label),
            "; ".join(str(RiskFlag(f).label) for f in r.risk_flags),
            _local(r.discovered_at), _local(r.filed_at), _local(r.received_at),
            round((r.received_at - r.filed_at).total_seconds()),
            str(labels.STATES[str(r.state)])]
        notices = sorted(r.notices, key=lambda n: (n.sent_at, n.id))
        for n in range(notice_slots):
            if n < len(notices):
                notice = notices[n]
                row += [notice.agency.code, _local(notice.sent_at), _local(notice.ack_due_at),
                        _local(notice.acknowledged_at),
                        notice.acknowledged_by.name if notice.acknowledged_by else None,
                        str(AckChannel(notice.ack_channel).label) if notice.ack_channel
                        else None, notice.escalation_level]
            else:
                row += [None] * 7
        deadlines = sorted(r.deadlines, key=lambda d: d.id)
        for n in range(deadline_slots):
            if n < len(deadlines):
                d = deadlines[n]
                row += [str(labels.RULES[d.rule]), _local(d.due_at), _local(d.met_at),
                        str(labels.STATES[deadline_state(d.due_at, d.met_at, now)])]
            else:
                row += [None] * 4
        rows.append(row)
    return rows


def _as_csv_text(rows: list[list[Any]]) -> list[list[str]]:
    return [["" if v is None else str(v) for v in row] for row in rows]


def _read_csv(data: bytes) -> tuple[list[str], list[list[str]], list[str]]:
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return rows[0], rows[1:-1], rows[-1]


def _read_xlsx(data: bytes) -> tuple[list[Any], list[list[Any]], list[list[Any]]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    sheet, head = book.worksheets
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    return rows[0], rows[1:], [list(row) for row in head.iter_rows(values_only=True)]


def _head(db: Any) -> tuple[int, str]:
    head = db.get(AuditHead, 1)
    return head.seq, head.hash


def test_csv_matches_the_database_row_for_row(app, client, filed, db, clock):
    head_before = _head(db)
    response = client.get("/api/v1/export?format=csv&lang=en", headers=filed["admin"])
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="besik-compliance-')
    header, rows, last = _read_csv(response.data)
    db.expire_all()
    with app.test_request_context(), force_locale("en"):
        expected = _expected(db, clock.now())
    assert rows == _as_csv_text(expected)
    assert len(rows) == 5
    assert header[:3] == ["Reference", "Report ID", "Facility code"]
    assert "Notice 2: agency" in header and "Deadline 4: state" in header
    assert last == ["# audit-head", str(head_before[0]), head_before[1],
                    to_local(clock.now()).isoformat(timespec="seconds")]


def test_xlsx_matches_the_database_row_for_row(app, client, filed, db, clock):
    head_before = _head(db)
    response = client.get("/api/v1/export?format=xlsx&lang=en", headers=filed["admin"])
    assert response.status_code == 200
    assert response.mimetype == xlsx.MIME
    header, rows, head = _read_xlsx(response.data)
    db.expire_all()
    with app.test_request_context(), force_locale("en"):
        expected = _expected(db, clock.now())
    assert rows == [[None if v == "" else v for v in row] for row in expected]
    assert isinstance(rows[0][10], int)  # the clock gap is a number, not text
    assert header[0] == "Reference"
    assert head[1][:2] == [head_before[0], head_before[1]]


def test_times_carry_the_offset_of_their_own_day(app, client, nurse, db, clock):
    """Almaty moved from UTC+6 to UTC+5 on 1 March 2024: a report from before shows +06:00."""
    for moment in (datetime(2024, 2, 20, 6, 0, tzinfo=UTC), T0):
        clock.freeze(moment)
        client.post("/api/v1/reports", headers=nurse, json=report_body(
            discovered_at=(moment - timedelta(minutes=10)).isoformat()))
    _, rows, _ = _read_csv(client.get("/api/v1/export?format=csv",
                                      headers=bearer(app, "admin@besik.example")).data)
    assert rows[0][9] == "2024-02-20T12:00:00+06:00"
    assert rows[1][9] == "2026-11-30T11:00:00+05:00"


def test_filters_period_region_facility_agency(app, client, filed):
    admin, ids = filed["admin"], filed["ids"]

    def exported(query: str) -> set[str]:
        response = client.get(f"/api/v1/export?format=csv&{query}", headers=admin)
        assert response.status_code == 200, response.data
        return {row[1] for row in _read_csv(response.data)[1]}

    assert exported("") == set(ids)
    assert exported("from=2026-11-30&to=2026-11-30") == set(ids[:4])
    assert exported("from=2026-12-01") == {ids[4]}
    assert exported(f"region={OTHER_REGION}") == {ids[3]}
    assert exported("region=AST") == set(ids) - {ids[3]}
    assert exported(f"facility={OTHER_FACILITY}") == {ids[3]}
    assert exported("agency=POL-AST") == {ids[2]}
    assert exported(f"agency={OTHER_AGENCY}") == {ids[3]}
    assert exported("facility=CP4") == set()


def test_bad_filters_are_refused_before_any_byte(app, client, filed):
    admin = filed["admin"]
    for query, status in (("", 422), ("format=pdf", 422), ("format=csv&from=2026-13-01", 422),
                          ("format=csv&from=2026-12-02&to=2026-12-01", 422),
                          ("format=csv&lang=de", 422), ("format=csv&facility=NOPE", 404),
                          ("format=csv&region=zz", 422)):
        response = client.get(f"/api/v1/export?{query}", headers=admin)
        assert response.status_code == status, query
        assert "error" in response.get_json()


@pytest.mark.parametrize("lang", ["kk", "ru", "en"])
def test_headers_follow_the_requested_language(app, client, filed, lang):
    response = client.get(f"/api/v1/export?format=csv&lang={lang}", headers=filed["admin"])
    header, rows, _ = _read_csv(response.data)
    with app.test_request_context(), force_locale(lang):
        assert header[0] == str(exports.REPORT_COLUMNS[0])
        assert header[12] == str(exports.NOTICE_COLUMNS[0]) % {"n": 1}
        first = next(row for row in rows if row[1] == filed["ids"][0])
        assert first[5] == str(Circumstance.WRITTEN_REFUSAL.label)
    if lang != "en":
        assert header[0] != "Reference" and first[5] != "Mother signed a refusal statement"


def test_headers_default_to_the_admins_language(app, client, filed):
    login(client, "admin@besik.example")
    assert client.get("/admin?lang=ru").status_code == 200
    header, _, _ = _read_csv(client.get("/api/v1/export?format=csv").data)
    with app.test_request_context(), force_locale("ru"):
        assert header[0] == str(exports.REPORT_COLUMNS[0]) != "Reference"


def test_the_export_is_audited(app, client, filed, db):
    response = client.get("/api/v1/export?format=xlsx&region=AST&lang=ru",
                          headers=filed["admin"])
    assert response.status_code == 200
    response.get_data()
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "export:created")).one()
    assert entry.data == {"format": "xlsx", "filters": {"region": "AST"}, "language": "ru",
                          "rows": 4, "complete": True}
    admin_id = db.scalar(select(AuditEntry.actor_id).where(AuditEntry.tag == "export:created"))
    assert admin_id is not None


def test_an_abandoned_download_is_audited_as_incomplete(app, client, filed, db, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)
    response = client.get("/api/v1/export?format=csv", headers=filed["admin"],
                          buffered=False)
    chunks = iter(response.response)
    next(chunks)
    response.close()
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "export:created")).one()
    assert entry.data["complete"] is False
    assert entry.data["rows"] == 2


def test_batches_do_not_lose_or_repeat_a_row(app, client, filed, db, clock, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)
    _, rows, _ = _read_csv(client.get("/api/v1/export?format=csv&lang=en",
                                      headers=filed["admin"]).data)
    db.expire_all()
    with app.test_request_context(), force_locale("en"):
        assert rows == _as_csv_text(_expected(db, clock.now()))


@pytest.mark.parametrize("email", ["nurse@besik.example", "officer@besik.example",
                                   "police@besik.example"])
def test_reporters_and_officers_get_403(app, client, filed, email):
    headers = bearer(app, email)
    assert client.get("/api/v1/export?format=csv", headers=headers).status_code == 403
    login(client, email)
    assert client.get("/admin/export").status_code == 403
    assert client.get("/admin/export?format=csv").status_code == 403


def test_a_regions_admin_exports_only_that_region(app, client, filed):
    add_user(app, "admin.ala@besik.example", "admin", region=OTHER_REGION)
    headers = bearer(app, "admin.ala@besik.example")
    _, rows, _ = _read_csv(client.get("/api/v1/export?format=csv", headers=headers).data)
    assert [row[1] for row in rows] == [filed["ids"][3]]
    for outside in ("region=AST", "facility=PC1", "agency=GRD-AST-YES"):
        assert client.get(f"/api/v1/export?format=csv&{outside}",
                          headers=headers).status_code == 404


def test_the_page_offers_the_scope_and_downloads(app, client, filed):
    login(client, "admin@besik.example")
    page = client.get("/admin/export")
    assert page.status_code == 200
    html = page.data.decode()
    for code in ("PC1", OTHER_FACILITY, "POL-AST", OTHER_REGION):
        assert f'value="{code}"' in html
    download = client.get(
        "/admin/export?format=xlsx&facility=PC1&from=&to=&region=&headers=ru")
    assert download.status_code == 200 and download.mimetype == xlsx.MIME
    header, rows, _ = _read_xlsx(download.data)
    assert len(rows) == 4
    with app.test_request_context(), force_locale("ru"):
        assert header[0] == str(exports.REPORT_COLUMNS[0]) != "Reference"
    assert '<html lang="en">' in client.get("/admin/export").data.decode()  # page unchanged
    bad = client.get("/admin/export?format=csv&from=2026-12-02&to=2026-12-01")
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.data.decode()


def test_names_that_look_like_formulas_are_quoted_in_csv_only(app, client, filed, db):
    with app.extensions["besik.db"].writing() as session:
        facility = session.scalars(select(Facility).where(Facility.code == "PC1")).one()
        facility.name = "=HYPERLINK(\"http://x\")"
    _, rows, _ = _read_csv(client.get("/api/v1/export?format=csv&facility=PC1",
                                      headers=filed["admin"]).data)
    assert rows[0][3] == "'=HYPERLINK(\"http://x\")"
    _, xrows, _ = _read_xlsx(client.get("/api/v1/export?format=xlsx&facility=PC1",
                                        headers=filed["admin"]).data)
    assert xrows[0][3] == "=HYPERLINK(\"http://x\")"  # an inline string is never a formula


def test_the_command_writes_the_same_rows_and_is_audited(app, client, filed, db, tmp_path):
    out = tmp_path / "log.csv"
    result = app.test_cli_runner().invoke(args=["export", "--format", "csv", "--lang", "en",
                                                "--region", "AST", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 reports written" in result.output
    api = client.get("/api/v1/export?format=csv&lang=en&region=AST", headers=filed["admin"])
    assert _read_csv(out.read_bytes())[1] == _read_csv(api.data)[1]
    entries = db.scalars(select(AuditEntry).where(AuditEntry.tag == "export:created")
                         .order_by(AuditEntry.seq)).all()
    assert entries[0].actor_id is None and entries[0].data["rows"] == 4


@pytest.mark.parametrize("args", [["--format", "pdf"], ["--format", "csv", "--from", "31-12"],
                                  ["--format", "csv", "--facility", "NOPE"],
                                  ["--format", "csv", "--from", "2026-12-02", "--to",
                                   "2026-12-01"]])
def test_the_command_refuses_bad_input_with_2(app, tmp_path, args):
    result = app.test_cli_runner().invoke(args=["export", *args, "--out",
                                                str(tmp_path / "x.csv")])
    assert result.exit_code == 2, result.output


def test_control_characters_and_markup_survive_xlsx():
    data = b"".join(xlsx.stream([xlsx.Sheet("S", [["a<b>&\"c\"", " lead", "x\x01y", 3, None,
                                                   2.5, True]])]))
    row = next(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    assert list(row) == ["a<b>&\"c\"", " lead", "xy", 3, None, 2.5, True]
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None


def test_libreoffice_opens_a_ten_report_export(app, client, nurse, clock, tmp_path: Path):
    clock.freeze(T0)
    for minutes in range(10):
        _file(client, nurse, 10 + minutes, notes="x")
    admin = bearer(app, "admin@besik.example")
    book = tmp_path / "log.xlsx"
    book.write_bytes(client.get("/api/v1/export?format=xlsx&lang=ru", headers=admin).data)
    csv_ours = client.get("/api/v1/export?format=csv&lang=ru", headers=admin).data
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76",
                    "--outdir", str(tmp_path), str(book)],
                   check=True, capture_output=True, timeout=120)
    converted = list(csv.reader(io.StringIO((tmp_path / "log.csv").read_text("utf-8"))))
    header, rows, _ = _read_csv(csv_ours)
    assert converted[0] == header
    assert converted[1:] == rows
    assert len(rows) == 10


# --- Reading ahead (PostgreSQL renders the next batch while this one is written) ----------


def _batches_then(error: Exception | None, closed: list[bool]) -> Iterator[list[int]]:
    try:
        yield [1, 2]
        yield [3]
        if error is not None:
            raise error
    finally:
        closed.append(True)


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "export-read-ahead"]


def test_reading_ahead_hands_every_batch_in_order_then_ends_or_raises():
    closed: list[bool] = []
    assert list(exports._read_by_thread(_batches_then(None, closed))) == [[1, 2], [3]]
    failing = exports._read_by_thread(_batches_then(RuntimeError("database went away"), closed))
    assert next(failing) == [1, 2] and next(failing) == [3]
    with pytest.raises(RuntimeError, match="database went away"):
        next(failing)
    assert closed == [True, True] and not _readers()


def test_an_abandoned_read_ahead_stops_its_thread_and_closes_its_source():
    closed: list[bool] = []
    reading = exports._read_by_thread(_batches_then(None, closed))
    assert next(reading) == [1, 2]
    reading.close()  # the browser went away: the session must be free again at once
    assert closed == [True] and not _readers()


@postgresql_lane_only
def test_postgresql_exports_read_their_batches_in_a_thread_of_their_own(
        app, filed, clock, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)
    readers: list[str] = []

    def recorded(read: Any) -> Any:
        def reading(*args: Any) -> Iterator[Any]:
            for batch in read(*args):
                readers.append(threading.current_thread().name)
                yield batch
        return reading

    for name in ("_batches", "_line_rows"):
        monkeypatch.setattr(exports, name, recorded(getattr(exports, name)))
    for export_format, use_lines in ((ExportFormat.XLSX, False),
                                     (ExportFormat.CSV, False),
                                     (ExportFormat.CSV, True)):
        readers.clear()
        with app.app_context():
            job = exports.Export(export_format, exports.Filters(), "en", clock.now(),
                                 use_lines=use_lines)
            assert b"".join(exports.run(job, None))
        assert job.rows == 5 and readers == ["export-read-ahead"] * 3, (export_format, readers)
    assert not _readers()


@postgresql_lane_only
def test_an_abandoned_postgresql_export_frees_its_session_at_once(app, client, filed, db,
                                                                  monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 2)
    response = client.get("/api/v1/export?format=csv", headers=filed["admin"],
                          buffered=False)
    chunks = iter(response.response)
    next(chunks)
    assert len(_readers()) == 1  # reading the next batch, or holding it
    response.close()
    assert not _readers()
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "export:created")).one()
    assert entry.data["complete"] is False and entry.data["rows"] == 2
