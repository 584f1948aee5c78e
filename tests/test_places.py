"""Places administered without SQL: Kazakhstan's regions from init-db, districts, facilities
and agencies from the command line and /admin/places, deactivation, and a region brought into
service end to end."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from reporting.models import Agency, AuditEntry, District, Facility, Region, Report
from reporting.places import REGIONS
from tests.conftest import OTHER_REGION, add_user, bearer, csrf_token, login, report_body


def run(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_init_db_installs_the_regions_of_kazakhstan_once(app, db):
    assert run(app, "init-db").exit_code == 0
    assert run(app, "init-db").exit_code == 0
    regions = {r.code: r for r in db.scalars(select(Region))}
    assert len(REGIONS) == 20 and set(regions) >= {code for code, *_ in REGIONS}
    assert len(regions) == 20  # the demo's Astana is the installed one, not a second
    assert (regions["AST"].name, regions["AST"].name_ru, regions["AST"].name_kk) == (
        "Astana", "Астана", "Астана")
    assert regions["ULY"].name_kk == "Ұлытау облысы"
    assert regions["VOS"].name_ru == "Восточно-Казахстанская область"


def _place_region_through_the_cli(app: Any) -> None:
    for args in (["create-district", "--region", "PAV", "--code", "PAV-EKB", "--name",
                  "Ekibastuz"],
                 ["create-facility", "--district", "PAV-EKB", "--code", "EKB1", "--name",
                  "Ekibastuz Maternity", "--kind", "maternity"],
                 ["create-agency", "--code", "GRD-PAV-EKB", "--name",
                  "Guardianship of Ekibastuz", "--kind", "guardianship", "--district",
                  "PAV-EKB", "--phone", "+7 7187 00 00 00"],
                 ["create-agency", "--code", "POL-PAV", "--name", "Pavlodar Police",
                  "--kind", "police", "--region", "PAV"]):
        result = run(app, *args)
        assert result.exit_code == 0, result.output
        assert f"created {args[args.index('--code') + 1]}" in result.output


def test_a_region_brought_into_service_from_the_command_line_receives_a_report(app, client,
                                                                                db):
    _place_region_through_the_cli(app)
    runner = app.test_cli_runner()
    tokens = {}
    for email, role, place in (("nurse.ekb@besik.example", "reporter", "--facility=EKB1"),
                               ("officer.ekb@besik.example", "officer",
                                "--agency=GRD-PAV-EKB")):
        created = runner.invoke(args=["create-user", "--email", email, "--name", email,
                                      "--role", role, place],
                                input="a long own passphrase 42\n")
        assert created.exit_code == 0, created.output
        token = runner.invoke(args=["create-token", "--email", email])
        tokens[role] = {"Authorization": f"Bearer {token.output.strip()}"}
    filed = client.post("/api/v1/reports", headers=tokens["reporter"],
                        json=report_body(risk_flags=["payment_suspected"]))
    assert filed.status_code == 201, filed.get_json()
    report = filed.get_json()
    assert report["reference"].startswith("PAV-")
    assert {n["agency"]["code"] for n in report["notices"]} == {"GRD-PAV-EKB", "POL-PAV"}
    inbox = client.get("/api/v1/reports?state=pending", headers=tokens["officer"]).get_json()
    assert [item["id"] for item in inbox["items"]] == [report["id"]]
    tags = set(db.scalars(select(AuditEntry.tag)))
    assert {"district:created", "facility:created", "agency:created"} <= tags


@pytest.mark.parametrize("args", [
    ["create-district", "--region", "NOPE", "--code", "X-1", "--name", "X"],
    ["create-district", "--region", "PAV", "--code", "AST-YES", "--name", "taken"],
    ["create-district", "--region", "PAV", "--code", "lower case", "--name", "X"],
    ["create-facility", "--district", "NOPE", "--code", "F1", "--name", "X"],
    ["create-agency", "--code", "A1", "--name", "X", "--kind", "police"],
    ["create-agency", "--code", "A1", "--name", "X", "--kind", "police", "--region", "PAV",
     "--district", "AST-YES"],
])
def test_bad_places_exit_2_and_add_nothing(app, db, args):
    before = db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) == before


def _post(client: Any, url: str, **form: str) -> Any:
    return client.post(url, data={"csrf_token": csrf_token(client), **form})


def test_the_pages_bring_a_district_into_service(app, client, db):
    """A district, its facility, its guardianship agency and an officer, from the pages
    alone; a report filed there reaches that agency."""
    login(client, "admin@besik.example")
    page = client.get("/admin/places")
    assert page.status_code == 200 and 'id="facility-PC1"' in page.data.decode()
    for form in ({"place": "district", "region": "AST", "code": "AST-ESL", "name": "Esil-2"},
                 {"place": "facility", "district": "AST-ESL", "code": "ESL1",
                  "name": "Esil Maternity", "kind": "perinatal"},
                 {"place": "agency", "kind": "guardianship", "code": "GRD-AST-ESL",
                  "name": "Guardianship of Esil-2", "district": "AST-ESL",
                  "phone": "+7 7172 11 11 11"}):
        response = _post(client, "/admin/places", **form)
        assert response.status_code == 303, response.data
        assert response.headers["Location"].endswith(f"#{form['place']}-{form['code']}")
    facility = db.scalars(select(Facility).where(Facility.code == "ESL1")).one()
    assert (facility.kind, facility.district.code) == ("perinatal", "AST-ESL")
    passwords = {}
    for email, role, place in (("nurse.esl@besik.example", "reporter", {"facility": "ESL1"}),
                               ("officer.esl@besik.example", "officer",
                                {"agency": "GRD-AST-ESL"})):
        created = _post(client, "/admin/users", email=email, name=email, role=role, **place)
        assert created.status_code == 201, created.data
        passwords[role] = created.data.decode().split("data-one-time-password>")[1].split("<")[0]
    nurse = _first_sign_in(app, "nurse.esl@besik.example", passwords["reporter"])
    report = nurse.post("/api/v1/reports", json=report_body(),
                        headers={"X-CSRFToken": csrf_token(nurse)}).get_json()
    assert [n["agency"]["code"] for n in report["notices"]] == ["GRD-AST-ESL"]
    officer = _first_sign_in(app, "officer.esl@besik.example", passwords["officer"])
    assert report["reference"] in officer.get("/inbox").data.decode()
    edit = client.get("/admin/places/edit?place=agency&code=GRD-AST-ESL")
    assert edit.status_code == 200 and 'value="+7 7172 11 11 11"' in edit.data.decode()


def _first_sign_in(app: Any, email: str, one_time: str) -> Any:
    """Sign in with a one-time password and choose one's own, as /me requires."""
    browser = app.test_client()
    token = browser.get("/login").data.decode().split('name="csrf_token" value="')[1]
    assert browser.post("/login", data={"email": email, "password": one_time,
                                        "csrf_token": token.split('"')[0]}).status_code == 302
    changed = browser.post("/me/password", data={
        "csrf_token": csrf_token(browser), "current_password": one_time,
        "new_password": "a long own passphrase 42",
        "new_password_again": "a long own passphrase 42"})
    assert changed.status_code == 303, changed.data
    return browser


