"""The list keeps the bodies it rendered (reporting/listing.py) and renders a report again
only when something it shows moved: after each kind of change, a listed report is exactly
what GET /reports/<id> answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from reporting.models import Agency, Notice, PushDelivery, Report, User
from tests.conftest import bearer, report_body


def _one_order(report: dict) -> dict:
    return {**report,
            "notices": sorted(report["notices"], key=lambda n: n["agency"]["code"]),
            "deadlines": sorted(report["deadlines"], key=lambda d: json.dumps(d)),
            "timeline": sorted(report["timeline"], key=lambda e: json.dumps(e))}


def _listed_as_alone(client, headers, report_id: str, path: str = "/api/v1/reports") -> dict:
    """The report as the list shows it, checked against the report shown alone."""
    listed = {item["id"]: item for item in client.get(path, headers=headers).get_json()["items"]}
    alone = client.get(f"/api/v1/reports/{report_id}", headers=headers).get_json()
    assert _one_order(listed[report_id]) == _one_order(alone)
    return listed[report_id]


def _write(app, statement) -> None:
    with app.extensions["besik.db"].writing() as session:
        session.execute(statement)


def test_a_kept_body_follows_every_change_the_list_shows(app, client, nurse, clock):
    clock.freeze(datetime.now(UTC))
    report = client.post("/api/v1/reports", json=report_body(risk_flags=["payment_suspected"]),
                         headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    first = _listed_as_alone(client, officer, report["id"])
    assert client.get("/api/v1/reports", headers=officer).get_json()["items"][0] == first

    # the report's own rows: the revision moves (acknowledgement, then an action)
    assert client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer,
                       json={"note": "on my way"}).status_code == 200
    assert _listed_as_alone(client, officer, report["id"])["state"] == "acknowledged"
    assert client.post(f"/api/v1/reports/{report['id']}/actions", headers=officer,
                       json={"action": "examined"}).status_code == 201
    _listed_as_alone(client, officer, report["id"])

    # a change to the report's row alone (the database raises its revision)
    _write(app, update(Report).where(Report.id == report["id"]).values(notes="seen again"))
    assert _listed_as_alone(client, officer, report["id"])["notes"] == "seen again"

    # names in their own tables: the agency's, the acknowledger's, the reporter's
    with app.extensions["besik.db"].reading() as session:
        notices = list(session.scalars(select(Notice).where(
            Notice.report_id == report["id"])))
    _write(app, update(Agency).where(Agency.id.in_([n.agency_id for n in notices]))
           .values(name=Agency.name + " (renamed)"))
    listed = _listed_as_alone(client, officer, report["id"])
    assert all(n["agency"]["name"].endswith("(renamed)") for n in listed["notices"])
    _write(app, update(User).where(User.email == "officer@besik.example")
           .values(name="Officer Renamed"))
    listed = _listed_as_alone(client, officer, report["id"])
    assert "Officer Renamed" in json.dumps(listed)
    _write(app, update(User).where(User.email == "nurse@besik.example")
           .values(name="Nurse Renamed"))
    assert _listed_as_alone(client, officer, report["id"])["reporter"]["name"] == "Nurse Renamed"

    # a push sent changes a delivery, not the notice: the timeline shows it delivered
    now = datetime.now(UTC)
    with app.extensions["besik.db"].writing() as session:
        officer_id = session.scalars(select(User.id).where(
            User.email == "officer@besik.example")).one()
        session.add(PushDelivery(user_id=officer_id, notice_id=notices[0].id, kind="notice",
                                 status="sent", next_attempt_at=now, created_at=now,
                                 sent_at=now))
    listed = _listed_as_alone(client, officer, report["id"])
    assert any(e["event"] == "delivered" for e in listed["timeline"])


def test_a_kept_body_is_rendered_again_when_a_due_moment_passes(app, client, nurse, clock):
    clock.freeze(datetime.now(UTC))
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    before = _listed_as_alone(client, officer, report["id"])
    assert before["notices"][0]["state"] == "pending"
    clock.advance(timedelta(hours=1))  # acknowledge_notice (30 min) has passed
    after = _listed_as_alone(client, officer, report["id"])
    assert after["notices"][0]["state"] == "overdue"
    assert after["notices"][0]["is_late"] is True
    assert [d["state"] for d in after["deadlines"]] != [d["state"] for d in before["deadlines"]]


def test_a_page_is_the_same_json_whether_its_bodies_were_kept_or_not(app, client, nurse):
    for _ in range(3):
        client.post("/api/v1/reports", json=report_body(), headers=nurse)
    officer = bearer(app, "officer@besik.example")
    fresh = client.get("/api/v1/reports?limit=2", headers=officer)
    kept = client.get("/api/v1/reports?limit=2", headers=officer)
    assert fresh.mimetype == kept.mimetype == "application/json"
    assert fresh.get_json() == kept.get_json()
    assert fresh.get_json()["next_cursor"] is not None
    assert len(fresh.get_json()["items"]) == 2
