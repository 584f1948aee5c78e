"""Web Push end to end against a real local push service: VAPID verified, payload decrypted.

The worker is the real one (`reporting.worker.Worker`); time is moved by passing `now`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from reporting import create_app
from reporting.models import AuditEntry, Notice, PushAttempt, PushDelivery, PushSubscription
from reporting.push import public_key_b64
from reporting.worker import LEASE, Worker
from tests.conftest import at_once, bearer, report_body
from tests.push_service import PushService, Subscription

CONTRACT_KEYS = {"type", "notice_id", "report_id", "reference", "title", "body", "url",
                 "ack_due_at", "ack_token"}


@pytest.fixture
def app(push_app: Flask) -> Flask:
    return push_app


def worker(app: Flask, name: str = "w1") -> Worker:
    return Worker(app.extensions["besik.db"], app.config["BESIK"], name=name)


def subscribe(client, app, email: str, service: PushService) -> Subscription:
    subscription = service.new_subscription()
    response = client.post("/api/v1/push/subscriptions", json=subscription.as_json(),
                           headers=bearer(app, email))
    assert response.status_code == 201, response.get_json()
    return subscription


def file(client, nurse, **body) -> dict:
    response = client.post("/api/v1/reports", json=report_body(**body), headers=nurse)
    assert response.status_code == 201
    return response.get_json()


def about_notices(received: list) -> list:
    """The pushes about reports (an admin also hears of coverage gaps)."""
    return [p for p in received if p.payload["type"] != "coverage"]


def deliveries(app, **where) -> list[PushDelivery]:
    with app.extensions["besik.db"].writing() as session:
        query = select(PushDelivery).filter_by(**where).order_by(PushDelivery.id)
        return list(session.scalars(query))


def test_vapid_public_key_is_served(client, app, push_settings):
    response = client.get("/api/v1/push/vapid-public-key",
                          headers=bearer(app, "officer@besik.example"))
    assert response.get_json() == {
        "publicKey": public_key_b64(str(push_settings.vapid_private_key_file))}


def test_new_report_is_pushed_encrypted_and_signed_to_the_officer(client, app, nurse,
                                                                   push_service):
    officer = subscribe(client, app, "officer@besik.example", push_service)
    outsider = subscribe(client, app, "officer2@besik.example", push_service)
    report = file(client, nurse, mother={"full_name": "Aliya Secret", "iin": "851231300124"},
                  child={"sex": "female", "iin": "250115601231"})
    assert len(deliveries(app, status="pending")) == 1  # queued with the notice
    result = worker(app).run_once()
    assert result.sent == 1
    (push,) = push_service.wait_for(1, subscription=officer)
    assert push.verified and push.urgency == "high" and push.ttl and push.ttl > 0
    assert push.claims["aud"] == push_service.origin
    message = push.payload
    assert set(message) >= CONTRACT_KEYS
    assert message["type"] == "notice"
    assert message["reference"] == report["reference"]
    assert message["report_id"] == report["id"]
    assert message["notice_id"] == report["notices"][0]["id"]
    assert message["url"] == f"/reports/{report['id']}"
    flat = str(message)
    for secret in ("Aliya Secret", "851231300124", "250115601231"):
        assert secret not in flat
    assert push_service.received(subscription=outsider) == []


def test_the_pushed_token_acknowledges_exactly_once(client, app, nurse, push_service, db):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    worker(app).run_once()
    message = push_service.wait_for(1, subscription=subscription)[0].payload
    url = f"/api/v1/notices/{message['notice_id']}/ack"
    first = client.post(url, json={"token": message["ack_token"]})
    assert first.status_code == 200
    body = first.get_json()
    assert body["state"] == "acknowledged"
    assert body["acknowledged_by"] == {"name": "Dana Serikovna"}
    assert body["ack_channel"] == "notification"
    second = client.post(url, json={"token": message["ack_token"]})
    assert second.status_code == 403
    assert client.post(url, json={"token": "forged"}).status_code == 403
    notice = db.get(Notice, message["notice_id"])
    assert notice.acknowledged_at is not None


def test_a_token_for_another_notice_is_refused(client, app, nurse, push_service):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    other = file(client, nurse)
    worker(app).run_once()
    message = push_service.wait_for(2, subscription=subscription)[0].payload
    other_notice = next(n for n in other["notices"] if n["id"] != message["notice_id"])
    response = client.post(f"/api/v1/notices/{other_notice['id']}/ack",
                           json={"token": message["ack_token"]})
    assert response.status_code == 403


def test_an_expired_token_is_refused(client, app, nurse, push_service):
    from reporting.models import AckToken

    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    worker(app).run_once()
    message = push_service.wait_for(1, subscription=subscription)[0].payload
    with app.extensions["besik.db"].writing() as session:
        for token in session.scalars(select(AckToken)):
            token.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = client.post(f"/api/v1/notices/{message['notice_id']}/ack",
                           json={"token": message["ack_token"]})
    assert response.status_code == 403


def test_410_removes_the_subscription(client, app, nurse, push_service, db):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    push_service.answer(subscription, 410)
    file(client, nurse)
    result = worker(app).run_once()
    assert result.gone == 1
    assert db.scalar(select(func.count()).select_from(PushSubscription)) == 0
    assert [d.status for d in deliveries(app)] == ["gone"]


def test_500_and_429_are_retried_with_backoff_honouring_retry_after(client, app, nurse,
                                                                   push_service):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    push_service.answer(subscription, 500)
    push_service.answer(subscription, 429, retry_after=120)
    file(client, nurse)
    now = datetime.now(UTC)
    assert worker(app).run_once(now).retried == 1  # 500
    (delivery,) = deliveries(app)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert worker(app).run_once(now).retried == 0  # not due yet: backing off
    assert worker(app).run_once(now + timedelta(seconds=2)).retried == 1  # 429
    (delivery,) = deliveries(app)
    assert delivery.next_attempt_at >= now + timedelta(seconds=110)
    assert worker(app).run_once(now + timedelta(seconds=60)).sent == 0
    assert worker(app).run_once(now + timedelta(seconds=200)).sent == 1
    assert len(push_service.received(subscription)) == 1
    with app.extensions["besik.db"].writing() as session:
        codes = session.scalars(select(PushAttempt.status_code).order_by(PushAttempt.id)).all()
    assert codes == [500, 429, 201]


def test_a_subscription_outside_the_allowed_push_services_is_422(client, app):
    officer = bearer(app, "officer@besik.example")
    for endpoint in ("http://169.254.169.254/latest/meta-data", "https://evil.example/push",
                     "file:///etc/passwd", "https://user:pw@fcm.googleapis.com/x"):
        response = client.post("/api/v1/push/subscriptions", headers=officer, json={
            "endpoint": endpoint, "keys": {"p256dh": "B" * 87, "auth": "a" * 22}})
        assert response.status_code == 422, endpoint
        assert "endpoint" in response.get_json()["error"]["fields"]


def test_devices_can_be_listed_tested_and_removed_by_their_owner_only(client, app,
                                                                      push_service):
    officer = bearer(app, "officer@besik.example")
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    assert client.post("/api/v1/push/test", headers=officer).status_code == 202
    worker(app).run_once()
    test_message = push_service.wait_for(1, subscription=subscription)[0].payload
    assert test_message["type"] == "test"
    items = client.get("/api/v1/push/subscriptions", headers=officer).get_json()["items"]
    assert len(items) == 1 and items[0]["last_success_at"]
    other = bearer(app, "officer2@besik.example")
    body = {"endpoint": subscription.endpoint}
    assert client.delete("/api/v1/push/subscriptions", json=body,
                         headers=other).status_code == 404
    assert client.delete("/api/v1/push/subscriptions", json=body,
                         headers=officer).status_code == 204
    assert client.get("/api/v1/push/subscriptions",
                      headers=officer).get_json()["items"] == []


def test_police_notices_travel_the_same_way(client, app, nurse, push_service):
    police = subscribe(client, app, "police@besik.example", push_service)
    file(client, nurse, risk_flags=["payment_suspected"])
    worker(app).run_once()
    (push,) = push_service.wait_for(1, subscription=police)
    assert push.payload["title"].startswith("Police: new report")


def escalations(app) -> list[dict]:
    with app.extensions["besik.db"].writing() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.tag == "notice:escalated")
                               .order_by(AuditEntry.seq))
        return [{"subject": row.subject, **row.data} for row in rows]


RACERS = 4


def test_escalation_reaches_the_head_once_then_the_region_admin_with_workers_racing(
        client, app, nurse, push_service):
    result = app.test_cli_runner().invoke(args=["policy", "set", "acknowledge_notice", "2s"])
    assert result.exit_code == 0
    head = subscribe(client, app, "head@besik.example", push_service)
    officer = subscribe(client, app, "officer@besik.example", push_service)
    admin = subscribe(client, app, "admin@besik.example", push_service)
    report = file(client, nurse)
    notice = report["notices"][0]
    sent_at = datetime.fromisoformat(notice["sent_at"])
    workers = [worker(app, f"w{i}") for i in range(RACERS)]

    def race(moment: datetime) -> list:
        """Every worker's pass at `moment`, all released at once; each has returned after."""
        return at_once(*(lambda w=w: w.run_once(moment) for w in workers))

    assert sum(r.escalated for r in race(sent_at + timedelta(seconds=1))) == 0
    push_service.wait_for(1, subscription=head)
    assert len(push_service.received(head)) == len(push_service.received(officer)) == 1
    assert escalations(app) == []

    level_1 = race(sent_at + timedelta(seconds=2.5))  # acknowledge_notice has passed
    assert sorted(r.escalated for r in level_1) == [0] * (RACERS - 1) + [1]
    assert [p.payload["type"] for p in push_service.received(head)] == ["notice", "escalation"]
    assert [p.payload["type"] for p in push_service.received(officer)] == ["notice", "reminder"]
    assert about_notices(push_service.received(admin)) == []
    assert [(e["subject"], e["level"]) for e in escalations(app)] == [
        (f"notice:{notice['id']}", 1)]

    level_2 = race(sent_at + timedelta(seconds=4.5))  # one more interval
    assert sorted(r.escalated for r in level_2) == [0] * (RACERS - 1) + [1]
    assert [p.payload["type"] for p in about_notices(push_service.received(admin))] == [
        "escalation"]
    assert [p.payload["type"] for p in push_service.received(head)] == [
        "notice", "escalation", "reminder"]
    assert [p.payload["type"] for p in push_service.received(officer)] == [
        "notice", "reminder", "reminder"]

    assert sum(r.escalated for r in race(sent_at + timedelta(seconds=30))) == 0  # no level 3
    assert [e["level"] for e in escalations(app)] == [1, 2]
    # head, officer, admin: nothing twice (the admin also hears of coverage gaps, once each)
    assert len(about_notices(push_service.received())) == 3 + 3 + 1
    assert {d.status for d in deliveries(app)} == {"sent"}
    data = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert data["notices"][0]["escalation_level"] == 2


