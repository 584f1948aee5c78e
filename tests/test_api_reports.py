"""POST/GET /api/v1/reports: validation, bad input, idempotency, listing, routing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from reporting.models import AuditEntry, Deadline, Notice, Report
from tests.conftest import bearer, report_body


def post(client: FlaskClient, headers: dict[str, str], body: object) -> object:
    return client.post("/api/v1/reports", json=body, headers=headers)


def count(app: Flask, model: type) -> int:
    with app.extensions["besik.db"].writing() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_nurse_files_a_report_with_the_three_required_facts(client, nurse, app):
    body = report_body()
    response = post(client, nurse, body)
    assert response.status_code == 201, response.get_json()
    data = response.get_json()
    assert data["id"] == body["id"]
    assert data["reference"].startswith("AST-")
    assert data["facility"] == {"code": "PC1", "name": "Perinatal Centre No. 1"}
    assert data["state"] == "open"
    assert data["received_at"].endswith("Z")
    assert [n["agency"]["code"] for n in data["notices"]] == ["GRD-AST-YES"]
    rules = {d["rule"]: d for d in data["deadlines"]}
    assert set(rules) == {"report_to_guardianship", "report_to_guardianship_statutory",
                          "acknowledge_notice", "examine_child"}
    assert rules["report_to_guardianship"]["state"] == "met"
    assert rules["examine_child"]["basis_verified"] is False


def test_risk_flag_routes_to_police_and_meets_inform_police(client, nurse):
    data = post(client, nurse, report_body(risk_flags=["payment_suspected"])).get_json()
    assert sorted(n["agency"]["code"] for n in data["notices"]) == ["GRD-AST-YES", "POL-AST"]
    police = next(d for d in data["deadlines"] if d["rule"] == "inform_police")
    assert police["state"] == "met"


def test_filing_writes_audit_entries(client, nurse, app):
    before = count(app, AuditEntry)
    post(client, nurse, report_body())
    with app.extensions["besik.db"].writing() as session:
        tags = session.scalars(select(AuditEntry.tag).where(AuditEntry.seq > before)).all()
    assert tags == ["notice:created", "report:filed"]


def test_late_filing_from_the_phone_is_judged_on_filed_at(client, nurse):
    discovered = datetime.now(UTC) - timedelta(hours=3)
    filed = discovered + timedelta(minutes=30)  # pressed Send in time, network came back later
    data = post(client, nurse, report_body(discovered_at=discovered.isoformat(),
                                           filed_at=filed.isoformat())).get_json()
    rule = next(d for d in data["deadlines"] if d["rule"] == "report_to_guardianship")
    assert rule["state"] == "met"
    assert data["reported_at"] == data["filed_at"]


def test_filed_at_far_in_the_future_falls_back_to_received_at(client, nurse):
    discovered = datetime.now(UTC) - timedelta(hours=3)
    filed = datetime.now(UTC) + timedelta(minutes=30)
    data = post(client, nurse, report_body(discovered_at=discovered.isoformat(),
                                           filed_at=filed.isoformat())).get_json()
    assert data["reported_at"] == data["received_at"]
    rule = next(d for d in data["deadlines"] if d["rule"] == "report_to_guardianship")
    assert rule["state"] == "met_late"


# --- bad input: a clear error, nothing stored -------------------------------------------

def test_malformed_json_is_400(client, nurse, app):
    response = client.post("/api/v1/reports", data="{not json",
                           headers=nurse | {"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert count(app, Report) == 0


def test_wrong_content_type_is_415(client, nurse, app):
    response = client.post("/api/v1/reports", data=json.dumps(report_body()),
                           headers=nurse | {"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert count(app, Report) == 0


def test_body_over_64_kb_is_413(client, nurse, app):
    response = post(client, nurse, report_body(notes="x" * (65 * 1024)))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert count(app, Report) == 0


@pytest.mark.parametrize(("change", "field"), [
    ({"colour": "blue"}, "colour"),
    ({"child": {"sex": "female", "eyes": "brown"}}, "child.eyes"),
    ({"circumstance": "stolen"}, "circumstance"),
    ({"discovered_at": 1234}, "discovered_at"),
    ({"discovered_at": "2026-11-29T10:15:00"}, "discovered_at"),
    ({"child": {"sex": "female", "weight_g": "3100"}}, "child.weight_g"),
    ({"child": {"sex": "female", "weight_g": True}}, "child.weight_g"),
    ({"child": {}}, "child.sex"),
    ({"id": "not-a-uuid"}, "id"),
    ({"risk_flags": "payment_suspected"}, "risk_flags"),
    ({"risk_flags": ["made_up"]}, "risk_flags"),
    ({"reference": "AST-2026-999999"}, "reference"),
])
def test_unknown_or_mistyped_field_is_422_naming_it(client, nurse, app, change, field):
    response = post(client, nurse, report_body(**change))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["fields"]
    assert count(app, Report) == 0


def test_missing_required_fields_are_all_named(client, nurse):
    response = post(client, nurse, {})
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"id", "circumstance",
                                                           "discovered_at", "child"}


def test_body_that_is_not_an_object_is_422(client, nurse):
    response = post(client, nurse, ["a", "list"])
    assert response.status_code == 422


@pytest.mark.parametrize("iin", ["250115601232", "250115600670", "25011560123", "2501156012a1"])
def test_invalid_child_iin_is_422_on_child_iin(client, nurse, app, iin):
    response = post(client, nurse, report_body(child={"sex": "female", "iin": iin}))
    assert response.status_code == 422
    assert "child.iin" in response.get_json()["error"]["fields"]
    assert count(app, Report) == 0


def test_second_pass_iin_is_accepted(client, nurse):
    response = post(client, nurse, report_body(child={"sex": "female", "iin": "250115600607"}))
    assert response.status_code == 201
    assert response.get_json()["child"]["iin"] == "250115600607"


def test_iin_that_disagrees_with_sex_is_a_warning_not_an_error(client, nurse):
    # 250115601231: digit 7 = 6 (2000s, female); reported as a boy.
    response = post(client, nurse, report_body(child={"sex": "male", "iin": "250115601231"}))
    assert response.status_code == 201
    assert "child.iin_sex_mismatch" in response.get_json()["warnings"]


def test_discovered_more_than_five_minutes_ahead_is_422(client, nurse):
    future = datetime.now(UTC) + timedelta(minutes=6)
    response = post(client, nurse, report_body(discovered_at=future.isoformat()))
    assert response.status_code == 422
    assert "discovered_at" in response.get_json()["error"]["fields"]


def test_discovered_four_minutes_ahead_is_accepted(client, nurse):
    soon = datetime.now(UTC) + timedelta(minutes=4)
    assert post(client, nurse, report_body(discovered_at=soon.isoformat())).status_code == 201


# --- idempotency ------------------------------------------------------------------------

def test_same_id_same_content_returns_the_same_report(client, nurse, app):
    body = report_body()
    first = post(client, nurse, body)
    again = post(client, nurse, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["reference"] == first.get_json()["reference"]
    assert count(app, Report) == 1
    assert count(app, Notice) == 1


def test_the_answer_to_a_filing_is_the_report_as_read_back(client, nurse):
    """A new report is answered from memory, without reading it back: it must be exactly
    what reading it answers (the idempotent repeat reads it from the database)."""
    body = report_body(
        risk_flags=["payment_suspected"], notes="seen at the door",
        child={"sex": "male", "iin": "250115601231", "weight_g": 3100, "condition": "stable",
               "born_at": (datetime.now(UTC) - timedelta(hours=5)).isoformat()},
        mother={"iin": "851231300124", "full_name": "Test Mother", "phone": "+77010000000",
                "birth_date": "1985-12-31", "citizenship": "KZ", "address": "Somewhere 1"})
    first = post(client, nurse, body)
    again = post(client, nurse, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json() == again.get_json()


def test_same_id_with_other_content_is_409_and_the_stored_report_unchanged(client, nurse, app):
    body = report_body()
    first = post(client, nurse, body).get_json()
    changed = dict(body, circumstance="left_without_notice")
    response = post(client, nurse, changed)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "id_conflict"
    stored = client.get(f"/api/v1/reports/{body['id']}", headers=nurse).get_json()
    assert stored["circumstance"] == "written_refusal"
    assert stored["reference"] == first["reference"]
    assert count(app, Report) == 1
    assert count(app, Deadline) == 4  # the first report's, and no more


def test_same_id_from_another_nurse_is_409(client, nurse, app):
    body = report_body()
    post(client, nurse, body)
    response = post(client, bearer(app, "nurse2@besik.example"), body)
    assert response.status_code == 409


# --- reading ----------------------------------------------------------------------------

def _in_one_order(report: dict) -> dict:
    # Notices sent at the same moment (guardianship and police at filing), and what follows
    # from them (their deadlines, their timeline events), have no order of their own.
    return {**report,
            "notices": sorted(report["notices"], key=lambda n: n["agency"]["code"]),
            "deadlines": sorted(report["deadlines"], key=lambda d: json.dumps(d)),
            "timeline": sorted(report["timeline"], key=lambda e: json.dumps(e))}


def test_a_listed_report_is_exactly_the_report_as_shown_alone(client, nurse, app):
    """The list reads its pages without the ORM: each item must be what GET /reports/<id>
    (the models) answers, acknowledged, acted on, corrected and routed to the police."""
    plain = post(client, nurse, report_body(notes="first")).get_json()
    flagged = post(client, nurse, report_body(risk_flags=["payment_suspected"],
                                              mother={"full_name": "A B"})).get_json()
    officer = bearer(app, "officer@besik.example")
    assert client.post(f"/api/v1/reports/{flagged['id']}/acknowledge", headers=officer,
                       json={"note": "on my way"}).status_code == 200
    assert client.post(f"/api/v1/reports/{flagged['id']}/actions", headers=officer,
                       json={"action": "examined", "note": "well"}).status_code == 201
    assert client.post(f"/api/v1/reports/{plain['id']}/amendments", headers=nurse, json={
        "changes": {"notes": "second", "child": {"weight_g": 2900}},
        "reason": "misheard"}).status_code == 201
    for headers in (nurse, officer, bearer(app, "admin@besik.example"),
                    bearer(app, "police@besik.example")):
        listed = client.get("/api/v1/reports", headers=headers).get_json()["items"]
        assert listed
        for item in listed:
            alone = client.get(f"/api/v1/reports/{item['id']}", headers=headers).get_json()
            assert _in_one_order(item) == _in_one_order(alone)


def test_list_is_newest_first_with_a_working_cursor(client, nurse):
    ids = [post(client, nurse, report_body()).get_json()["id"] for _ in range(5)]
    first = client.get("/api/v1/reports?limit=2", headers=nurse).get_json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    seen = [r["id"] for r in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/api/v1/reports?limit=2&cursor={cursor}", headers=nurse).get_json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]


def test_list_filters_by_state_return_exactly_the_reports_in_that_state(client, nurse, app,
                                                                         clock):
    officer = bearer(app, "officer@besik.example")
    clock.freeze(datetime.now(UTC))

    def filed() -> str:
        response = post(client, nurse, report_body())
        assert response.status_code == 201
        return str(response.get_json()["id"])

    overdue, acknowledged, closed = filed(), filed(), filed()
    for report_id in (acknowledged, closed):
        assert client.post(f"/api/v1/reports/{report_id}/acknowledge",
                           headers=officer).status_code == 200
    assert client.post(f"/api/v1/reports/{closed}/actions", json={"action": "closed"},
                       headers=officer).status_code == 201
    clock.advance(timedelta(minutes=31))  # acknowledge_notice (30 min) has passed for those
    pending = filed()  # ... but not for this one, filed now
    expected = {"pending": [pending], "overdue": [overdue], "acknowledged": [acknowledged],
                "closed": [closed]}
    for headers in (nurse, officer):
        for state, ids in expected.items():
            response = client.get(f"/api/v1/reports?state={state}", headers=headers)
            assert response.status_code == 200
            assert [r["id"] for r in response.get_json()["items"]] == ids, state
        everything = client.get("/api/v1/reports", headers=headers).get_json()["items"]
        assert sorted(r["id"] for r in everything) == sorted([pending, overdue, acknowledged,
                                                              closed])
    notices = {r["id"]: r["notices"][0]["state"]
               for r in client.get("/api/v1/reports", headers=nurse).get_json()["items"]}
    assert notices == {pending: "pending", overdue: "overdue", acknowledged: "acknowledged",
                       closed: "acknowledged"}
    clock.advance(timedelta(minutes=31))  # now the last one is late too
    assert [r["id"] for r in client.get("/api/v1/reports?state=overdue", headers=nurse)
            .get_json()["items"]] == [pending, overdue]
    assert client.get("/api/v1/reports?state=pending", headers=nurse).get_json()["items"] == []


def test_list_refuses_an_unknown_state_or_cursor(client, nurse):
    bad = client.get("/api/v1/reports?state=lost", headers=nurse)
    assert bad.status_code == 422
    assert "state" in bad.get_json()["error"]["fields"]
    assert client.get("/api/v1/reports?cursor=%%%", headers=nurse).status_code == 422


def test_officer_of_the_routed_agency_sees_the_report(client, nurse, app):
    report_id = post(client, nurse, report_body()).get_json()["id"]
    officer = bearer(app, "officer@besik.example")
    assert client.get(f"/api/v1/reports/{report_id}", headers=officer).status_code == 200
    items = client.get("/api/v1/reports", headers=officer).get_json()["items"]
    assert [r["id"] for r in items] == [report_id]


@pytest.mark.parametrize("outsider", ["nurse2@besik.example", "officer2@besik.example",
                                      "police@besik.example"])
def test_report_outside_scope_is_404(client, nurse, app, outsider):
    report_id = post(client, nurse, report_body()).get_json()["id"]
    headers = bearer(app, outsider)
    response = client.get(f"/api/v1/reports/{report_id}", headers=headers)
    assert response.status_code == 404
    assert client.get("/api/v1/reports", headers=headers).get_json()["items"] == []
    assert client.get(f"/reports/{report_id}", headers=headers).status_code == 404


def test_unknown_report_is_404(client, nurse):
    assert client.get("/api/v1/reports/nope", headers=nurse).status_code == 404


def test_openapi_document_is_generated_from_the_validating_schema(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    report_in = doc["components"]["schemas"]["ReportIn"]
    assert report_in["required"] == ["id", "circumstance", "discovered_at", "child"]
    assert report_in["additionalProperties"] is False
    assert report_in["properties"]["child"]["properties"]["sex"]["enum"] == [
        "female", "male", "unknown"]
    assert "post" in doc["paths"]["/reports"]
