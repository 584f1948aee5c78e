"""The pages a nurse uses, in a real phone-sized Chromium: accessible, thumb-sized, no JS needed."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from reporting.models import Report, User

from .conftest import LiveServer, assert_no_axe_violations, sign_in

NURSE = "nurse@besik.example"
RECEIPT = re.compile(r"Delivered — reference AST-\d{4}-\d{6}")
MIN_TARGET_PX = 44

# Everything a finger can hit; radios and checkboxes are measured by their label.choice.
TARGETS = ('a[href], button, input:not([type="hidden"]), select, textarea, summary, '
           'label.choice')
MEASURE_TARGETS = """
([selector, minimum]) => {
  const visible = (el) => {
    const style = getComputedStyle(el);
    return el.getClientRects().length > 0 && style.visibility !== "hidden";
  };
  const describe = (el) => {
    const bits = [el.tagName.toLowerCase()];
    if (el.id) bits.push("#" + el.id);
    if (el.getAttribute("name")) bits.push(`[name="${el.getAttribute("name")}"]`);
    if (el.classList.length) bits.push("." + [...el.classList].join("."));
    const text = (el.innerText || el.value || "").trim().replace(/\\s+/g, " ").slice(0, 40);
    return bits.join("") + (text ? ` "${text}"` : "");
  };
  const offenders = new Set();
  let measured = 0;
  for (const el of document.querySelectorAll(selector)) {
    let target = el;
    if (el.matches('input[type="radio"], input[type="checkbox"]')) {
      target = el.closest("label.choice");
      if (!target) {
        offenders.add(`${describe(el)}: radio/checkbox outside a label.choice`);
        continue;
      }
    }
    if (!visible(target)) continue;
    measured += 1;
    const height = target.getBoundingClientRect().height;
    if (height < minimum) offenders.add(`${describe(target)}: ${height.toFixed(1)}px high`);
  }
  return {measured, offenders: [...offenders]};
}
"""


def _open_form(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server.url, NURSE)
    if not page.url.endswith("/reports/new"):
        page.goto(f"{live_server.url}/reports/new")
    expect(page.get_by_role("button", name="Send report")).to_be_visible()


def _fill_minimal_report(page: Page) -> None:
    """The three required facts; "Discovered at" keeps its default (now)."""
    page.get_by_label("What happened").select_option(label="Mother signed a refusal statement")
    expect(page.get_by_label("Discovered at")).not_to_have_value("")
    page.get_by_role("group", name="Child's sex").get_by_label("Girl").check()
    page.get_by_role("button", name="Send report").click()


def _open_details(page: Page) -> None:
    page.get_by_text("More details", exact=True).click()
    expect(page.locator("details")).to_have_attribute("open", "")


def test_login_page_has_no_axe_violations(live_server: LiveServer, page: Page) -> None:
    page.goto(f"{live_server.url}/login")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert_no_axe_violations(page)


def test_report_form_has_no_axe_violations(live_server: LiveServer, page: Page) -> None:
    _open_form(page, live_server)
    assert_no_axe_violations(page)
    _open_details(page)
    assert_no_axe_violations(page)


def test_receipt_after_filing_through_the_form_has_no_axe_violations(
    live_server: LiveServer, page: Page,
) -> None:
    _open_form(page, live_server)
    _fill_minimal_report(page)
    expect(page.get_by_text(RECEIPT)).to_be_visible()
    assert_no_axe_violations(page)


def test_report_form_fits_a_360px_phone_without_horizontal_scroll(
    live_server: LiveServer, page: Page,
) -> None:
    _open_form(page, live_server)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"/reports/new is {width}px wide at a 360px viewport"
    _open_details(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"/reports/new with More details open is {width}px wide"


def test_every_touch_target_on_the_form_is_at_least_44px_high(
    live_server: LiveServer, page: Page,
) -> None:
    _open_form(page, live_server)
    _open_details(page)  # the optional fields and risk-sign checkboxes count too
    result: dict[str, Any] = page.evaluate(MEASURE_TARGETS, [TARGETS, MIN_TARGET_PX])
    assert result["measured"] > 20, f"too few targets found: {result}"
    assert not result["offenders"], (
        f"touch targets under {MIN_TARGET_PX}px high on /reports/new:\n  "
        + "\n  ".join(result["offenders"]))


def test_report_filed_with_javascript_disabled_lands(
    live_server: LiveServer, new_context: Any,
) -> None:
    context: BrowserContext = new_context(java_script_enabled=False)
    page = context.new_page()
    _open_form(page, live_server)
    _fill_minimal_report(page)
    receipt = page.get_by_text(RECEIPT)
    expect(receipt).to_be_visible()
    reference = re.search(r"AST-\d{4}-\d{6}", receipt.inner_text())
    assert reference is not None

    assert live_server.count("POST", "/reports/new") == 1, live_server.requests
    database = live_server.app.extensions["besik.db"]
    with database.new_reader() as session:
        report = session.scalars(select(Report).where(Report.reference == reference[0])).one()
        reporter = session.get(User, report.reporter_id)
        assert reporter is not None and reporter.email == NURSE
        assert (report.circumstance, report.child_sex) == ("written_refusal", "female")