def test_a_pass_woken_by_a_commit_delivers_and_leaves_the_clocks_work_to_a_later_pass(
        client, app, nurse, push_service, clock):
    """A commit queues deliveries; it makes nothing fall due. A woken pass delivers the new
    report's push without looking for escalations (at 20 filings a second that look was
    most of the worker's database time); the worker looks at least every
    CLOCK_WORK_SECONDS, and after every full poll."""
    from reporting.worker import CLOCK_WORK_SECONDS, clock_work_due

    result = app.test_cli_runner().invoke(args=["policy", "set", "acknowledge_notice", "2s"])
    assert result.exit_code == 0
    officer = subscribe(client, app, "officer@besik.example", push_service)
    subscribe(client, app, "head@besik.example", push_service)  # whom escalation alerts
    clock.freeze(datetime.now(UTC))
    late = file(client, nurse)["notices"][0]
    the_worker = worker(app)
    the_worker.run_once(clock.now())
    push_service.wait_for(1, subscription=officer)

    clock.advance(timedelta(seconds=3))  # the first notice is overdue now
    later = clock.now()
    fresh = file(client, nurse)["notices"][0]
    woken = the_worker.run_once(later, by_the_clock=False)
    assert (woken.sent, woken.escalated) == (2, 0)  # the new notice to both; no escalation
    assert about_notices(push_service.received(officer))[-1].payload["notice_id"] == fresh["id"]
    assert escalations(app) == []
    assert the_worker.run_once(later).escalated == 1  # the clock's pass
    assert [e["subject"] for e in escalations(app)] == [f"notice:{late['id']}"]

    assert clock_work_due(100.0, 100.0 + CLOCK_WORK_SECONDS)
    assert not clock_work_due(100.0, 100.0 + CLOCK_WORK_SECONDS - 0.01)