def test_a_form_error_names_the_field_and_saves_nothing(app, client, db):
    login(client, "admin@besik.example")
    response = _post(client, "/admin/places", place="district", region="AST",
                     code="bad code", name="")
    assert response.status_code == 422
    html = response.data.decode()
    assert 'id="district-code-error"' in html and 'id="district-name-error"' in html
    assert db.scalars(select(District).where(District.name == "")).first() is None


def test_deactivating_the_districts_agency_on_the_page_shows_the_gap_at_once(app, client,
                                                                               db):
    login(client, "admin@besik.example")
    admin = bearer(app, "admin@besik.example")

    def gaps() -> set[tuple[str, str]]:
        return {(g["kind"], g["code"]) for g in client.get(
            "/api/v1/coverage", headers=admin).get_json()["gaps"]}

    assert ("facility_unrouted", "PC1") not in gaps()
    response = _post(client, "/admin/places/edit", place="agency", code="GRD-AST-YES",
                     kind="guardianship", name="Guardianship of Yesil district",
                     district="AST-YES", phone="+7 7172 00 00 00")  # is_active: unticked
    assert response.status_code == 303, response.data
    assert ("facility_unrouted", "PC1") in gaps()
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "agency:changed")).one()
    assert entry.data["changes"] == {"is_active": {"from": True, "to": False}}


