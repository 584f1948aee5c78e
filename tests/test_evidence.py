"""The evidence record of one report: printable, complete, and its hashes are the chain's."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from reporting import audit
from reporting.models import AuditEntry
from reporting.worker import Worker
from tests.conftest import bearer, login, report_body
from tests.test_push import (  # noqa: F401 - fixtures
    app,
    subscribe,
)


def test_the_evidence_record_holds_the_whole_case_and_the_chains_hashes(app, client, nurse,
                                                                        push_service, clock):
    subscribe(client, app, "officer@besik.example", push_service)
    body = report_body(filed_at=(clock.now() - timedelta(seconds=40)).isoformat(),
                       risk_flags=["payment_suspected"])
    report = client.post("/api/v1/reports", json=body, headers=nurse).get_json()
    Worker(app.extensions["besik.db"], app.config["BESIK"], name="w").run_once()
    officer = bearer(app, "officer@besik.example")
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    client.post(f"/api/v1/reports/{report['id']}/actions", json={"action": "examined",
                                                                 "note": "healthy"},
                headers=officer)
    with app.extensions["besik.db"].reading() as session:
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.subject == f"report:{report['id']}")).all()
        assert audit.verify(session).is_ok
    login(client, "officer@besik.example")
    page = client.get(f"/reports/{report['id']}/evidence")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    events = [e for e in ("discovered", "filed", "received", "notice_sent", "acknowledged",
                          "action") if f'data-event="{e}"' in html]
    assert events == ["discovered", "filed", "received", "notice_sent", "acknowledged",
                      "action"]
    assert "40 s after the phone" in html or "40 s" in html  # the gap between the clocks
    assert 'data-delivery=' in html and "201" in html  # the push and its answer
    assert app.test_cli_runner().invoke(args=["audit-verify"]).exit_code == 0
    assert entries and all(f"<code>{e.hash}</code>" in html for e in entries)
    assert f'data-seq="{entries[0].seq}"' in html
    assert "@media print" in client.get("/static/css/besik.css").get_data(as_text=True)


def test_only_officers_in_scope_and_admins_see_the_evidence(app, client, nurse):
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    url = f"/reports/{report['id']}/evidence"
    for email, status in (("admin@besik.example", 200), ("officer@besik.example", 200),
                          ("officer2@besik.example", 404), ("nurse@besik.example", 403)):
        fresh = app.test_client()
        login(fresh, email)
        assert fresh.get(url).status_code == status, email


def test_opening_the_evidence_is_audited(app, client, nurse):
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    login(client, "admin@besik.example")
    client.get(f"/reports/{report['id']}/evidence")
    with app.extensions["besik.db"].reading() as session:
        vias = [e.data["via"] for e in session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "report:viewed"))]
    assert vias == ["evidence"]
