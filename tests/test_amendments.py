"""Corrections are amendments: who, when, why and each field's value before and after, kept in
the report, its timeline and the audit log; the first risk flag routes the report to the
police; the filing's idempotency survives a correction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from reporting import audit, create_app
from reporting.config import Settings
from reporting.models import (
    Agency,
    AgencyKind,
    AuditEntry,
    Deadline,
    Notice,
    PushDelivery,
    Region,
    Report,
    ReportAmendment,
)
from tests.conftest import (
    OTHER_AGENCY,
    OTHER_NURSE,
    OTHER_REGION,
    add_other_region,
    add_user,
    bearer,
    csrf_token,
    login,
    report_body,
)
from tests.test_push import subscribe, worker

CHILD_IIN = "250115601231"  # a girl born 2025-01-15 (PRODUCT §3's test number)
MOTHER_IIN = "851231400001"  # a woman born 1985-12-31
OTHER_IIN = "250115600005"  # a valid IIN of the same girl's birth date, another number


def full_report(**overrides: Any) -> dict[str, Any]:
    """A report with every optional fact filled in."""
    facts: dict[str, Any] = {
        "child": {"sex": "female", "iin": CHILD_IIN, "born_at": "2025-01-15T08:30:00+05:00",
                  "weight_g": 3100, "condition": "stable"},
        "mother": {"iin": MOTHER_IIN, "full_name": "Айгүл Серікқызы",
                   "birth_date": "1985-12-31", "citizenship": "KZ"},
        "notes": "left at night"}
    return report_body(**facts | overrides)


def file(client, headers, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/reports", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def amend(client, headers, report_id: str, changes: Any, reason: Any = "typo in the ward"):
    body = {"changes": changes, "reason": reason}
    return client.post(f"/api/v1/reports/{report_id}/amendments", json=body, headers=headers)


def stored(app: Flask) -> dict[str, Any]:
    """What a refused correction must leave as it was."""
    with app.extensions["besik.db"].reading() as session:
        return {
            "reports": sorted((r.id, r.child_iin, r.mother_iin, r.notes, tuple(r.risk_flags),
                               tuple(r.warnings), r.content_hash)
                              for r in session.scalars(select(Report))),
            "amendments": session.scalar(select(func.count()).select_from(ReportAmendment)),
            "notices": session.scalar(select(func.count()).select_from(Notice)),
            "deadlines": session.scalar(select(func.count()).select_from(Deadline)),
            "audit": session.scalar(select(func.max(AuditEntry.seq))),
        }


def test_a_correction_keeps_each_fields_value_before_and_after(client, app, nurse):
    report = file(client, nurse, full_report())
    response = amend(client, nurse, report["id"], {"child": {"iin": OTHER_IIN},
                                                   "notes": "left at dawn"},
                     reason="IIN misread from the birth record")
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["changes"] == {"child.iin": {"from": CHILD_IIN, "to": OTHER_IIN},
                                 "notes": {"from": "left at night", "to": "left at dawn"}}
    assert answer["reason"] == "IIN misread from the birth record"
    assert answer["by"] == {"name": "Aigerim Nurlanovna"}
    assert answer["at"].endswith("Z") and isinstance(answer["id"], int)

    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    # Field by field: the rest of the child stays as filed.
    assert shown["child"] == report["child"] | {"iin": OTHER_IIN}
    assert shown["mother"] == report["mother"]
    assert shown["notes"] == "left at dawn"
    assert shown["amendments"] == [answer]
    (amended,) = [e for e in shown["timeline"] if e["event"] == "amended"]
    assert amended == {"at": answer["at"], "event": "amended", "actor": answer["by"],
                       "detail": {"reason": answer["reason"], "changes": answer["changes"]}}

    with app.extensions["besik.db"].reading() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.tag == "report:amended")).one()
        assert audit.verify(session).is_ok
    assert entry.subject == f"report:{report['id']}"
    assert entry.data["changes"] == answer["changes"]
    assert entry.data["reason"] == answer["reason"]
    assert entry.actor_id is not None


def test_a_field_can_be_cleared_and_nested_objects_change_field_by_field(client, nurse):
    report = file(client, nurse, full_report())
    response = amend(client, nurse, report["id"], {"mother": {"iin": None},
                                                   "child": {"weight_g": 3050}})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["changes"] == {
        "mother.iin": {"from": MOTHER_IIN, "to": None},
        "child.weight_g": {"from": 3100, "to": 3050}}
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert "iin" not in shown["mother"]
    assert shown["mother"]["full_name"] == report["mother"]["full_name"]
    assert shown["child"]["weight_g"] == 3050 and shown["child"]["iin"] == CHILD_IIN


@pytest.mark.parametrize("changes, field", [
    ({"circumstance": "other"}, "changes.circumstance"),
    ({"child": {"sex": "male"}}, "changes.child.sex"),
    ({"id": "8e0f7c7e-0b8f-4f57-9d3e-2f3c2c9a1b10"}, "changes.id"),
    ({"discovered_at": "2026-11-29T10:15:00+05:00"}, "changes.discovered_at"),
    ({"filed_at": "2026-11-29T10:16:30+05:00"}, "changes.filed_at"),
    ({"reference": "AST-2026-000001"}, "changes.reference"),
])
def test_the_facts_a_report_was_filed_on_cannot_be_corrected(client, app, nurse, changes,
                                                             field):
    report = file(client, nurse, full_report())
    before = stored(app)
    # Even beside a correction that would be accepted alone: nothing of it is saved.
    response = amend(client, nurse, report["id"], changes | {"notes": "would be fine"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert error["fields"] == {field: "This cannot be corrected after filing."}
    assert stored(app) == before


@pytest.mark.parametrize("changes, reason, field", [
    ({}, "why", "changes"),
    ({"child": {}}, "why", "changes"),
    ({"notes": "left at night"}, "why", "changes"),  # the value it already has
    ({"risk_flags": []}, "why", "changes"),  # none before, none after
    ({"child": {"iin": "250115601232"}}, "why", "changes.child.iin"),  # checksum
    ({"mother": {"iin": "85123130012"}}, "why", "changes.mother.iin"),  # length
    ({"child": {"weight_g": 9}}, "why", "changes.child.weight_g"),
    ({"notes": "x"}, None, "reason"),
    ({"notes": "x"}, "  ", "reason"),
    ({"notes": "x"}, "r" * 501, "reason"),
    ({"unknown": 1}, "why", "changes.unknown"),
    (None, "why", "changes"),
])
def test_a_correction_that_changes_nothing_or_breaks_a_rule_is_422(client, app, nurse,
                                                                   changes, reason, field):
    report = file(client, nurse, full_report())
    before = stored(app)
    response = amend(client, nurse, report["id"], changes, reason)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert stored(app) == before


def test_a_childs_iin_may_change_and_the_warnings_follow_the_new_facts(client, nurse):
    # Filed with a birth time that disagrees with the IIN's date: a warning.
    report = file(client, nurse, full_report(child={"sex": "female", "iin": CHILD_IIN,
                                                    "born_at": "2026-11-28T22:40:00+05:00"}))
    assert report["warnings"] == ["child.iin_birth_date_mismatch"]
    corrected = amend(client, nurse, report["id"], {"child": {
        "born_at": "2025-01-15T08:30:00+05:00"}})
    assert corrected.status_code == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert shown["warnings"] == []
    # After an adoption the child has another IIN (a boy's, here: the sex stays female).
    boys_iin = "250115500009"
    assert amend(client, nurse, report["id"], {"child": {"iin": boys_iin}}).status_code == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert shown["child"]["iin"] == boys_iin
    assert shown["warnings"] == ["child.iin_sex_mismatch"]


def _police_notice(app: Flask, report_id: str) -> Notice | None:
    with app.extensions["besik.db"].reading() as session:
        notice = session.scalars(select(Notice).where(Notice.report_id == report_id)
                                 .join(Notice.agency).where(Notice.agency.has(code="POL-AST"))
                                 ).first()
        if notice is not None:
            _ = notice.agency, notice.report.deadlines
        return notice


def test_adding_a_risk_flag_routes_the_report_to_the_police_as_filing_would(client, app,
                                                                           nurse):
    # The police officer's device: the new notice must be queued to it, as at filing.
    device = {"endpoint": "https://fcm.googleapis.com/fcm/send/police-device",
              "keys": {"p256dh": "B" * 87, "auth": "A" * 22}}
    police = bearer(app, "police@besik.example")
    assert client.post("/api/v1/push/subscriptions", json=device,
                       headers=police).status_code == 201
    risky = file(client, nurse, report_body(risk_flags=["payment_suspected"]))
    report = file(client, nurse, report_body())
    assert [n["agency"]["code"] for n in report["notices"]] == ["GRD-AST-YES"]

    response = amend(client, nurse, report["id"], {"risk_flags": ["third_party_claim"]},
                     reason="a man came asking for the child")
    assert response.status_code == 201, response.get_json()
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    codes = sorted(n["agency"]["code"] for n in shown["notices"])
    assert codes == ["GRD-AST-YES", "POL-AST"]
    police_notice = next(n for n in shown["notices"] if n["agency"]["code"] == "POL-AST")
    assert police_notice["sent_at"] == response.get_json()["at"]
    assert police_notice["state"] == "pending"

    def police_rules(data: dict[str, Any]) -> list[str]:
        notice = next(n for n in data["notices"] if n["agency"]["kind"] == "police")
        return sorted(d["rule"] for d in data["deadlines"] if d["notice_id"] == notice["id"])

    # The same deadlines as a report filed with the flag: its own, and inform_police met.
    assert police_rules(shown) == police_rules(risky) == ["acknowledge_notice"]
    (inform,) = [d for d in shown["deadlines"] if d["rule"] == "inform_police"]
    assert inform["met_at"] == police_notice["sent_at"] and inform["state"] == "met"
    with app.extensions["besik.db"].reading() as session:
        queued = session.scalars(select(PushDelivery).where(
            PushDelivery.notice_id == police_notice["id"])).all()
        tags = session.scalars(select(AuditEntry.tag).where(
            AuditEntry.tag != "report:viewed").order_by(AuditEntry.seq.desc()).limit(2)).all()
    assert [(d.kind, d.status) for d in queued] == [("notice", "pending")]
    assert tags == ["report:amended", "notice:created"]
    assert [e["event"] for e in shown["timeline"]].count("notice_sent") == 2

    # A further flag finds the police already notified: no second notice.
    more = amend(client, nurse, report["id"], {"risk_flags": ["third_party_claim",
                                                              "mother_minor"]})
    assert more.status_code == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert sorted(n["agency"]["code"] for n in shown["notices"]) == codes
    assert [d["rule"] for d in shown["deadlines"]].count("inform_police") == 1


def test_a_risk_flag_where_no_police_serve_waits_and_is_routed_once_they_do(client, app):
    add_other_region(app)  # Almaty city: a guardianship agency, no police agency yet
    nurse = bearer(app, OTHER_NURSE)
    report = file(client, nurse, report_body())
    assert amend(client, nurse, report["id"], {"risk_flags": ["mother_minor"]}).status_code \
        == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert [n["agency"]["code"] for n in shown["notices"]] == [OTHER_AGENCY]
    (inform,) = [d for d in shown["deadlines"] if d["rule"] == "inform_police"]
    assert inform["met_at"] is None  # nobody to inform: it runs, and shows as not met

    with app.extensions["besik.db"].writing() as session:
        region = session.scalars(select(Region).where(Region.code == OTHER_REGION)).one()
        session.add(Agency(code="POL-ALA", name="Almaty Police", kind=AgencyKind.POLICE,
                           region=region))
    response = amend(client, nurse, report["id"], {"notes": "the police now serve Almaty"})
    assert response.status_code == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    police = next(n for n in shown["notices"] if n["agency"]["code"] == "POL-ALA")
    assert police["sent_at"] == response.get_json()["at"]
    (inform,) = [d for d in shown["deadlines"] if d["rule"] == "inform_police"]
    assert inform["met_at"] == police["sent_at"]


def test_a_correction_that_adds_no_risk_flag_notifies_nobody(client, app, nurse):
    report = file(client, nurse, full_report())
    assert amend(client, nurse, report["id"], {"notes": "more"}).status_code == 201
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    assert [n["agency"]["code"] for n in shown["notices"]] == ["GRD-AST-YES"]
    assert "inform_police" not in [d["rule"] for d in shown["deadlines"]]


def test_the_same_report_filed_again_after_a_correction_still_answers_200(client, app, nurse):
    body = full_report()
    report = file(client, nurse, body)
    assert amend(client, nurse, report["id"], {"notes": "corrected"}).status_code == 201
    again = client.post("/api/v1/reports", json=body, headers=nurse)  # the phone's retry
    assert again.status_code == 200, again.get_json()
    data = again.get_json()
    assert data["notes"] == "corrected"  # the stored report, the correction kept
    assert len(data["amendments"]) == 1
    other = client.post("/api/v1/reports", json=body | {"notes": "corrected"}, headers=nurse)
    assert other.status_code == 409  # not what was filed under this id
    with app.extensions["besik.db"].reading() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 1


def test_who_may_correct_a_report(client, app, nurse):
    add_other_region(app)
    add_user(app, "admin.ala@besik.example", "admin", region=OTHER_REGION)
    add_user(app, "admin.ast@besik.example", "admin", region="AST")
    report = file(client, nurse, full_report())
    refused = {email: (bearer(app, email), status) for email, status in (
        ("nurse2@besik.example", 404),  # another facility's nurse
        ("officer@besik.example", 403),  # an officer, even of the notified agency
        ("police@besik.example", 403),
        ("admin.ala@besik.example", 404))}  # a region's admin, of another region
    before = stored(app)
    for email, (headers, status) in refused.items():
        response = amend(client, headers, report["id"], {"notes": email})
        assert response.status_code == status, email
        assert report["reference"] not in response.get_data(as_text=True)
    assert stored(app) == before
    for email in ("admin.ast@besik.example", "admin@besik.example", "nurse@besik.example"):
        response = amend(client, bearer(app, email), report["id"], {"notes": email})
        assert response.status_code == 201, (email, response.get_json())
    # A colleague of the same facility may correct it too (reporters see their facility's).
    add_user(app, "midwife@besik.example", "reporter", facility="PC1")
    response = amend(client, bearer(app, "midwife@besik.example"), report["id"],
                     {"notes": "midwife"})
    assert response.status_code == 201


# --- the page: a Correct button, the form, the timeline ----------------------------------


def _form(page: str) -> str:
    return page.split('id="correct-form"')[1].split("</form>")[0]


def test_the_correct_button_is_shown_to_who_may_correct(client, app, nurse):
    report = file(client, nurse, full_report())
    for email, shown in (("nurse@besik.example", True), ("admin@besik.example", True),
                         ("officer@besik.example", False)):
        page = login(app.test_client(), email).get(f"/reports/{report['id']}")
        assert page.status_code == 200
        assert ("data-correct" in page.get_data(as_text=True)) is shown, email
    officer = login(app.test_client(), "officer@besik.example")
    assert officer.get(f"/reports/{report['id']}/correct").status_code == 403
    other = login(app.test_client(), "nurse2@besik.example")
    assert other.get(f"/reports/{report['id']}/correct").status_code == 404


def test_the_correction_form_shows_the_values_and_saves_only_what_changed(client, app, nurse):
    report = file(client, nurse, full_report())
    browser = login(app.test_client(), "nurse@besik.example")
    page = browser.get(f"/reports/{report['id']}/correct")
    assert page.status_code == 200
    form = _form(page.get_data(as_text=True))
    assert f'value="{CHILD_IIN}"' in form and 'value="2025-01-15T08:30"' in form
    assert '<label for="reason">' in form and 'name="circumstance"' not in form
    assert 'name="child.sex"' not in form and 'name="discovered_at"' not in form

    values = {"child.iin": CHILD_IIN, "child.born_at": "2025-01-15T08:30",
              "child.weight_g": "3100", "child.condition": "stable",
              "mother.iin": "", "mother.full_name": "Айгүл Серікқызы",
              "mother.birth_date": "1985-12-31", "mother.citizenship": "KZ",
              "mother.phone": "", "mother.address": "", "notes": "left at night",
              "risk_flags": [""], "csrf_token": csrf_token(browser),
              "reason": "the mother's IIN was a guess"}
    done = browser.post(f"/reports/{report['id']}/correct", data=values)
    assert done.status_code == 303
    assert done.headers["Location"] == f"/reports/{report['id']}?corrected=1"
    answer = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    (amendment,) = answer["amendments"]
    assert amendment["changes"] == {"mother.iin": {"from": MOTHER_IIN, "to": None}}
    assert amendment["reason"] == "the mother's IIN was a guess"

    shown = browser.get(done.headers["Location"]).get_data(as_text=True)
    assert 'role="status"' in shown
    timeline = shown.split('<ol class="timeline"')[1].split("</ol>")[0]
    assert [e for e in ("filed", "received", "notice_sent", "amended")
            if f'data-event="{e}"' in timeline] == ["filed", "received", "notice_sent",
                                                     "amended"]
    assert "the mother&#39;s IIN was a guess" in timeline
    assert f"Mother&#39;s IIN: was {MOTHER_IIN}, now —" in timeline
    assert "0 s after the phone's clock" in timeline  # the two clocks and their gap


def test_the_correction_form_names_each_bad_field_and_saves_nothing(client, app, nurse):
    report = file(client, nurse, full_report())
    browser = login(app.test_client(), "nurse@besik.example")
    token = csrf_token(browser)
    before = stored(app)
    url = f"/reports/{report['id']}/correct"
    bad = browser.post(url, data={"child.iin": "250115601232", "child.weight_g": "9",
                                  "risk_flags": ["", "mother_minor"], "reason": "",
                                  "csrf_token": token})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    for field in ("child.iin", "child.weight_g", "reason"):
        anchor = field.replace(".", "-") + "-error"
        assert f'id="{anchor}"' in page, field
        assert 'aria-invalid="true"' in page.split(f'id="{field}"')[1].split(">")[0], field
    assert "check digit" in page
    assert 'value="250115601232"' in page  # what the nurse typed is kept to correct
    assert 'value="mother_minor" checked' in page
    assert stored(app) == before

    unchanged = browser.post(url, data={"notes": "left at night", "reason": "nothing",
                                        "csrf_token": token})
    assert unchanged.status_code == 422
    assert 'id="changes-error"' in unchanged.get_data(as_text=True)
    assert stored(app) == before


# --- the whole timeline: both clocks, notices, delivery, acknowledgement, escalation, ... --


@pytest.fixture
def push_app(push_settings: Settings) -> Iterator[Flask]:
    app = create_app(push_settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["besik.db"].dispose()


def test_the_timeline_holds_every_event_oldest_first_in_the_api_and_the_evidence(
        push_app, push_service, clock):
    app, client = push_app, push_app.test_client()
    nurse, officer = bearer(app, "nurse@besik.example"), bearer(app, "officer@besik.example")
    subscribe(client, app, "police@besik.example", push_service)
    body = report_body(filed_at=(clock.now() - timedelta(seconds=40)).isoformat())
    report = file(client, nurse, body)
    assert amend(client, nurse, report["id"], {"risk_flags": ["payment_suspected"]},
                 reason="payment offered").status_code == 201
    worker(app).run_once()  # the police notice reaches the police officer's device
    client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer)
    client.post(f"/api/v1/reports/{report['id']}/actions", json={"action": "examined"},
                headers=officer)
    worker(app).run_once(clock.now() + timedelta(minutes=31))  # the police never answered

    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    events = [e["event"] for e in shown["timeline"]]
    assert events == ["discovered", "filed", "received", "notice_sent", "notice_sent",
                      "amended", "delivered", "acknowledged", "action", "escalated"]
    assert [e["at"] for e in shown["timeline"]] == sorted(e["at"] for e in shown["timeline"])
    filed = shown["timeline"][1]
    assert filed["detail"]["gap_seconds"] == 40 == shown["clock_gap_seconds"]
    assert filed["detail"]["filed_at"] == shown["filed_at"]
    assert filed["detail"]["received_at"] == shown["received_at"]
    assert filed["actor"] == shown["reporter"]
    delivered = next(e for e in shown["timeline"] if e["event"] == "delivered")
    assert delivered["detail"] == {"agency": "Astana Police"}
    escalated = next(e for e in shown["timeline"] if e["event"] == "escalated")
    assert escalated["detail"]["level"] == 1 and escalated["actor"] is None

    page = login(app.test_client(), "admin@besik.example").get(
        f"/reports/{report['id']}/evidence").get_data(as_text=True)
    rows = page.split('<table class="timeline">')[1].split("</table>")[0]
    assert [e for e in events if f'data-event="{e}"' in rows] == events
    assert "payment offered" in rows
