"""Pushes in the recipient's own language (CONTRACT §7), through the real local push service:
each message is decrypted with its subscription's key, in one run with Russian, Kazakh and
English recipients of the same report. The worker runs as `flask worker` runs it, inside the
app context (flask-babel translates nothing outside one)."""

from __future__ import annotations

from datetime import datetime, timedelta

from reporting.deadlines import to_local
from tests.conftest import bearer, login
from tests.push_service import PushService
from tests.test_i18n import translation
from tests.test_push import (  # noqa: F401 - fixtures
    about_notices,
    app,
    file,
    subscribe,
    worker,
)

OFFICER, HEAD, POLICE, ADMIN = ("officer@besik.example", "head@besik.example",
                                "police@besik.example", "admin@besik.example")
REFUSAL = "Mother signed a refusal statement"


def choose_language(client, app, email: str, locale: str) -> None:
    response = client.patch("/api/v1/me", json={"locale": locale}, headers=bearer(app, email))
    assert response.status_code == 200, response.get_json()


def said(locale: str, msgid: str, **values: str) -> str:
    """`msgid` as the catalogue of `locale` says it (English: itself), filled in."""
    text = msgid if locale == "en" else translation(locale, msgid)
    return text % values if values else text


def test_a_new_report_reaches_each_officer_in_their_own_language(client, app, nurse,
                                                                  push_service: PushService):
    choose_language(client, app, OFFICER, "ru")
    # The head chose Kazakh with the switcher on a page: it is his language from then on.
    head_browser = login(app.test_client(), HEAD)
    assert head_browser.get("/inbox?lang=kk").status_code == 200
    officer, head, police = (subscribe(client, app, email, push_service)
                             for email in (OFFICER, HEAD, POLICE))
    report = file(client, nurse, risk_flags=["payment_suspected"])
    result = app.test_cli_runner().invoke(args=["worker", "--once"])  # the Procfile's worker
    assert result.exit_code == 0, result.output
    ref = report["reference"]
    due = {n["agency"]["kind"]: to_local(datetime.fromisoformat(n["ack_due_at"])
                                         ).strftime("%H:%M") for n in report["notices"]}

    for subscription, locale in ((officer, "ru"), (head, "kk")):
        (push,) = push_service.wait_for(1, subscription=subscription)
        message = push.payload
        assert push.verified
        assert message["title"] == said(locale, "New report %(ref)s", ref=ref)
        assert message["body"] == said(
            locale, "%(facility)s: %(what)s. Acknowledge by %(time)s.",
            facility="Perinatal Centre No. 1", what=said(locale, REFUSAL),
            time=due["guardianship"])
        assert message["labels"] == {"acknowledge": said(locale, "Acknowledge"),
                                     "open": said(locale, "Open"),
                                     "acknowledged": said(locale, "Acknowledged")}
    # Nobody chose a language for the police officer: English, in the same run.
    (push,) = push_service.wait_for(1, subscription=police)
    assert push.payload["title"] == f"Police: new report {ref}"
    assert push.payload["body"] == (f"Perinatal Centre No. 1: {REFUSAL}. "
                                    f"Acknowledge by {due['police']}.")


def test_escalations_reminders_and_coverage_gaps_are_in_the_recipients_language(
        client, app, nurse, push_service: PushService):
    assert app.test_cli_runner().invoke(
        args=["policy", "set", "acknowledge_notice", "2s"]).exit_code == 0
    choose_language(client, app, OFFICER, "ru")
    choose_language(client, app, HEAD, "kk")
    choose_language(client, app, ADMIN, "ru")
    officer, head, admin = (subscribe(client, app, email, push_service)
                            for email in (OFFICER, HEAD, ADMIN))
    report = file(client, nurse)
    ref, notice = report["reference"], report["notices"][0]
    sent_at = datetime.fromisoformat(notice["sent_at"])
    due = to_local(datetime.fromisoformat(notice["ack_due_at"])).strftime("%H:%M")
    agency = notice["agency"]["name"]
    with app.app_context():  # as `flask worker` runs it
        worker(app).run_once(sent_at + timedelta(seconds=1))  # notices; coverage checked
        worker(app).run_once(sent_at + timedelta(seconds=2.5))  # level 1: head, reminders
        worker(app).run_once(sent_at + timedelta(seconds=4.5))  # level 2: the admins

    head_pushes = push_service.wait_for(3, subscription=head)
    assert [p.payload["type"] for p in head_pushes] == ["notice", "escalation", "reminder"]
    assert head_pushes[1].payload["title"] == said("kk", "Not acknowledged: %(ref)s", ref=ref)
    assert head_pushes[1].payload["body"] == said(
        "kk", "%(agency)s has not acknowledged this report (due %(time)s).", agency=agency,
        time=due)
    assert head_pushes[2].payload["title"] == said("kk", "Reminder: acknowledge %(ref)s",
                                                   ref=ref)

    officer_pushes = push_service.wait_for(3, subscription=officer)
    assert [p.payload["type"] for p in officer_pushes] == ["notice", "reminder", "reminder"]
    for push in officer_pushes[1:]:
        assert push.payload["title"] == said("ru", "Reminder: acknowledge %(ref)s", ref=ref)
        assert push.payload["body"] == said("ru", "Acknowledge by %(time)s.", time=due)

    (escalation,) = about_notices(push_service.wait_for(2, subscription=admin))
    assert escalation.payload["title"] == said("ru", "Not acknowledged: %(ref)s", ref=ref)
    assert escalation.payload["body"].endswith(said(
        "ru", "Call %(agency)s: %(phone)s.", agency=agency, phone="+7 7172 00 00 00"))
    gaps = [p.payload for p in push_service.received(admin) if p.payload["type"] == "coverage"]
    assert gaps, "the demo has districts nobody would hear: the admin is told"
    prefix = said("ru", "Coverage gap: %(what)s", what="")
    assert all(gap["title"].startswith(prefix) for gap in gaps), gaps


def test_the_examination_reminder_is_in_the_officers_language(client, app, nurse,
                                                              push_service: PushService):
    choose_language(client, app, OFFICER, "kk")
    officer = subscribe(client, app, OFFICER, push_service)
    report = file(client, nurse)
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=bearer(app, OFFICER))
    examine = next(d for d in report["deadlines"] if d["rule"] == "examine_child")
    with app.app_context():
        worker(app).run_once(datetime.fromisoformat(examine["due_at"]) - timedelta(hours=3))
    reminder = push_service.wait_for(2, subscription=officer)[1].payload
    assert reminder["type"] == "reminder"
    assert reminder["title"] == said("kk", "Reminder: examine the child, %(ref)s",
                                     ref=report["reference"])
    assert reminder["body"] == said("kk", "The examination deadline is near.")


def test_a_worker_outside_the_app_context_says_it_cannot_translate(client, app, nurse,
                                                                   push_service, caplog):
    choose_language(client, app, OFFICER, "ru")
    officer = subscribe(client, app, OFFICER, push_service)
    file(client, nurse)
    worker(app).run_once()  # no app context: flask-babel has no language to switch to
    (push,) = push_service.wait_for(1, subscription=officer)
    assert push.payload["title"].startswith("New report")  # delivered all the same
    assert "rendered in English: no app context" in caplog.text