def test_edit_pages_outside_a_regions_scope_are_404(app, client):
    add_user(app, "admin.ala@besik.example", "admin", region=OTHER_REGION)
    login(client, "admin.ala@besik.example")
    assert client.get("/admin/places/edit?place=facility&code=PC1").status_code == 404
    assert client.get("/admin/places/edit?place=district&code=AST-YES").status_code == 404
    assert client.get("/admin/places/edit?place=nonsense&code=PC1").status_code == 404
    html = client.get("/admin/places").data.decode()
    assert 'id="facility-PC1"' not in html and 'id="district-AST-YES"' not in html
    assert 'value="ALA"' in html and 'value="AST"' not in html  # only its own region
    response = _post(client, "/admin/places", place="district", region="AST",
                     code="AST-NEW", name="Not mine")
    assert response.status_code == 422  # another region's code is not one of the choices


@pytest.mark.parametrize("email", ["nurse@besik.example", "officer@besik.example"])
def test_reporters_and_officers_get_403(app, client, email):
    login(client, email)
    assert client.get("/admin/places").status_code == 403
    assert client.get("/admin/places/edit?place=facility&code=PC1").status_code == 403
    assert _post(client, "/admin/places", place="district", region="AST", code="AST-Q",
                 name="Q").status_code == 403


def test_a_moved_facility_keeps_its_reports_district(app, client, nurse, db):
    first = client.post("/api/v1/reports", headers=nurse, json=report_body()).get_json()
    run(app, "create-district", "--region", "AST", "--code", "AST-NEW", "--name", "New")
    with app.extensions["besik.db"].writing() as session:
        from reporting import clock, places

        facility = session.scalars(select(Facility).where(Facility.code == "PC1")).one()
        places.change_facility(session, facility, {
            "name": facility.name, "kind": facility.kind, "district": "AST-NEW",
            "is_active": True}, places.Actor(None, None), clock.now())
    second = client.post("/api/v1/reports", headers=nurse, json=report_body()).get_json()
    districts = {r.id: r.district.code for r in db.scalars(select(Report))}
    assert districts[first["id"]] == "AST-YES"
    assert districts[second["id"]] == "AST-NEW"
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "facility:changed")).one()
    assert entry.data["changes"]["district"] == {"from": "AST-YES", "to": "AST-NEW"}


def test_a_deactivated_agency_is_not_notified_and_its_district_shows_as_a_gap(app, client,
                                                                               nurse, db):
    from reporting import clock, places

    with app.extensions["besik.db"].writing() as session:
        agency = session.scalars(select(Agency).where(Agency.code == "GRD-AST-YES")).one()
        places.change_agency(session, agency, places.form_values(agency) | {
            "is_active": False, "region": None}, places.Actor(None, None), clock.now())
    report = client.post("/api/v1/reports", headers=nurse, json=report_body()).get_json()
    assert [n["agency"]["code"] for n in report["notices"]] == []
    gaps = {(g["kind"], g["code"]) for g in client.get(
        "/api/v1/coverage", headers=bearer(app, "admin@besik.example")).get_json()["gaps"]}
    assert ("facility_unrouted", "PC1") in gaps
