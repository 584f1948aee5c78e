"""The flask commands of CONTRACT §3, with their exit codes."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from reporting import create_app
from reporting.models import PolicyVersion, User
from reporting.passwords import check_password
from tests.conftest import report_body


def run(app, *args: str, stdin: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def test_init_db_is_idempotent(app):
    assert run(app, "init-db").exit_code == 0
    assert run(app, "init-db").exit_code == 0


def test_seed_demo_is_idempotent_and_refused_outside_demo(app, settings, db):
    assert run(app, "seed-demo").exit_code == 0
    assert run(app, "seed-demo").exit_code == 0
    assert len(db.scalars(select(User)).all()) == 7
    production = create_app(replace(settings, env="production"))
    result = run(production, "seed-demo")
    assert result.exit_code != 0
    assert "BESIK_ENV=demo" in result.output
    production.extensions["besik.db"].dispose()


def test_create_user_reads_the_password_from_stdin(app, db):
    result = run(app, "create-user", "--email", "Midwife@Example.kz", "--name", "Midwife",
                 "--role", "reporter", "--facility", "CP4", stdin="a long password\n")
    assert result.exit_code == 0, result.output
    user = db.scalars(select(User).where(User.email == "midwife@example.kz")).one()
    assert user.facility.code == "CP4"
    assert check_password(user.password_hash, "a long password")


def test_create_user_bad_input_exits_2(app):
    base = ["create-user", "--email", "x@example.kz", "--name", "X"]
    assert run(app, *base, "--role", "reporter", stdin="a long password\n").exit_code == 2
    assert run(app, *base, "--role", "officer", "--agency", "NOPE",
               stdin="a long password\n").exit_code == 2
    assert run(app, *base, "--role", "admin", stdin="short\n").exit_code == 2
    assert run(app, *base, "--role", "superuser", stdin="a long password\n").exit_code == 2
    assert run(app, "create-user", "--email", "nurse@besik.example", "--name", "Dup",
               "--role", "admin", stdin="a long password\n").exit_code == 2


def test_create_token_prints_a_working_token(app, client):
    result = run(app, "create-token", "--email", "nurse@besik.example", "--name", "laptop")
    assert result.exit_code == 0
    token = result.output.strip()
    response = client.post("/api/v1/reports", json=report_body(),
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    assert run(app, "create-token", "--email", "ghost@besik.example").exit_code == 2


def test_policy_set_changes_new_deadlines_and_is_audited(app, client, nurse, db):
    shown = run(app, "policy", "show")
    assert shown.exit_code == 0
    assert "acknowledge_notice\t30min" in shown.output
    assert "UNVERIFIED" in shown.output
    result = run(app, "policy", "set", "acknowledge_notice", "2s")
    assert result.exit_code == 0, result.output
    assert "acknowledge_notice\t2s" in run(app, "policy", "show").output
    data = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    notice = data["notices"][0]
    from datetime import datetime

    gap = (datetime.fromisoformat(notice["ack_due_at"])
           - datetime.fromisoformat(notice["sent_at"])).total_seconds()
    assert gap == 2
    assert len(db.scalars(select(PolicyVersion)).all()) == 2
    verify = run(app, "audit-verify")
    assert verify.exit_code == 0 and verify.output.startswith("ok ")


def test_policy_set_bad_input_exits_2(app):
    assert run(app, "policy", "set", "acknowledge_notice", "soon").exit_code == 2
    assert run(app, "policy", "set", "make_tea", "5min").exit_code == 2


def test_audit_verify_exits_1_on_a_broken_chain(app):
    from tests.test_audit import tamper

    tamper(app, "UPDATE audit_entries SET tag = 'x:y' WHERE seq = 1")
    result = run(app, "audit-verify")
    assert result.exit_code == 1
    assert "broken at entry 1" in result.output
