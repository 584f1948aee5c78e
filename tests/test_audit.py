"""The audit hash chain: appended by every state change, and any edit is detected."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from reporting import audit
from reporting.models import AuditEntry
from tests.conftest import bearer, postgresql_lane_only, report_body


def tamper(app, sql: str) -> None:
    """Edit the log the way an attacker with database access would."""
    engine = app.extensions["besik.db"].engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER "
                              "audit_entries_append_only"))
        conn.execute(text(sql))
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER "
                              "audit_entries_append_only"))


def test_chain_verifies_after_filing(client, nurse, db):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    result = audit.verify(db)
    assert result.is_ok
    assert result.entries == db.scalar(select(AuditEntry.seq).order_by(
        AuditEntry.seq.desc()).limit(1))


def test_many_entries_appended_at_once_are_one_valid_chain_and_none_appends_nothing(app):
    """Appended in INSERTs of up to APPEND_ROWS_PER_STATEMENT entries each: across their
    boundaries the chain is whole, in order, every entry there once."""
    database = app.extensions["besik.db"]
    count = 2 * audit.APPEND_ROWS_PER_STATEMENT + 1
    with database.writing() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry))
        audit.append_all(session, [audit.Entry("test:many", actor_id=None, subject=f"n:{i}",
                                               data={"i": i}) for i in range(count)])
        audit.append_all(session, [])
    with database.reading() as session:
        result = audit.verify(session)
        appended = session.scalars(select(AuditEntry.data).where(AuditEntry.tag == "test:many")
                                   .order_by(AuditEntry.seq)).all()
        total = session.scalar(select(func.count()).select_from(AuditEntry))
    assert result.is_ok, result
    assert [data["i"] for data in appended] == list(range(count))
    assert total == before + count


def test_an_edited_entry_is_detected(client, nurse, app, db):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    filed = db.scalars(select(AuditEntry).where(AuditEntry.tag == "report:filed")).one()
    tamper(app, f"UPDATE audit_entries SET actor_id = 999 WHERE seq = {filed.seq}")
    db.rollback()
    result = audit.verify(db)
    assert not result.is_ok
    assert result.bad_seq == filed.seq
    assert result.reason == "content changed"


def test_a_deleted_last_entry_is_detected(client, nurse, app, db):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    last = db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    tamper(app, f"DELETE FROM audit_entries WHERE seq = {last}")
    db.rollback()
    assert not audit.verify(db).is_ok


def test_api_reports_a_broken_chain(client, nurse, app):
    admin = bearer(app, "admin@besik.example")
    ok = client.get("/api/v1/audit/verify", headers=admin).get_json()
    assert ok["ok"] is True and len(ok["head"]) == 64 and ok["entries"] > 0
    tamper(app, "UPDATE audit_entries SET tag = 'x:y' WHERE seq = 1")
    broken = client.get("/api/v1/audit/verify", headers=admin).get_json()
    assert broken["ok"] is False
    assert broken["bad_entry"] == 1


@postgresql_lane_only
def test_postgresql_refuses_to_edit_or_delete_audit_rows(app, db):
    """The trigger is PostgreSQL's promise; on SQLite the hash chain alone covers edits (the
    tests above), so this one runs on the PostgreSQL lane only."""
    engine = app.extensions["besik.db"].engine
    assert engine.dialect.name == "postgresql"
    assert db.scalar(select(func.count()).select_from(AuditEntry)) > 0  # rows to refuse
    for sql in ("UPDATE audit_entries SET tag = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    db.rollback()
    assert audit.verify(db).is_ok
