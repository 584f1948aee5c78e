"""Deny by default: every endpoint declares who may use it; the matrix over the URL map."""

from __future__ import annotations

import pytest
from flask import Flask

from reporting import create_app
from reporting.access import PUBLIC, SIGNED_IN, declared_access, is_token_authenticated
from tests.conftest import bearer, login, report_body

ROLES = {"reporter": "nurse@besik.example", "officer": "officer@besik.example",
         "admin": "admin@besik.example"}


def endpoints(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every route, with a placeholder for each argument."""
    found = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "00000000-0000-4000-8000-000000000000")
            url = url.replace(f"<path:{arg}>", "css/besik.css")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, url))
    return found


def test_every_endpoint_declares_who_may_use_it(app):
    undeclared = [e for e, _, _ in endpoints(app) if declared_access(app, e) is None]
    assert undeclared == []


def test_an_undeclared_endpoint_is_refused_and_caught_by_the_walk(settings):
    app = create_app(settings)

    @app.get("/forgotten")
    def forgotten() -> str:
        return "personal data"

    assert "forgotten" in [e for e, _, _ in endpoints(app)
                           if declared_access(app, e) is None]
    client = app.test_client()
    login(client, "admin@besik.example")
    response = client.get("/forgotten")
    assert response.status_code == 403
    assert b"personal data" not in response.data
    app.extensions["besik.db"].dispose()


@pytest.mark.parametrize("role", [None, *ROLES])
def test_access_matrix_over_the_whole_url_map(app, role):
    client = app.test_client()
    headers = bearer(app, ROLES[role]) if role else {}
    for endpoint, method, url in endpoints(app):
        declared = declared_access(app, endpoint)
        assert declared is not None
        allowed = PUBLIC in declared or (role is not None and (
            SIGNED_IN in declared or role in declared))
        response = client.open(url, method=method, headers=headers)
        status = response.status_code
        response.close()
        if allowed and is_token_authenticated(app, endpoint) and method == "POST":
            # Its own proof is a token in the body: a made-up one is refused, never a login.
            assert status in (403, 415, 422), (role, method, url, status)
        elif allowed:
            assert status not in (401, 403), (role, method, url, status)
            assert "/login" not in response.headers.get("Location", "") or url == "/logout"
        elif role is None:
            assert status in (401, 302), (role, method, url, status)
            if status == 302:
                assert "/login" in response.headers["Location"]
        else:
            assert status == 403, (role, method, url, status)


def test_anonymous_api_call_gets_401_json_never_a_redirect(client):
    for url in ("/api/v1/reports", "/api/v1/csrf", "/api/v1/audit/verify"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    response = client.post("/api/v1/reports", json=report_body())
    assert response.status_code == 401


def test_anonymous_page_redirects_to_sign_in(client):
    response = client.get("/reports/new")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/reports/new")


def test_officer_cannot_file_a_report(client, app):
    response = client.post("/api/v1/reports", json=report_body(),
                           headers=bearer(app, "officer@besik.example"))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_reporter_cannot_verify_the_audit_log(client, app):
    response = client.get("/api/v1/audit/verify", headers=bearer(app, "nurse@besik.example"))
    assert response.status_code == 403


def test_each_role_lands_on_its_home(app):
    for role, home in (("reporter", "/reports/new"), ("officer", "/inbox"),
                       ("admin", "/admin")):
        client = login(app.test_client(), ROLES[role])
        response = client.get("/")
        assert response.status_code == 302
        assert response.headers["Location"] == home
        assert client.get(home).status_code == 200
