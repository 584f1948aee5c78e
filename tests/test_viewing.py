"""Reading a report is audited (who viewed which child's record): every time it is opened,
once per session for the reports a list shows."""

from __future__ import annotations

from sqlalchemy import select

from reporting.models import AuditEntry
from tests.conftest import bearer, login, report_body


def _views(app) -> list[tuple[int | None, str | None, str]]:
    with app.extensions["besik.db"].reading() as session:
        return [(e.actor_id, e.subject, e.data["via"]) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "report:viewed")
            .order_by(AuditEntry.seq))]


def _user_id(app, email: str) -> int:
    from reporting.models import User

    with app.extensions["besik.db"].reading() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


def test_opening_a_report_by_api_or_page_is_audited_each_time(app, client, nurse):
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    for _ in range(2):
        assert client.get(f"/api/v1/reports/{report['id']}", headers=officer).status_code == 200
    login(client, "officer@besik.example")
    assert client.get(f"/reports/{report['id']}").status_code == 200
    who = _user_id(app, "officer@besik.example")
    subject = f"report:{report['id']}"
    assert _views(app) == [(who, subject, "api"), (who, subject, "api"), (who, subject, "page")]


def test_a_report_outside_scope_is_404_and_not_recorded(app, client, nurse):
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    other = bearer(app, "officer2@besik.example")
    assert client.get(f"/api/v1/reports/{report['id']}", headers=other).status_code == 404
    assert _views(app) == []


def test_a_list_records_each_report_once_per_session(app, client, nurse):
    ids = [client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()["id"]
           for _ in range(3)]
    officer = bearer(app, "officer@besik.example")
    for _ in range(3):  # an inbox polling
        assert client.get("/api/v1/reports?state=pending", headers=officer).status_code == 200
    who = _user_id(app, "officer@besik.example")
    assert sorted(_views(app)) == sorted((who, f"report:{i}", "list") for i in ids)
    another = bearer(app, "officer@besik.example")  # another session: recorded again
    client.get("/api/v1/reports", headers=another)
    assert len(_views(app)) == 6
