"""Correcting a report on a phone: the form, its errors and the timeline are accessible and
fit 360 px with thumb-sized targets, and the whole correction works with JavaScript off."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import bearer, report_body

from .conftest import LiveServer, assert_no_axe_violations, sign_in
from .test_pages_a11y import MEASURE_TARGETS, MIN_TARGET_PX, NURSE, TARGETS

CHECK_DIGIT = "check digit"  # in the English message for a wrong IIN checksum


def _filed(live_server: LiveServer) -> str:
    """A report of the nurse's facility, with a long name to wrap; its page's URL."""
    app = live_server.app
    body = report_body(mother={"full_name": "Айгүл Серікқызы Жұмабаева-Нұрсұлтанқызы"})
    response = app.test_client().post("/api/v1/reports", json=body,
                                      headers=bearer(app, NURSE))
    assert response.status_code == 201, response.get_json()
    return f"{live_server.url}/reports/{body['id']}"


def _fits_360(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width}px wide at a 360px viewport"


def _correct(page: Page, iin: str, reason: str) -> None:
    page.get_by_label("Child's IIN").fill(iin)
    page.get_by_role("group", name="Risk signs").get_by_label("Mother is a minor").check()
    page.get_by_label("Why is it corrected?").fill(reason)
    page.get_by_role("button", name="Save the correction").click()


def test_the_correction_form_and_the_timeline_are_accessible_on_a_phone(
        live_server: LiveServer, page: Page) -> None:
    url = _filed(live_server)
    sign_in(page, live_server.url, NURSE)
    page.goto(url)
    page.get_by_role("link", name="Correct").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Correct report")
    assert_no_axe_violations(page)
    _fits_360(page)
    result: dict[str, Any] = page.evaluate(MEASURE_TARGETS, [TARGETS, MIN_TARGET_PX])
    assert result["measured"] > 15, result
    assert not result["offenders"], result["offenders"]

    _correct(page, "250115601232", "")  # a wrong check digit, and no reason
    iin = page.get_by_label("Child's IIN")
    expect(iin).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#child-iin-error")).to_contain_text(CHECK_DIGIT)
    expect(page.get_by_label("Why is it corrected?")).to_have_attribute("aria-invalid", "true")
    assert_no_axe_violations(page)
    _fits_360(page)

    _correct(page, "250115600005", "The IIN was misread; she is 16")
    expect(page.get_by_role("status")).to_contain_text("Correction saved")
    expect(page.locator('li[data-event="amended"]')).to_contain_text(
        "Child's IIN: was —, now 250115600005")
    assert_no_axe_violations(page)
    _fits_360(page)


def test_a_nurse_corrects_a_report_with_javascript_off(live_server: LiveServer,
                                                       new_context: Any) -> None:
    url = _filed(live_server)
    context: BrowserContext = new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, live_server.url, NURSE)
    page.goto(url)
    page.get_by_role("link", name="Correct").click()
    _correct(page, "250115600005", "The IIN was misread; she is 16")

    expect(page.get_by_role("status")).to_contain_text("Correction saved")
    amended = page.locator('li[data-event="amended"]')
    expect(amended).to_contain_text("The IIN was misread; she is 16")
    expect(amended).to_contain_text("Child's IIN: was —, now 250115600005")
    expect(page.locator('li[data-event="notice_sent"]')).to_have_count(2)  # the police too
    assert live_server.count("POST", url.removeprefix(live_server.url) + "/correct") == 1
