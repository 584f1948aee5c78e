"""Sign-in, sessions, idle timeout, CSRF and bearer tokens."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from reporting import create_app
from reporting.models import ApiToken
from tests.conftest import csrf_token, login, report_body


def test_login_page_has_the_contract_labels(client):
    html = client.get("/login").data.decode()
    for text in ('<label for="email">Email</label>', '<label for="password">Password</label>',
                 ">Sign in</button>"):
        assert text in html


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(client):
    page = client.get("/login").data.decode()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"email": "nurse@besik.example",
                                           "password": "wrong", "csrf_token": token})
    assert response.status_code == 401
    assert b"Wrong email or password." in response.data
    assert client.get("/api/v1/reports").status_code == 401


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"email": "nurse@besik.example",
                                           "password": "besik-demo-2026"})
    assert response.status_code == 400
    assert client.get("/api/v1/reports").status_code == 401


def test_session_cookie_is_httponly_and_samesite_lax(client):
    client.get("/login")
    cookie = client.get_cookie("besik_session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"


def test_session_cookie_is_secure_outside_demo(settings):
    app = create_app(replace(settings, env="production"))
    response = app.test_client().get("/login")
    assert "Secure" in response.headers["Set-Cookie"]
    app.extensions["besik.db"].dispose()


def test_expired_session_gets_401_json_on_the_api(settings, clock):
    app = create_app(settings)
    client = login(app.test_client(), "nurse@besik.example")
    assert client.get("/api/v1/reports").status_code == 200
    clock.advance(timedelta(seconds=settings.session_idle_seconds + 1))
    response = client.get("/api/v1/reports")
    assert response.status_code == 401
    assert response.is_json
    assert response.get_json()["error"]["code"] == "unauthorized"
    app.extensions["besik.db"].dispose()


def test_activity_keeps_the_session_alive(settings, clock):
    app = create_app(settings)
    client = login(app.test_client(), "nurse@besik.example")
    for _ in range(3):
        clock.advance(timedelta(seconds=settings.session_idle_seconds - 60))
        assert client.get("/api/v1/reports").status_code == 200
    app.extensions["besik.db"].dispose()


def test_cookie_api_post_needs_the_csrf_header(client):
    login(client, "nurse@besik.example")
    refused = client.post("/api/v1/reports", json=report_body())
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "csrf_invalid"
    accepted = client.post("/api/v1/reports", json=report_body(),
                           headers={"X-CSRFToken": csrf_token(client)})
    assert accepted.status_code == 201


def test_bogus_bearer_token_does_not_fall_back_to_the_cookie(client):
    login(client, "nurse@besik.example")
    response = client.post("/api/v1/reports", json=report_body(),
                           headers={"Authorization": "Bearer bsk_forged"})
    assert response.status_code == 401


def test_tokens_are_stored_hashed(client, nurse, db):
    token = nurse["Authorization"].split()[1]
    stored = db.scalars(select(ApiToken.token_hash)).all()
    assert token not in stored
    assert all(len(h) == 64 for h in stored)


def test_sign_in_does_not_redirect_off_site(client):
    page = client.get("/login?next=//evil.example/x").data.decode()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login?next=//evil.example/x",
                           data={"email": "nurse@besik.example", "password": "besik-demo-2026",
                                 "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_sign_out_ends_the_session(client):
    login(client, "nurse@besik.example")
    page = client.get("/reports/new").data.decode()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/reports").status_code == 401


def test_pages_send_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
