"""The administrator's pages on a 360px phone: the dashboard, the export, the audit log,
places and people — accessible (axe), no sideways scrolling, forms with their errors."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .conftest import LiveServer, assert_no_axe_violations, sign_in

ADMIN = "admin@besik.example"


def _fits_a_phone(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width}px wide at a 360px viewport"


def test_the_dashboard_export_and_audit_pages_are_accessible(live_server: LiveServer,
                                                              page: Page) -> None:
    sign_in(page, live_server.url, ADMIN)
    for path, heading in (("/admin", "Compliance"), ("/admin/export",
                                                     "Export the compliance log"),
                          ("/admin/audit", "Audit log")):
        page.goto(f"{live_server.url}{path}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        assert_no_axe_violations(page)
        _fits_a_phone(page)


def test_places_a_district_added_and_an_error_shown(live_server: LiveServer,
                                                    page: Page) -> None:
    sign_in(page, live_server.url, ADMIN)
    page.goto(f"{live_server.url}/admin/places")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    form = page.locator("form", has=page.get_by_role("heading", name="Add a district"))
    form.get_by_label("Region").select_option("AST")
    form.get_by_label("Code").fill("bad code")
    form.get_by_label("Name").fill("Esil-2")
    form.get_by_role("button", name="Add").click()
    expect(page.locator("#district-code-error")).to_contain_text("Not in the expected format")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    form = page.locator("form", has=page.get_by_role("heading", name="Add a district"))
    form.get_by_label("Code").fill("AST-ESL")
    form.get_by_role("button", name="Add").click()
    expect(page.locator("#district-AST-ESL")).to_contain_text("Esil-2")
    page.get_by_role("link", name="AST-YES", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("AST-YES")
    assert_no_axe_violations(page)
    _fits_a_phone(page)


def test_people_a_nurse_added_with_a_one_time_password(live_server: LiveServer,
                                                       page: Page) -> None:
    sign_in(page, live_server.url, ADMIN)
    page.goto(f"{live_server.url}/admin/users")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    form = page.locator("form", has=page.get_by_role("heading", name="Add a person"))
    form.get_by_label("Email").fill("new.nurse@besik.example")
    form.get_by_label("Full name").fill("New Nurse")
    form.get_by_label("Role").select_option("reporter")
    form.get_by_role("button", name="Add").click()
    expect(page.locator("#user-facility-error")).to_contain_text("belongs to a facility")
    assert_no_axe_violations(page)
    form = page.locator("form", has=page.get_by_role("heading", name="Add a person"))
    form.get_by_label("Facility").select_option("PC1")
    form.get_by_role("button", name="Add").click()
    expect(page.locator("[data-one-time-password]")).to_have_text(
        re.compile(r"^[a-z2-9]{5}(-[a-z2-9]{5}){3}$"))
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    page.get_by_role("link", name="new.nurse@besik.example").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("New Nurse")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
