"""Whose report it is, on a phone that nurses share: the author comes from the server's word on
the session (never from the cached page), only the author may correct or discard a refused
report, and a refused report with its personal data leaves the phone after 30 days, with a
warning first; a report not yet sent never does."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect
from sqlalchemy import select

from reporting.models import Report, User
from tests.browser.conftest import LiveServer, sign_in
from tests.browser.test_offline import (
    REPORTS,
    fill_and_send,
    open_form,
    outbox_items,
    stored,
    until,
)
from tests.browser.test_outbox_retries import DAY_MS, edit, outbox, wait_for

ALMATY = ZoneInfo("Asia/Almaty")
FIRST, COLLEAGUE = "nurse@besik.example", "nurse2@besik.example"
FIRST_NAME, FIRST_FACILITY = "Aigerim Nurlanovna", "Perinatal Centre No. 1"
COLLEAGUE_FACILITY = "City Polyclinic No. 4"

# Keep a copy of the app shell as the service worker cached it (a cache the worker leaves
# alone), and later put that copy back: the form page as it was rendered for someone else.
KEEP_SHELL = """async () => {
    const names = (await caches.keys()).filter(n => n.startsWith("besik-shell-"));
    const hit = await (await caches.open(names[0])).match("/reports/new");
    if (!hit) return false;
    await (await caches.open("test-kept-shell")).put("/reports/new", hit);
    return true;
  }"""
RESTORE_SHELL = """async () => {
    const kept = await (await caches.open("test-kept-shell")).match("/reports/new");
    for (const name of (await caches.keys()).filter(n => n.startsWith("besik-shell-"))) {
      await (await caches.open(name)).put("/reports/new", kept.clone());
    }
  }"""
# References the phone holds for one facility.
COUNT_REFS_OF = """(facility) => new Promise(resolve => {
    const open = indexedDB.open("besik");
    open.onsuccess = () => {
      const req = open.result.transaction("refs").objectStore("refs").getAll();
      req.onsuccess = () => {
        open.result.close();
        resolve(req.result.filter(r => r.facility === facility).length);
      };
    };
  })"""


def user_id(live_server: LiveServer, email: str) -> int:
    with live_server.app.extensions["besik.db"].writing() as session:
        return int(session.scalars(select(User.id).where(User.email == email)).one())


def reporters(live_server: LiveServer) -> dict[str, str]:
    """Each stored report's id and its reporter's email."""
    with live_server.app.extensions["besik.db"].writing() as session:
        return {r.id: r.reporter.email for r in session.scalars(select(Report))}


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def new_item(page: Page, known: set[str]) -> dict[str, Any]:
    """The one report in the outbox that is not among `known` ids."""
    fresh = [i for i in outbox(page) if i["id"] not in known]
    assert len(fresh) == 1, fresh
    return fresh[0]


def test_colleague_filing_offline_from_a_shell_cached_for_the_first_nurse_files_in_her_name(
        live_server, page, context):
    open_form(page, live_server)  # the first nurse: the worker caches the form rendered for her
    assert page.evaluate(KEEP_SHELL)
    live_server.faults.fail_next("POST", REPORTS, status=503, times=1000)  # server is down
    fill_and_send(page)
    wait_for(lambda: live_server.count("POST", REPORTS, 503) >= 1, "her first attempt", page)
    first_report = outbox(page)[0]["id"]
    page.on("dialog", lambda dialog: dialog.accept())  # "1 reports are saved ... Sign out?"
    sign_out(page)
    live_server.faults.clear()  # the server is back

    sign_in(page, live_server.url, COLLEAGUE)  # a colleague, on the same phone
    page.goto(f"{live_server.url}/reports/new")
    expect(outbox_items(page).first).to_contain_text(f"Waiting for {FIRST_NAME} to sign in",
                                                     timeout=10_000)
    until(page, f"() => ({COUNT_REFS_OF})('CP4')", at_least=5)  # her own references
    attempts = live_server.count("POST", REPORTS)

    # The network goes; the phone serves the form as it was cached for the first nurse.
    page.evaluate(RESTORE_SHELL)
    context.set_offline(True)
    page.reload()
    expect(page.get_by_text(FIRST_FACILITY)).to_be_visible()
    fill_and_send(page)
    expect(page.locator('[data-outbox-status="pending"]')).to_have_count(2)
    hers = new_item(page, {first_report})
    assert hers["author_id"] == user_id(live_server, COLLEAGUE)
    assert hers["reference"].startswith("AST-")  # one reserved in her own session
    card = page.locator(f'[data-outbox-id="{hers["id"]}"]')
    expect(card).to_contain_text(f"Reference {hers['reference']}")
    expect(card).not_to_contain_text("Waiting for")

    context.set_offline(False)
    expect(card).to_have_attribute("data-outbox-status", "sent", timeout=10_000)
    expect(card).to_contain_text(f"Delivered — reference {hers['reference']} at")
    # Sent once, in her session; the first nurse's report still waits for the first nurse.
    assert live_server.count("POST", REPORTS) == attempts + 1
    assert reporters(live_server) == {hers["id"]: COLLEAGUE}
    first_card = page.locator(f'[data-outbox-id="{first_report}"]')
    expect(first_card).to_have_attribute("data-outbox-status", "pending")
    expect(first_card).to_contain_text(f"Waiting for {FIRST_NAME} to sign in")

    sign_out(page)  # from the cached page, whose form holds the first session's CSRF token
    sign_in(page, live_server.url, FIRST)
    page.goto(f"{live_server.url}/reports/new")
    expect(page.locator(f'[data-outbox-id="{first_report}"]')).to_have_attribute(
        "data-outbox-status", "sent", timeout=10_000)
    assert reporters(live_server) == {hers["id"]: COLLEAGUE, first_report: FIRST}


def test_report_filed_before_the_phone_knows_who_signed_in_goes_in_the_signed_in_name(
        live_server, page, context):
    open_form(page, live_server)  # the form is cached as rendered for the first nurse
    sign_out(page)
    # The colleague signs in, but the network goes before the form comes from the server.
    page.goto(f"{live_server.url}/login?next=/me")
    page.get_by_label("Email", exact=True).fill(COLLEAGUE)
    page.get_by_label("Password", exact=True).fill("besik-demo-2026")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/me")
    context.set_offline(True)
    page.goto(f"{live_server.url}/reports/new")
    expect(page.get_by_text(FIRST_FACILITY)).to_be_visible()  # the shell cached for her
    fill_and_send(page)
    card = outbox_items(page).first
    expect(card).to_have_attribute("data-outbox-status", "pending")
    expect(card).to_contain_text("Waiting for sign-in")
    assert outbox(page)[0]["author_id"] is None  # nobody the server confirmed: no author

    context.set_offline(False)  # the first confirmation of a session claims it
    expect(card).to_have_attribute("data-outbox-status", "sent", timeout=10_000)
    item = outbox(page)[0]
    assert item["author_id"] == user_id(live_server, COLLEAGUE)
    assert reporters(live_server) == {item["id"]: COLLEAGUE}
    assert live_server.count("POST", REPORTS) == 1


def test_only_the_author_may_correct_or_discard_a_refused_report(live_server, page):
    open_form(page, live_server)
    page.get_by_text("More details").click()
    page.get_by_label("Mother's citizenship (country code)").fill("kz1")
    fill_and_send(page)
    refused = page.locator('[data-outbox-status="failed"]')
    expect(refused).to_have_count(1, timeout=10_000)
    expect(refused.get_by_role("button", name="Correct")).to_be_visible()
    expect(refused.get_by_role("button", name="Discard")).to_be_visible()
    sign_out(page)  # nothing unsent: no question asked

    sign_in(page, live_server.url, COLLEAGUE)
    page.goto(f"{live_server.url}/reports/new")
    fill_and_send(page)  # her own report, delivered: the page knows who she is by then
    expect(page.locator('[data-outbox-status="sent"]')).to_have_count(1, timeout=10_000)
    expect(refused).to_contain_text(f"Waiting for {FIRST_NAME} to sign in")
    expect(refused.get_by_role("button", name="Correct")).to_have_count(0)
    expect(refused.get_by_role("button", name="Discard")).to_have_count(0)

    sign_out(page)
    sign_in(page, live_server.url, FIRST)
    page.goto(f"{live_server.url}/reports/new")
    expect(refused.get_by_role("button", name="Correct")).to_be_visible(timeout=10_000)
    refused.get_by_role("button", name="Correct").click()
    expect(page.get_by_label("Mother's citizenship (country code)")).to_have_value("kz")


def almaty_date(ms: int) -> str:
    """A date as the page writes it in English (Intl, day numeric, month long)."""
    day = datetime.fromtimestamp(ms / 1000, ALMATY)
    return f"{day:%B} {day.day}, {day.year}"


def test_refused_reports_leave_the_phone_after_30_days_with_a_warning_unsent_ones_never(
        live_server, page, context):
    open_form(page, live_server)
    live_server.faults.fail_next("POST", REPORTS, status=422, times=3)
    for count in (1, 2, 3):
        fill_and_send(page)
        expect(page.locator('[data-outbox-status="failed"]')).to_have_count(count,
                                                                            timeout=10_000)
    context.set_offline(True)
    fill_and_send(page)
    expect(page.locator('[data-outbox-status="pending"]')).to_have_count(1)
    fresh, warned, old = (i["id"] for i in sorted(
        (i for i in outbox(page) if i["status"] == "failed"), key=lambda i: i["saved_at"]))
    waiting = next(i["id"] for i in outbox(page) if i["status"] == "pending")
    edit(page, fresh, failed_at=f"now-{22 * DAY_MS}")
    edit(page, warned, failed_at=f"now-{24 * DAY_MS}")
    edit(page, old, failed_at=f"now-{31 * DAY_MS}")
    edit(page, waiting, saved_at=f"now-{40 * DAY_MS}")  # unsent for 40 days: kept
    failed_at = next(i["failed_at"] for i in outbox(page) if i["id"] == warned)

    page.reload()  # a wake-up (offline) prunes
    wait_for(lambda: old not in [i["id"] for i in outbox(page)], "the pruning", page)
    # The same pass (one transaction) kept the others, the one unsent for 40 days too.
    assert sorted(i["id"] for i in outbox(page)) == sorted([fresh, warned, waiting])
    expect(page.locator(f'[data-outbox-id="{waiting}"]')).to_have_attribute(
        "data-outbox-status", "pending")
    expect(page.locator(f'[data-outbox-id="{warned}"]')).to_contain_text(
        f"This refused report will be deleted from this phone on "
        f"{almaty_date(failed_at + 30 * DAY_MS)}: correct it or call Guardianship of Yesil "
        f"district: +7 7172 00 00 00")
    expect(page.locator(f'[data-outbox-id="{old}"]')).to_have_count(0)
    expect(page.locator(f'[data-outbox-id="{fresh}"]')).to_contain_text("Not accepted")
    expect(page.locator(f'[data-outbox-id="{fresh}"]')).not_to_contain_text("will be deleted")
    assert stored(live_server) == 0
