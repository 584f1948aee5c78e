"""What filing reads in its one statement (and keeps per process: a policy version's rules,
the parsed calendar) is current: a change made by another process is seen by the next
filing. Each change here goes through a second Database on the same file or server, as
another web process or the command line would make it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from reporting import create_app, policy, workdays
from reporting.db import Database
from reporting.deadlines import Duration, Unit
from reporting.models import Agency, Deadline, Notice, Report
from tests.conftest import bearer, report_body

# A Monday, with Tuesday to Friday ordinary working days (no holiday that week in 2026).
MONDAY = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def file(client, headers, **overrides):
    response = client.post("/api/v1/reports", json=report_body(
        discovered_at=(MONDAY - timedelta(minutes=10)).isoformat(), **overrides),
        headers=headers)
    assert response.status_code == 201, response.data
    return response.get_json()


def due(body, rule):
    (deadline,) = [d for d in body["deadlines"] if d["rule"] == rule]
    return datetime.fromisoformat(deadline["due_at"])


def another_process(app) -> Database:
    return Database(app.config["BESIK"].database_url)


def test_a_policy_change_elsewhere_is_seen_by_the_next_filing(app, client, clock, db):
    clock.freeze(MONDAY)
    nurse = bearer(app, "nurse@besik.example")
    before = file(client, nurse)
    other = another_process(app)
    try:
        with other.writing() as session:
            version = policy.change_rule(session, "acknowledge_notice",
                                         duration=Duration(2, Unit.HOURS), actor_id=None,
                                         now=MONDAY)
            assert version is not None
            new_version = version.id
    finally:
        other.dispose()
    after = file(client, nurse)
    assert due(before, "acknowledge_notice") == MONDAY + timedelta(minutes=30)
    assert due(after, "acknowledge_notice") == MONDAY + timedelta(hours=2)
    stored = db.get(Report, after["id"])
    assert stored is not None and stored.policy_version_id == new_version
    assert db.scalars(select(Deadline.due_at).where(
        Deadline.report_id == after["id"], Deadline.rule == "acknowledge_notice")
    ).one() == MONDAY + timedelta(hours=2)


def test_a_day_off_declared_elsewhere_is_seen_by_the_next_filing(app, client, clock):
    clock.freeze(MONDAY)
    nurse = bearer(app, "nurse@besik.example")
    before = file(client, nurse)
    other = another_process(app)
    try:
        with other.writing() as session:
            workdays.set_day(session, date(2026, 3, 3), is_working=False, reason="test",
                             actor_id=None, now=MONDAY)
    finally:
        other.dispose()
    after = file(client, nurse)
    # Three working days from Monday: Thursday's end; with Tuesday off, Friday's.
    assert due(after, "examine_child") - due(before, "examine_child") == timedelta(days=1)
    other = another_process(app)
    try:
        with other.writing() as session:
            workdays.unset_day(session, date(2026, 3, 3), actor_id=None, now=MONDAY)
    finally:
        other.dispose()
    assert due(file(client, nurse), "examine_child") == due(before, "examine_child")


def test_an_agency_deactivated_elsewhere_is_notified_no_more(app, client, clock, db):
    clock.freeze(MONDAY)
    nurse = bearer(app, "nurse@besik.example")
    first = file(client, nurse, risk_flags=["mother_minor"])
    kinds = {n["agency"]["kind"]: n["agency"]["code"] for n in first["notices"]}
    assert set(kinds) == {"guardianship", "police"}
    other = another_process(app)
    try:
        with other.writing() as session:
            police = session.scalars(select(Agency).where(Agency.code == kinds["police"])).one()
            police.is_active = False
    finally:
        other.dispose()
    second = file(client, nurse, risk_flags=["mother_minor"])
    assert [n["agency"]["kind"] for n in second["notices"]] == ["guardianship"]
    assert db.scalars(select(Notice.agency_id).where(Notice.report_id == second["id"])
                      ).all() == [db.scalars(select(Agency.id).where(
                          Agency.code == kinds["guardianship"])).one()]


def test_a_retry_is_answered_from_the_stored_report_and_a_changed_one_refused(app, client):
    nurse = bearer(app, "nurse@besik.example")
    body = report_body()
    assert client.post("/api/v1/reports", json=body, headers=nurse).status_code == 201
    again = client.post("/api/v1/reports", json=body, headers=nurse)
    assert again.status_code == 200
    assert again.get_json()["id"] == body["id"]
    changed = client.post("/api/v1/reports", json={**body, "notes": "changed"}, headers=nurse)
    assert changed.status_code == 409
    # The same id from another reporter, even with the same content, is not theirs.
    other = bearer(app, "nurse2@besik.example")
    assert client.post("/api/v1/reports", json=body, headers=other).status_code == 409


def test_what_is_kept_per_process_follows_the_database_not_the_version_id(
        sqlite_template, tmp_path, settings, clock):
    """Two databases in one process, each with its own version 2 of the policy (a restored
    backup, a test's fresh database): each filing follows its own database's rules."""
    clock.freeze(MONDAY)
    minutes = {"first": 45, "second": 90}
    answers = {}
    for name, duration in minutes.items():
        path = tmp_path / f"{name}.db"
        shutil.copyfile(sqlite_template, path)
        app = create_app(replace(settings, database_url=f"sqlite:///{path}"))
        try:
            with app.extensions["besik.db"].writing() as session:
                version = policy.change_rule(session, "acknowledge_notice",
                                             duration=Duration(duration, Unit.MINUTES),
                                             actor_id=None, now=MONDAY)
                assert version is not None
                version_id = version.id
            answers[name] = version_id, file(app.test_client(),
                                             bearer(app, "nurse@besik.example"))
        finally:
            app.extensions["besik.db"].dispose()
    assert answers["first"][0] == answers["second"][0]  # the same version id in both
    for name, duration in minutes.items():
        assert due(answers[name][1], "acknowledge_notice") == MONDAY + timedelta(
            minutes=duration)