def test_acknowledgement_stops_escalation_and_is_shown_late(client, app, nurse, push_service,
                                                            clock):
    app.test_cli_runner().invoke(args=["policy", "set", "acknowledge_notice", "2s"])
    head = subscribe(client, app, "head@besik.example", push_service)
    report = file(client, nurse)
    sent_at = datetime.fromisoformat(report["notices"][0]["sent_at"])
    worker(app).run_once(sent_at + timedelta(seconds=2.5))  # notice + escalation level 1
    officer = bearer(app, "officer@besik.example")
    clock.freeze(sent_at + timedelta(seconds=2.1))  # just after acknowledge_notice passed
    ack = client.post(f"/api/v1/reports/{report['id']}/acknowledge", json={"note": "on it"},
                      headers=officer)
    assert ack.status_code == 200
    assert ack.get_json()["is_late"] is True
    worker(app).run_once(sent_at + timedelta(seconds=60))
    assert [p.payload["type"] for p in push_service.received(head)] == ["notice", "escalation"]
    again = client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    assert again.get_json()["acknowledged_at"] == ack.get_json()["acknowledged_at"]


def test_acknowledged_notice_gets_a_reminder_before_examination_is_due(client, app, nurse,
                                                                       push_service):
    officer_sub = subscribe(client, app, "officer@besik.example", push_service)
    report = file(client, nurse)
    officer = bearer(app, "officer@besik.example")
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    examine = next(d for d in report["deadlines"] if d["rule"] == "examine_child")
    due = datetime.fromisoformat(examine["due_at"])
    worker(app).run_once(due - timedelta(hours=5))
    assert [p.payload["type"] for p in push_service.received(officer_sub)] == ["notice"]
    worker(app).run_once(due - timedelta(hours=3))
    worker(app).run_once(due - timedelta(hours=2))
    types = [p.payload["type"] for p in push_service.received(officer_sub)]
    assert types == ["notice", "reminder"]
    assert "examine" in push_service.received(officer_sub)[1].payload["title"]


