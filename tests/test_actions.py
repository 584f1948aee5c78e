"""What officers record after acknowledging (CONTRACT §5, PRODUCT §6): each agency its own
actions, only once its notice is acknowledged, never on a closed report."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import bearer, report_body


def filed(client: FlaskClient, nurse: dict[str, str], **body: object) -> dict:
    response = client.post("/api/v1/reports", json=report_body(**body), headers=nurse)
    assert response.status_code == 201
    return dict(response.get_json())


def deadlines(client: FlaskClient, nurse: dict[str, str], report: dict) -> dict[str, str]:
    data = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    return {d["rule"]: d["state"] for d in data["deadlines"]}


def acknowledged(client: FlaskClient, app: Flask, email: str, report: dict) -> dict[str, str]:
    headers = bearer(app, email)
    response = client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=headers)
    assert response.status_code == 200
    return headers


def test_an_action_before_the_notice_is_acknowledged_is_409(client, app, nurse):
    report = filed(client, nurse)
    officer = bearer(app, "officer@besik.example")
    response = client.post(f"/api/v1/reports/{report['id']}/actions",
                           json={"action": "examined"}, headers=officer)
    assert response.status_code == 409
    assert deadlines(client, nurse, report)["examine_child"] == "pending"


def test_an_action_on_a_closed_report_is_409(client, app, nurse):
    report = filed(client, nurse)
    officer = acknowledged(client, app, "officer@besik.example", report)
    url = f"/api/v1/reports/{report['id']}/actions"
    assert client.post(url, json={"action": "closed"}, headers=officer).status_code == 201
    assert client.post(url, json={"action": "examined"}, headers=officer).status_code == 409
    assert deadlines(client, nurse, report)["examine_child"] == "pending"


def test_police_record_their_own_actions(client, app, nurse):
    report = filed(client, nurse, risk_flags=["payment_suspected"])
    police = acknowledged(client, app, "police@besik.example", report)
    url = f"/api/v1/reports/{report['id']}/actions"
    for action in ("investigation_opened", "no_offence_found"):
        response = client.post(url, json={"action": action}, headers=police)
        assert response.status_code == 201, response.get_json()


def test_police_cannot_record_guardianship_actions_nor_meet_or_close_its_deadlines(
        client, app, nurse):
    report = filed(client, nurse, risk_flags=["payment_suspected"])
    police = acknowledged(client, app, "police@besik.example", report)
    url = f"/api/v1/reports/{report['id']}/actions"
    for action in ("examined", "closed"):
        response = client.post(url, json={"action": action}, headers=police)
        assert response.status_code == 422, (action, response.status_code)
        assert "action" in response.get_json()["error"]["fields"]
    assert deadlines(client, nurse, report)["examine_child"] == "pending"
    assert client.get(f"/api/v1/reports/{report['id']}",
                      headers=nurse).get_json()["state"] != "closed"


def test_guardianship_cannot_record_a_police_action(client, app, nurse):
    report = filed(client, nurse, risk_flags=["payment_suspected"])
    officer = acknowledged(client, app, "officer@besik.example", report)
    response = client.post(f"/api/v1/reports/{report['id']}/actions",
                           json={"action": "investigation_opened"}, headers=officer)
    assert response.status_code == 422
