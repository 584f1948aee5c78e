"""Sign-in limits, sessions that end on the server, tokens that expire, secrets, strict push
sending: each finding of the outside review, with a test that failed before its fix."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from reporting import create_app, push
from reporting.demo import DEMO_PASSWORD
from reporting.models import AuditEntry
from tests.conftest import PG_URL, _reset_postgresql, bearer, login, report_body

WRONG = "not-the-password-at-all"


def _sign_in(client, email: str, password: str, address: str = "10.0.0.1"):
    page = client.get("/login")
    token = page.data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def test_ten_wrong_passwords_then_even_the_right_one_is_429_with_retry_after(client, db):
    for _ in range(10):
        assert _sign_in(client, "nurse@besik.example", WRONG).status_code == 401
    refused = _sign_in(client, "nurse@besik.example", DEMO_PASSWORD)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
    failures = db.scalars(select(AuditEntry).where(AuditEntry.tag == "user:sign_in_failed")
                          ).all()
    assert len(failures) == 10
    assert all(WRONG not in str(entry.data) for entry in failures)
    assert failures[0].data["email"] == "nurse@besik.example"


def test_the_limit_is_per_address_across_accounts(client):
    for n in range(10):
        assert _sign_in(client, f"nobody{n}@besik.example", WRONG,
                        address="10.0.0.9").status_code == 401
    assert _sign_in(client, "nurse@besik.example", DEMO_PASSWORD,
                    address="10.0.0.9").status_code == 429
    # Another address may still sign in to the same account.
    assert _sign_in(client, "nurse@besik.example", DEMO_PASSWORD,
                    address="10.0.0.10").status_code == 302


def test_the_count_is_shared_by_every_web_process(settings):
    """Two app instances (two gunicorn workers, or two hosts) on one database."""
    first, second = create_app(settings), create_app(settings)
    try:
        for _ in range(6):
            _sign_in(first.test_client(), "nurse@besik.example", WRONG)
        for _ in range(4):
            _sign_in(second.test_client(), "nurse@besik.example", WRONG)
        assert _sign_in(first.test_client(), "nurse@besik.example",
                        DEMO_PASSWORD).status_code == 429
    finally:
        first.extensions["besik.db"].dispose()
        second.extensions["besik.db"].dispose()


def test_sign_in_works_again_once_the_failures_leave_the_window(client, clock):
    for _ in range(10):
        _sign_in(client, "nurse@besik.example", WRONG)
    assert _sign_in(client, "nurse@besik.example", DEMO_PASSWORD).status_code == 429
    clock.advance(timedelta(minutes=15, seconds=1))
    assert _sign_in(client, "nurse@besik.example", DEMO_PASSWORD).status_code == 302


def test_failed_bearer_tokens_are_limited_per_address(client, app):
    good = bearer(app, "nurse@besik.example")
    for n in range(10):
        response = client.get("/api/v1/reports", headers={"Authorization": f"Bearer bsk_{n}"})
        assert response.status_code == 401
    refused = client.get("/api/v1/reports", headers=good)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_cookie_copied_before_sign_out_no_longer_works(client, app):
    login(client, "nurse@besik.example")
    assert client.get("/api/v1/reports").status_code == 200
    stolen = client.get_cookie("besik_session")
    token = client.get("/api/v1/csrf").get_json()["csrf_token"]
    assert client.post("/logout", headers={"X-CSRFToken": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("besik_session", stolen.value)
    assert replay.get("/api/v1/reports").status_code == 401


def test_a_session_ends_twelve_hours_after_sign_in_however_active(client, clock):
    login(client, "nurse@besik.example")
    for _ in range(12 * 3 - 1):  # every 20 minutes for 11 h 40 min
        clock.advance(timedelta(minutes=20))
        assert client.get("/api/v1/reports").status_code == 200
    clock.advance(timedelta(minutes=21))
    assert client.get("/api/v1/reports").status_code == 401


def test_deactivating_a_user_stops_their_session_and_tokens_at_once(client, app):
    login(client, "nurse@besik.example")
    token = bearer(app, "nurse@besik.example")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["deactivate-user", "--email", "nurse@besik.example"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/reports").status_code == 401
    assert app.test_client().get("/api/v1/reports", headers=token).status_code == 401
    assert _sign_in(app.test_client(), "nurse@besik.example", DEMO_PASSWORD).status_code == 401
    assert runner.invoke(args=["deactivate-user", "--email", "nobody@x"]).exit_code == 2


def test_revoked_tokens_stop_on_the_next_request(client, app):
    token = bearer(app, "officer@besik.example")
    assert client.get("/api/v1/reports", headers=token).status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["revoke-tokens", "--email", "officer@besik.example"])
    assert result.exit_code == 0 and "revoked 1" in result.output
    assert client.get("/api/v1/reports", headers=token).status_code == 401
    assert runner.invoke(args=["revoke-tokens", "--email", "nobody@x"]).exit_code == 2


def test_bearer_tokens_expire_after_token_days(client, app, clock):
    token = bearer(app, "officer@besik.example")
    clock.advance(timedelta(days=89))
    assert client.get("/api/v1/reports", headers=token).status_code == 200
    clock.advance(timedelta(days=1, seconds=1))
    assert client.get("/api/v1/reports", headers=token).status_code == 401


def test_hsts_is_sent_outside_the_demo_only(settings, client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    production = create_app(replace(settings, env="production"))
    try:
        header = production.test_client().get("/login").headers["Strict-Transport-Security"]
        assert "max-age=31536000" in header
    finally:
        production.extensions["besik.db"].dispose()


@pytest.mark.parametrize("target", ["/inbox\r\nSet-Cookie: x=1", "/x\n", "/%0d%0a"])
def test_a_next_with_control_characters_never_breaks_sign_in(client, target):
    page = client.get("/login")
    token = page.data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", query_string={"next": target},
                           data={"email": "nurse@besik.example", "password": DEMO_PASSWORD,
                                 "csrf_token": token})
    assert response.status_code == 302
    assert "\n" not in response.headers["Location"] and "\r" not in response.headers["Location"]


# --- the push sender ------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "allowed", "expected"), [
    ("https://fcm.googleapis.com/fcm/send/x", ("fcm.googleapis.com",), True),
    ("http://fcm.googleapis.com/fcm/send/x", ("fcm.googleapis.com",), False),
    ("https://fcm.googleapis.com:8443/x", ("fcm.googleapis.com",), False),
    ("https://wns2-by3p.notify.windows.com/w/x", ("*.notify.windows.com",), True),
    ("https://wns2-pn1p.notify.windows.com/w/x", ("*.notify.windows.com",), True),
    ("https://notify.windows.com/w/x", ("*.notify.windows.com",), False),
    ("https://evilnotify.windows.com/x", ("*.notify.windows.com",), False),
    ("https://notify.windows.com.evil.example/x", ("*.notify.windows.com",), False),
    ("http://127.0.0.1:9999/push/x", ("http://127.0.0.1:9999",), True),
    ("http://127.0.0.1:9998/push/x", ("http://127.0.0.1:9999",), False),
    ("https://127.0.0.1:9999/push/x", ("http://127.0.0.1:9999",), False),
    ("http://127.0.0.1:9999/push/x", ("127.0.0.1:9999",), False),
    ("https://user:pw@fcm.googleapis.com/x", ("fcm.googleapis.com",), False),
    ("https://[::1/x", ("fcm.googleapis.com",), False),
])
def test_the_allowlist_is_https_only_with_suffix_patterns(endpoint, allowed, expected):
    assert push.is_allowed(endpoint, allowed) is expected


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    _Redirector.target = f"http://127.0.0.1:{internal.server_port}/internal-admin"
    _Recorder.hits = []
    for server in (internal, redirector):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{redirector.server_port}", f"127.0.0.1:{internal.server_port}"
    finally:
        for server in (internal, redirector):
            server.shutdown()
            server.server_close()


def test_the_sender_never_follows_a_redirect(servers, tmp_path: Path):
    redirector, _internal = servers
    key = tmp_path / "vapid.pem"
    push.ensure_vapid_key(key)
    from tests.push_service import PushService

    with PushService() as service:  # only for a well-formed subscription's keys
        subscription = service.new_subscription().as_json()
    result = push.send(f"http://{redirector}/push/abc", subscription["keys"]["p256dh"],
                       subscription["keys"]["auth"], {"type": "test"},
                       vapid_key_path=str(key), subject="mailto:a@b.example")
    assert result.status_code == 307
    assert not result.is_delivered and not result.is_retryable
    assert _Recorder.hits == []


# --- logs -----------------------------------------------------------------------------------

DISTINCTIVE = {"child_iin": "250115601231", "mother_iin": "851231300124",
               "mother_name": "Zhanargul Distinctiveva", "phone": "+77011234567",
               "address": "Ulitsa Nepovtorimaya 7"}


def test_no_personal_data_reaches_the_logs_even_on_errors(app, client, nurse, caplog):
    import logging

    from sqlalchemy.exc import IntegrityError

    from reporting.models import Report

    caplog.set_level(logging.DEBUG)
    body = report_body(child={"sex": "female", "iin": DISTINCTIVE["child_iin"]},
                       mother={"iin": DISTINCTIVE["mother_iin"],
                               "full_name": DISTINCTIVE["mother_name"],
                               "phone": DISTINCTIVE["phone"],
                               "address": DISTINCTIVE["address"]})
    assert client.post("/api/v1/reports", json=body, headers=nurse).status_code == 201
    conflicting = {**body, "notes": "other content"}
    assert client.post("/api/v1/reports", json=conflicting, headers=nurse).status_code == 409
    bad = {**body, "id": "not-a-uuid", "mother": {**body["mother"], "iin": "851231300125"}}
    assert client.post("/api/v1/reports", json=bad, headers=nurse).status_code == 422
    # A database error with the personal data in its statement's parameters.
    engine = app.extensions["besik.db"].engine
    with app.extensions["besik.db"].reading() as session:
        stored = session.get(Report, body["id"])
        columns = {c.key: getattr(stored, c.key) for c in Report.__table__.columns}
    try:
        with engine.begin() as connection:
            connection.execute(Report.__table__.insert(), columns)
    except IntegrityError as exc:
        logging.getLogger("besik.test").exception("the insert failed: %s", exc)
    else:
        raise AssertionError("the duplicate insert did not fail")
    logged = caplog.text
    assert "the insert failed" in logged
    for value in DISTINCTIVE.values():
        assert value not in logged, value


def test_the_web_line_leaves_requests_to_the_request_log_without_query_strings():
    """/ack/<id>?t=<token>: the token must not be written down by the web server. gunicorn's
    own access log (which can write query strings and referrers) stays off; the app's request
    log writes routes and paths only (tests/test_logs.py reads what it writes, live)."""
    procfile = (Path(__file__).resolve().parents[1] / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    assert "--access-log" not in web
    assert "--logger-class reporting.logs.GunicornLogger" in web


# --- the audit log on PostgreSQL --------------------------------------------------------------

APP_ROLE = "besik_app_test"
# What README "Security" tells an operator to grant the application's role.
GRANTS = f"""
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE};
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries FROM {APP_ROLE};
REVOKE DELETE, TRUNCATE ON audit_head FROM {APP_ROLE};
"""

if PG_URL:  # defined on the PostgreSQL lane only (CI always has it): never a skip

    def test_audit_rows_cannot_be_truncated_even_by_their_owner(pg_migrated):
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError

        _reset_postgresql(pg_migrated)
        engine = create_engine(pg_migrated)
        try:
            for table in ("audit_entries", "audit_head"):
                with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                    conn.execute(text(f"TRUNCATE {table}"))
        finally:
            engine.dispose()

    def test_the_app_keeps_its_log_as_a_role_that_may_only_add_audit_rows(pg_migrated, settings):
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError

        _reset_postgresql(pg_migrated)
        owner = create_engine(pg_migrated)
        with owner.begin() as conn:
            conn.execute(text(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                f"'{APP_ROLE}') THEN CREATE ROLE {APP_ROLE} LOGIN; END IF; END $$"))
            conn.execute(text(GRANTS))
        owner.dispose()
        url = make_url(pg_migrated).set(username=APP_ROLE).render_as_string(
            hide_password=False)
        app = create_app(replace(settings, database_url=url))
        try:
            client = app.test_client()
            nurse = bearer(app, "nurse@besik.example")
            report = client.post("/api/v1/reports", json=report_body(), headers=nurse)
            assert report.status_code == 201
            officer = bearer(app, "officer@besik.example")
            acknowledged = client.post(
                f"/api/v1/reports/{report.get_json()['id']}/acknowledge", headers=officer)
            assert acknowledged.status_code == 200
            verified = client.get("/api/v1/audit/verify",
                                  headers=bearer(app, "admin@besik.example")).get_json()
            assert verified["ok"] is True and verified["entries"] > 3
            engine = app.extensions["besik.db"].engine
            for statement in ("UPDATE audit_entries SET tag = 'x' WHERE seq = 1",
                              "DELETE FROM audit_entries WHERE seq = 1",
                              "TRUNCATE audit_entries"):
                with pytest.raises(DBAPIError, match="permission denied"), \
                        engine.begin() as conn:
                    conn.execute(text(statement))
        finally:
            app.extensions["besik.db"].dispose()
