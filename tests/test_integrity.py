"""Case integrity between agencies: each acts on its own notice, deadlines are met only by
what really happened, and only the notified agency can acknowledge (issue: outside review)."""

from __future__ import annotations

from sqlalchemy import func, select

from reporting.models import AckToken, Agency, AuditEntry, Notice, PushSubscription
from tests.conftest import bearer, login
from tests.test_push import (  # noqa: F401 - fixtures
    about_notices,
    app,
    file,
    subscribe,
    worker,
)

RISK = {"risk_flags": ["payment_suspected"]}


def _acknowledge(client, report_id: str, headers) -> None:
    response = client.post(f"/api/v1/reports/{report_id}/acknowledge", headers=headers)
    assert response.status_code == 200, response.get_json()


def test_the_report_page_offers_only_the_agencys_actions_after_acknowledging(client, app,
                                                                            nurse):
    report = file(client, nurse, **RISK)
    login(client, "police@besik.example")
    page = client.get(f"/reports/{report['id']}").data.decode()
    assert 'name="action"' not in page  # not acknowledged yet
    _acknowledge(client, report["id"], bearer(app, "police@besik.example"))
    page = client.get(f"/reports/{report['id']}").data.decode()
    assert 'value="investigation_opened"' in page
    assert 'value="examined"' not in page


def test_reporting_deadlines_are_not_met_when_no_guardianship_agency_was_notified(
        client, app, nurse, db):
    with app.extensions["besik.db"].writing() as session:
        elsewhere = _other_region(session)
        for agency in session.scalars(select(Agency).where(Agency.kind == "guardianship")):
            agency.district_id, agency.region_id = None, elsewhere
    report = file(client, nurse)
    assert report["notices"] == []
    rules = {d["rule"]: d for d in report["deadlines"]}
    for rule in ("report_to_guardianship", "report_to_guardianship_statutory"):
        assert rules[rule]["met_at"] is None
        assert rules[rule]["state"] == "pending"


def _other_region(session) -> int:
    from reporting.models import Region

    region = Region(code="ZZZ", name="Elsewhere")
    session.add(region)
    session.flush()
    return region.id


def test_the_statutory_bound_is_shown_beside_the_internal_target(client, nurse):
    report = file(client, nurse)
    rules = {d["rule"]: d for d in report["deadlines"]}
    assert rules["report_to_guardianship"]["state"] == "met"
    statutory = rules["report_to_guardianship_statutory"]
    assert statutory["state"] == "met"
    assert statutory["due_at"] > rules["report_to_guardianship"]["due_at"]


def test_init_db_adds_a_new_default_rule_to_an_older_policy(app):
    from reporting.models import PolicyVersion

    runner = app.test_cli_runner()
    with app.extensions["besik.db"].writing() as session:
        latest = session.scalars(select(PolicyVersion).order_by(PolicyVersion.id.desc())).first()
        old_rules = [r for r in latest.rules if r["name"] != "report_to_guardianship_statutory"]
        session.add(PolicyVersion(created_at=latest.created_at, rules=old_rules, note="older"))
    assert runner.invoke(args=["init-db"]).exit_code == 0
    assert "report_to_guardianship_statutory" in runner.invoke(args=["policy", "show"]).output


def test_an_admins_escalation_carries_no_token_and_says_whom_to_call(client, app, nurse,
                                                                     push_service):
    app.test_cli_runner().invoke(args=["policy", "set", "acknowledge_notice", "1min"])
    head = subscribe(client, app, "head@besik.example", push_service)
    admin = subscribe(client, app, "admin@besik.example", push_service)
    report = file(client, nurse, **RISK)
    police_notice = next(n for n in report["notices"] if n["agency"]["kind"] == "police")
    from datetime import datetime, timedelta

    sent_at = datetime.fromisoformat(report["notices"][0]["sent_at"])
    worker(app).run_once(sent_at + timedelta(minutes=1, seconds=5))  # level 1: heads
    worker(app).run_once(sent_at + timedelta(minutes=2, seconds=5))  # level 2: admins
    messages = [m.payload for m in about_notices(push_service.received(admin))]
    assert messages, "the admin got no escalation"
    for message in messages:
        assert message["type"] == "escalation"
        assert message["ack_token"] is None
    assert all(p.payload["ack_token"] for p in push_service.received(head))  # an officer's
    police = next(m for m in messages if m["notice_id"] == police_notice["id"])
    assert "102" in police["body"]  # the police's phone number
    with app.extensions["besik.db"].reading() as session:
        admin_tokens = session.scalar(select(func.count()).select_from(AckToken).where(
            AckToken.user_id == _user_id(session, "admin@besik.example")))
    assert admin_tokens == 0


def _user_id(session, email: str) -> int:
    from reporting.models import User

    return session.scalars(select(User.id).where(User.email == email)).one()


def test_a_head_request_to_the_ack_page_acknowledges_nothing(client, app, nurse, push_service,
                                                             db):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    worker(app).run_once()
    message = push_service.wait_for(1, subscription=subscription)[0].payload
    url = f"/ack/{message['notice_id']}?t={message['ack_token']}"
    assert client.head(url).status_code == 200
    assert client.get(url).status_code == 200
    assert db.get(Notice, message["notice_id"]).acknowledged_at is None
    done = client.post(f"/ack/{message['notice_id']}", data={"t": message["ack_token"]})
    assert done.status_code == 200  # the token was never spent by the HEAD or the GET


def test_another_users_push_endpoint_cannot_be_taken_over(client, app, push_service, db):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    thief = push_service.new_subscription()
    stolen = {**thief.as_json(), "endpoint": subscription.endpoint}
    response = client.post("/api/v1/push/subscriptions", json=stolen,
                           headers=bearer(app, "officer2@besik.example"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "subscription_taken"
    row = db.scalars(select(PushSubscription)).one()
    assert (row.user_id, row.p256dh) == (_user_id(db, "officer@besik.example"),
                                         subscription.as_json()["keys"]["p256dh"])
    audit_tags = db.scalars(select(AuditEntry.tag).where(AuditEntry.tag == "push:subscribed"))
    assert len(list(audit_tags)) == 1