def test_two_workers_send_every_push_exactly_once(client, app, nurse, push_service):
    subscriptions = [subscribe(client, app, "officer@besik.example", push_service)
                     for _ in range(2)]
    for _ in range(50):
        file(client, nurse)
    assert len(deliveries(app, status="pending")) == 100
    workers = [worker(app, "w1"), worker(app, "w2")]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    received = push_service.wait_for(100)
    assert len(received) == 100
    keys = [(p.endpoint_id, p.payload["notice_id"]) for p in received]
    assert len(set(keys)) == 100
    assert {p.endpoint_id for p in received} == {s.endpoint_id for s in subscriptions}
    assert {d.status for d in deliveries(app)} == {"sent"}


def test_a_killed_workers_claims_are_sent_after_its_lease(client, app, nurse, push_service):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    for _ in range(3):
        file(client, nurse)
    now = datetime.now(UTC)
    claimed = worker(app, "doomed").claim(now)  # ... and the process dies here
    assert len(claimed) == 3
    assert worker(app, "w2").run_once(now + timedelta(seconds=1)).sent == 0
    assert push_service.received(subscription) == []
    assert worker(app, "w2").run_once(now + LEASE + timedelta(seconds=1)).sent == 3
    assert len(push_service.received(subscription)) == 3


def test_actions_meet_their_deadlines_and_closing_closes(client, app, nurse):
    report = file(client, nurse)
    officer = bearer(app, "officer@besik.example")
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)  # first
    url = f"/api/v1/reports/{report['id']}/actions"
    assert client.post(url, json={"action": "teleported"}, headers=officer).status_code == 422
    response = client.post(url, json={"action": "examined", "note": "healthy"}, headers=officer)
    assert response.status_code == 201
    assert response.get_json()["action"] == "examined"
    data = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    examine = next(d for d in data["deadlines"] if d["rule"] == "examine_child")
    assert examine["state"] == "met"
    client.post(url, json={"action": "closed"}, headers=officer)
    assert client.get(f"/api/v1/reports/{report['id']}",
                      headers=nurse).get_json()["state"] == "closed"


