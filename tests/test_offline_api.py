"""The server side of offline filing: reserved references, heartbeats, the app shell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from reporting.models import Device, ReservedReference
from tests.conftest import bearer, report_body


def reserve(client, headers, count=5):
    return client.post("/api/v1/references/reserve", json={"count": count}, headers=headers)


def test_reporter_reserves_references_for_her_facility(client, nurse, db):
    response = reserve(client, nurse, 5)
    assert response.status_code == 201
    data = response.get_json()
    assert len(data["references"]) == len(set(data["references"])) == 5
    assert all(r.startswith("AST-") for r in data["references"])
    assert data["facility"] == "PC1"
    expires = datetime.fromisoformat(data["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(days=29)
    rows = db.scalars(select(ReservedReference)).all()
    assert {r.reference for r in rows} == set(data["references"])


@pytest.mark.parametrize("body", [{"count": 11}, {"count": 0}, {"count": "5"}, {},
                                  {"count": 5, "extra": 1}])
def test_reserve_refuses_bad_counts(client, nurse, body):
    response = client.post("/api/v1/references/reserve", json=body, headers=nurse)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"


def test_officer_cannot_reserve(client, app):
    assert reserve(client, bearer(app, "officer@besik.example")).status_code == 403


def test_a_reserved_reference_is_used_once_and_shown_at_once(client, nurse):
    reference = reserve(client, nurse, 1).get_json()["references"][0]
    first = client.post("/api/v1/reports", json=report_body(reference=reference), headers=nurse)
    assert first.status_code == 201
    assert first.get_json()["reference"] == reference
    second = client.post("/api/v1/reports", json=report_body(reference=reference), headers=nurse)
    assert second.status_code == 422
    assert "reference" in second.get_json()["error"]["fields"]


def test_a_reference_reserved_by_another_facility_is_refused(client, app, nurse):
    other = reserve(client, bearer(app, "nurse2@besik.example"), 1).get_json()["references"][0]
    response = client.post("/api/v1/reports", json=report_body(reference=other), headers=nurse)
    assert response.status_code == 422
    assert "reference" in response.get_json()["error"]["fields"]


def test_an_expired_reservation_is_refused(client, app, nurse):
    reference = reserve(client, nurse, 1).get_json()["references"][0]
    with app.extensions["besik.db"].writing() as session:
        row = session.get(ReservedReference, reference)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = client.post("/api/v1/reports", json=report_body(reference=reference),
                           headers=nurse)
    assert response.status_code == 422


def test_retrying_a_report_with_its_reserved_reference_is_idempotent(client, nurse):
    reference = reserve(client, nurse, 1).get_json()["references"][0]
    body = report_body(reference=reference)
    assert client.post("/api/v1/reports", json=body, headers=nurse).status_code == 201
    again = client.post("/api/v1/reports", json=body, headers=nurse)
    assert again.status_code == 200
    assert again.get_json()["reference"] == reference


def test_heartbeat_records_the_phones_outbox(client, nurse, db):
    oldest = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    response = client.post("/api/v1/devices/heartbeat", headers=nurse, json={
        "device_id": "3f0c2a8e-phone-1", "outbox_depth": 2, "oldest_unsent_at": oldest})
    assert response.status_code == 204
    device = db.get(Device, "3f0c2a8e-phone-1")
    assert device.outbox_depth == 2
    assert device.oldest_unsent_at is not None
    assert device.facility_id is not None
    client.post("/api/v1/devices/heartbeat", headers=nurse, json={
        "device_id": "3f0c2a8e-phone-1", "outbox_depth": 0, "oldest_unsent_at": None})
    db.rollback()
    device = db.get(Device, "3f0c2a8e-phone-1")
    assert (device.outbox_depth, device.oldest_unsent_at) == (0, None)


@pytest.mark.parametrize("body", [{"device_id": "x", "outbox_depth": 0},
                                  {"device_id": "3f0c2a8e-phone-1", "outbox_depth": -1},
                                  {"device_id": "3f0c2a8e-phone-1"}])
def test_heartbeat_refuses_bad_input(client, nurse, body):
    assert client.post("/api/v1/devices/heartbeat", json=body,
                       headers=nurse).status_code == 422


def test_csrf_endpoint_says_whose_session_it_is(client):
    from tests.conftest import login

    login(client, "nurse@besik.example")
    data = client.get("/api/v1/csrf").get_json()
    assert data["csrf_token"]
    assert data["user"]["role"] == "reporter"


def test_manifest_makes_the_app_installable(client):
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = json.loads(response.data)
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/reports/new"
    assert manifest["name"] and manifest["short_name"]
    sizes = {(i["sizes"], i["purpose"]) for i in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for icon in manifest["icons"]:
        png = client.get(icon["src"])
        assert png.status_code == 200 and png.data[:8] == b"\x89PNG\r\n\x1a\n"
        png.close()


def test_service_worker_is_served_from_the_root_uncached_with_a_versioned_cache(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    source = response.data.decode()
    assert "__VERSION__" not in source and "__SHELL__" not in source
    assert '"/reports/new"' in source and '"/offline"' in source
    assert "/reports/<" not in source


def test_offline_page_is_public(client):
    response = client.get("/offline")
    assert response.status_code == 200
    assert b"No network" in response.data


def test_cache_version_changes_with_any_static_file(tmp_path):
    from reporting.views.pwa import static_version

    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("one")
    before = static_version(str(tmp_path))
    static_version.cache_clear()
    (tmp_path / "js" / "app.js").write_text("two")
    assert static_version(str(tmp_path)) != before
    static_version.cache_clear()
