"""A region's admin reads the audit entries of that region only: about its reports, their
notices and its people, and those its people wrote; the country's admins read them all."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import (
    OTHER_NURSE,
    OTHER_REGION,
    add_other_region,
    add_user,
    bearer,
    login,
    report_body,
)

ADMIN_AST, ADMIN_ALA = "audit.ast@besik.example", "audit.ala@besik.example"


def _file(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post("/api/v1/reports", json=report_body(), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def two_regions(app, client, nurse):
    add_other_region(app)
    add_user(app, ADMIN_AST, "admin", region="AST")
    add_user(app, ADMIN_ALA, "admin", region=OTHER_REGION)
    astana = _file(client, nurse)
    almaty = _file(client, bearer(app, OTHER_NURSE))
    officer = bearer(app, "officer@besik.example")  # Astana's guardianship officer
    assert client.post(f"/api/v1/reports/{astana['id']}/acknowledge",
                       headers=officer).status_code == 200
    runner = app.test_cli_runner()
    assert runner.invoke(args=["policy", "set", "acknowledge_notice", "20min"]).exit_code == 0
    return {"ast": f"report:{astana['id']}", "ala": f"report:{almaty['id']}"}


def test_each_regions_admin_reads_its_own_regions_entries(app, client, two_regions):
    ast, ala = two_regions["ast"], two_regions["ala"]
    # Every token first: making one is audited too.
    tokens = [bearer(app, email) for email in ("admin@besik.example", ADMIN_AST, ADMIN_ALA)]
    country, astana, almaty = ([(item["event"], item["subject"]) for item in client.get(
        "/api/v1/audit?limit=500", headers=headers).get_json()["items"]] for headers in tokens)
    assert {("report:filed", ast), ("report:filed", ala)} <= set(country)
    assert any(tag.startswith("policy:") for tag, _ in country)

    assert ("report:filed", ast) in astana and ("report:filed", ala) in almaty
    acknowledged = [entry for entry in country if entry[0] == "notice:acknowledged"]
    assert acknowledged and set(acknowledged) <= set(astana)  # Astana's officer's
    assert set(acknowledged).isdisjoint(almaty)
    for seen, other in ((astana, ala), (almaty, ast)):
        assert all(subject != other for _, subject in seen)
        assert not any(tag.startswith("policy:") for tag, _ in seen)  # the country's
    assert set(astana) < set(country) and set(almaty) < set(country)


def test_the_audit_page_shows_a_regions_admin_its_region_only(app, client, two_regions):
    page = login(client, ADMIN_ALA).get("/admin/audit?limit=500").get_data(as_text=True)
    assert two_regions["ala"] in page
    assert two_regions["ast"] not in page
