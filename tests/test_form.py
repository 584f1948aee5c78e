"""The plain HTML form (no JavaScript needed) files a report and shows the receipt."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

from sqlalchemy import func, select

from reporting.deadlines import to_local
from reporting.models import Report
from tests.conftest import login


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="(csrf_token|id)" value="([^"]*)"', html))


def test_form_has_the_contract_labels_and_three_required_inputs(client):
    login(client, "nurse@besik.example")
    html = unescape(client.get("/reports/new").data.decode())
    for label in ("What happened", "Discovered at", "Child's sex", "Child's IIN",
                  "Mother's IIN", "Send report", "More details"):
        assert label in html
    # select, datetime, three radio buttons
    assert len(re.findall(r"<(?:select|input)[^>]* required[ >]", html)) == 2 + 3


def test_form_runs_no_inline_script(client):
    """The CSP allows scripts from 'self' only: every script is a file under /static/, or a
    JSON data block (never executed); no inline code, no inline event handlers."""
    login(client, "nurse@besik.example")
    response = client.get("/reports/new")
    html = response.data.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.S | re.I)
    assert len(scripts) == html.lower().count("<script")  # every opened script was parsed
    sources = []
    for attributes, body in scripts:
        source = re.search(r'\bsrc="([^"]*)"', attributes)
        if source:
            assert body.strip() == "", attributes
            sources.append(source.group(1))
        else:
            assert re.search(r'\btype="application/json"', attributes), (attributes, body)
    assert "/static/js/outbox.js" in sources  # the offline outbox is there, as a file
    assert all(s.startswith("/static/") for s in sources), sources
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html, re.I)  # no onclick= and the like
    assert "javascript:" not in html.lower()
    policy = response.headers["Content-Security-Policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'"]


def test_nurse_files_through_the_form_and_sees_the_reference(client, db):
    login(client, "nurse@besik.example")
    fields = form_fields(client.get("/reports/new").data.decode())
    discovered = to_local(datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M")
    response = client.post("/reports/new", data=fields | {
        "circumstance": "left_without_notice", "discovered_at": discovered,
        "child.sex": "male", "risk_flags": ["mother_minor"]})
    assert response.status_code == 303
    receipt = client.get(response.headers["Location"])
    report = db.scalars(select(Report)).one()
    assert report.id == fields["id"]
    assert report.risk_flags == ["mother_minor"]
    assert report.reference in receipt.data.decode()
    assert "Delivered — reference" in receipt.data.decode()


def test_double_submit_files_one_report(client, db):
    login(client, "nurse@besik.example")
    fields = form_fields(client.get("/reports/new").data.decode())
    data = fields | {"circumstance": "other", "child.sex": "unknown",
                     "discovered_at": to_local(datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M")}
    first = client.post("/reports/new", data=data)
    second = client.post("/reports/new", data=data)
    assert first.headers["Location"] == second.headers["Location"]
    assert db.scalar(select(func.count()).select_from(Report)) == 1


def test_form_errors_are_shown_next_to_the_fields_and_input_is_kept(client, db):
    login(client, "nurse@besik.example")
    fields = form_fields(client.get("/reports/new").data.decode())
    response = client.post("/reports/new", data=fields | {
        "circumstance": "", "discovered_at": "2026-01-01T10:00", "child.sex": "female",
        "child.iin": "250115601232", "notes": "kept"})
    html = response.data.decode()
    assert response.status_code == 422
    assert 'role="alert"' in html
    assert 'id="circumstance-error"' in html
    assert 'id="child-iin-error"' in html and 'aria-invalid="true"' in html
    assert "kept" in html and "250115601232" in html
    assert db.scalar(select(func.count()).select_from(Report)) == 0


def test_officer_cannot_open_the_form(client):
    login(client, "officer@besik.example")
    assert client.get("/reports/new").status_code == 403


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_answers_503_when_the_database_is_gone(settings, tmp_path):
    from dataclasses import replace

    from reporting import create_app

    app = create_app(replace(settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/x"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}
    app.extensions["besik.db"].dispose()
