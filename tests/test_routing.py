"""Routing (PRODUCT §4): the district's guardianship always, police on a risk flag, and the
region's agency as a flagged fallback when a district has none."""

from __future__ import annotations

from sqlalchemy import select

from reporting.models import Agency, AgencyKind, District, Facility, Region
from tests.conftest import bearer, report_body


def add_uncovered_facility(app, *, with_regional_agency: bool) -> None:
    """A new district with a facility and no guardianship agency of its own."""
    with app.extensions["besik.db"].writing() as session:
        region = session.scalars(select(Region).where(Region.code == "AST")).one()
        district = District(code="AST-NEW", name="New district", region=region)
        session.add(Facility(code="MH9", name="Maternity Hospital No. 9", district=district))
        if with_regional_agency:
            session.add(Agency(code="GRD-AST", name="Astana city guardianship",
                               kind=AgencyKind.GUARDIANSHIP, region=region, district=None))


def midwife_of_mh9(app, client) -> dict[str, str]:
    result = app.test_cli_runner().invoke(args=[
        "create-user", "--email", "midwife@mh9.kz", "--name", "Midwife", "--role", "reporter",
        "--facility", "MH9"], input="a long password\n")
    assert result.exit_code == 0, result.output
    return bearer(app, "midwife@mh9.kz")


def test_district_without_agency_falls_back_to_the_region_and_is_flagged(app, client):
    add_uncovered_facility(app, with_regional_agency=True)
    response = client.post("/api/v1/reports", json=report_body(),
                           headers=midwife_of_mh9(app, client))
    assert response.status_code == 201
    notices = response.get_json()["notices"]
    assert [(n["agency"]["code"], n["is_fallback"]) for n in notices] == [("GRD-AST", True)]


def test_report_is_stored_even_when_no_agency_exists(app, client):
    add_uncovered_facility(app, with_regional_agency=False)
    response = client.post("/api/v1/reports", json=report_body(),
                           headers=midwife_of_mh9(app, client))
    assert response.status_code == 201
    assert response.get_json()["notices"] == []
    assert response.get_json()["reference"].startswith("AST-")


def test_district_agency_wins_over_a_regional_one(app, client):
    add_uncovered_facility(app, with_regional_agency=True)
    data = client.post("/api/v1/reports", json=report_body(),
                       headers=bearer(app, "nurse@besik.example")).get_json()
    assert [(n["agency"]["code"], n["is_fallback"]) for n in data["notices"]] == [
        ("GRD-AST-YES", False)]


def test_police_of_the_whole_region_is_not_a_fallback(app, client):
    data = client.post("/api/v1/reports", json=report_body(risk_flags=["third_party_claim"]),
                       headers=bearer(app, "nurse2@besik.example")).get_json()
    codes = {n["agency"]["code"]: n["is_fallback"] for n in data["notices"]}
    assert codes == {"GRD-AST-SAR": False, "POL-AST": False}
    police = bearer(app, "police@besik.example")
    assert client.get(f"/api/v1/reports/{data['id']}", headers=police).status_code == 200