def test_acknowledging_starts_the_data_bank_deadline_and_updates_the_nurse(client, app, nurse):
    report = file(client, nurse)
    officer = bearer(app, "officer@besik.example")
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    data = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert data["state"] == "acknowledged"
    rules = {d["rule"]: d for d in data["deadlines"]}
    assert rules["acknowledge_notice"]["state"] == "met"
    assert rules["register_in_data_bank"]["state"] == "pending"


def test_officer_of_another_agency_cannot_acknowledge(client, app, nurse):
    report = file(client, nurse)
    other = bearer(app, "officer2@besik.example")
    response = client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=other)
    assert response.status_code == 404


def test_one_tap_ack_page_acknowledges_with_the_token(client, app, nurse, push_service, db):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    worker(app).run_once()
    message = push_service.wait_for(1, subscription=subscription)[0].payload
    page = client.get(f"/ack/{message['notice_id']}?t={message['ack_token']}")
    assert page.status_code == 200 and b"Acknowledge" in page.data
    token = page.data.decode().split('name="t" value="')[1].split('"')[0]
    done = client.post(f"/ack/{message['notice_id']}", data={"t": token})
    assert done.status_code == 200
    assert b"Acknowledged by Dana Serikovna" in done.data
    assert db.get(Notice, message["notice_id"]).ack_channel == "ack_page"
    again = client.post(f"/ack/{message['notice_id']}", data={"t": token})
    assert again.status_code == 403


def test_worker_command_runs_one_pass(client, app, nurse, push_service):
    subscription = subscribe(client, app, "officer@besik.example", push_service)
    file(client, nurse)
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output
    assert len(push_service.received(subscription)) == 1


def test_vapid_key_endpoint_says_when_push_is_not_set_up(settings, tmp_path):
    app = create_app(replace(settings, vapid_private_key_file=tmp_path / "absent.pem"))
    response = app.test_client().get("/api/v1/push/vapid-public-key",
                                     headers=bearer(app, "officer@besik.example"))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "push_unavailable"
    app.extensions["besik.db"].dispose()


def test_a_worker_process_killed_mid_batch_has_its_claims_sent_after_the_lease(
        client, app, nurse, push_service, push_settings):
    import os
    import signal
    import subprocess
    import sys

    subscription = subscribe(client, app, "officer@besik.example", push_service)
    reports = [file(client, nurse) for _ in range(3)]
    push_service.hold()  # the first send hangs: the worker is mid-batch
    env = {**os.environ, "BESIK_ENV": "demo", "SECRET_KEY": "test",
           "DATABASE_URL": push_settings.database_url,
           "VAPID_PRIVATE_KEY_FILE": str(push_settings.vapid_private_key_file),
           "PUSH_ALLOWED_HOSTS": push_service.allowed_entry, "WORKER_POLL_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not push_service.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert push_service.requests, "the worker process never sent"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    push_service.release()
    claimed = deliveries(app)
    assert all(d.status == "pending" and d.lease_owner for d in claimed)  # held by the dead
    now = datetime.now(UTC)
    assert worker(app, "w2").run_once(now).sent == 0  # its lease still holds
    assert worker(app, "w2").run_once(now + LEASE + timedelta(seconds=1)).sent == 3
    got = {p.payload["notice_id"] for p in push_service.received(subscription)}
    assert got == {r["notices"][0]["id"] for r in reports}
    assert {d.status for d in deliveries(app)} == {"sent"}
