"""The deadline policy and calendar pages on a 360px phone: accessible (axe), no sideways
scrolling, the edit forms working with JavaScript's help nowhere needed."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import LiveServer, assert_no_axe_violations, sign_in

ADMIN = "admin@besik.example"


def _fits_a_phone(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width}px wide at a 360px viewport"


def test_the_policy_page_is_accessible_on_a_phone_with_a_form_open_and_an_error(
    live_server: LiveServer, page: Page,
) -> None:
    sign_in(page, live_server.url, ADMIN)
    page.goto(f"{live_server.url}/admin/policy")
    expect(page.get_by_role("heading", name="Deadline policy", level=1)).to_be_visible()
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    card = page.locator('[data-rule="examine_child"]')
    card.get_by_text("Change this rule").click()
    card.get_by_label("Duration").fill("soon")
    card.get_by_role("button", name="Save as a new policy version").click()
    expect(card.get_by_role("alert")).to_contain_text("Write a duration such as")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    card.get_by_label("Duration").fill("4wd")
    card.get_by_label("Verified by counsel").check()
    card.get_by_role("button", name="Save as a new policy version").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as policy version 2.")
    expect(card.locator("[data-duration]")).to_have_text("4wd")


def test_the_calendar_page_is_accessible_on_a_phone(live_server: LiveServer, page: Page) -> None:
    sign_in(page, live_server.url, ADMIN)
    page.goto(f"{live_server.url}/admin/calendar?year=2026")
    page.get_by_label("Date").fill("2026-12-18")
    page.get_by_label("a day off").check()
    page.get_by_label("Reason").fill("Decree No. 7")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Saved: 2026-12-18.")
    expect(page.locator('td[data-day="2026-12-18"]')).to_have_attribute("data-why", "override")
    expect(page.locator('td[data-day="2026-12-16"]')).to_have_attribute("title",
                                                                       "Independence Day")
    assert_no_axe_violations(page)
    _fits_a_phone(page)
    page.get_by_role("button", name="Remove 2026-12-18").click()
    expect(page.locator('td[data-day="2026-12-18"]')).to_have_attribute("data-why", "working")
