"""Offline-first filing in a real Chromium: the outbox never loses and never duplicates."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import func, select

from reporting.models import Report
from tests.browser.conftest import LiveServer, assert_no_axe_violations, sign_in

REPORTS = "/api/v1/reports"


def stored(live_server: LiveServer) -> int:
    with live_server.app.extensions["besik.db"].writing() as session:
        return int(session.scalar(select(func.count()).select_from(Report)) or 0)


def open_form(page: Page, live_server: LiveServer, *, sign: bool = True) -> None:
    """Sign in, open the form and wait until the service worker controls it and the phone
    holds its reserved references."""
    if sign:
        sign_in(page, live_server.url, "nurse@besik.example")
    page.goto(f"{live_server.url}/reports/new")
    until(page, "() => navigator.serviceWorker.controller !== null")
    until(page, COUNT_REFS, at_least=5)


COUNT_REFS = """() => new Promise(resolve => {
    const open = indexedDB.open("besik");
    open.onsuccess = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains("refs")) { db.close(); return resolve(0); }
      const req = db.transaction("refs").objectStore("refs").count();
      req.onsuccess = () => { db.close(); resolve(req.result); };
    };
  })"""


def until(page: Page, script: str, *, at_least: int | bool = True,
          timeout_ms: int = 10_000) -> None:
    """Poll a page function (page.wait_for_function would eval, which the CSP forbids)."""
    for _ in range(timeout_ms // 100):
        if page.evaluate(script) >= at_least:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {script[:60]}")


def fill_and_send(page: Page, circumstance: str = "written_refusal") -> None:
    page.get_by_label("What happened").select_option(circumstance)
    page.get_by_label("Girl").check()
    page.get_by_role("button", name="Send report").click()


def outbox_items(page: Page):
    return page.locator("[data-outbox-id]")


def test_offline_reload_renders_the_form(live_server, page, context):
    open_form(page, live_server)
    context.set_offline(True)
    page.reload()
    expect(page.get_by_label("What happened")).to_be_visible()
    expect(page.get_by_role("button", name="Send report")).to_be_visible()


def test_report_filed_offline_shows_pending_and_its_reference_then_sent(live_server, page,
                                                                         context):
    open_form(page, live_server)
    context.set_offline(True)
    fill_and_send(page)
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "pending")
    expect(item).to_contain_text("Saved on this phone — not yet sent")
    reference = re.search(r"AST-\d{4}-\d{6}", item.inner_text()).group(0)
    expect(item).to_contain_text("Reporting deadline in")
    expect(item).to_contain_text("+7 7172 00 00 00")
    assert stored(live_server) == 0
    context.set_offline(False)
    expect(item).to_have_attribute("data-outbox-status", "sent", timeout=10_000)
    expect(item).to_contain_text(f"Delivered — reference {reference} at")
    assert stored(live_server) == 1
    assert live_server.count("POST", REPORTS, 201) == 1


def test_delivered_report_keeps_no_personal_data_on_the_phone(live_server, page):
    open_form(page, live_server)
    page.get_by_label("What happened").select_option("written_refusal")
    page.get_by_label("Girl").check()
    page.get_by_text("More details").click()
    page.get_by_label("Mother's full name").fill("Aliya Secret-Surname")
    page.get_by_label("Mother's IIN").fill("851231300124")
    page.get_by_role("button", name="Send report").click()
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    dump = page.evaluate("""() => new Promise(resolve => {
        const open = indexedDB.open("besik");
        open.onsuccess = () => {
          const req = open.result.transaction("outbox").objectStore("outbox").getAll();
          req.onsuccess = () => resolve(JSON.stringify(req.result));
        };
      })""")
    assert "Secret-Surname" not in dump and "851231300124" not in dump
    cached = page.evaluate("""async () => {
        let text = "";
        for (const name of await caches.keys()) {
          const cache = await caches.open(name);
          for (const request of await cache.keys()) {
            text += request.url + "\\n" + await (await cache.match(request)).text();
          }
        }
        return text;
      }""")
    assert "Secret-Surname" not in cached and "/reports/new" in cached
    assert not re.search(r"/reports/[0-9a-f-]{36}", cached)


def test_ten_reports_offline_survive_closing_the_browser(live_server, persistent_context,
                                                         tmp_path: Path):
    profile = tmp_path / "phone"
    context: BrowserContext = persistent_context(profile)
    page = context.pages[0] if context.pages else context.new_page()
    open_form(page, live_server)
    context.set_offline(True)
    for _ in range(10):
        fill_and_send(page)
    expect(page.locator('[data-outbox-status="pending"]')).to_have_count(10)
    context.close()
    assert stored(live_server) == 0

    context = persistent_context(profile)
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(f"{live_server.url}/reports/new")
    expect(page.locator('[data-outbox-status="sent"]')).to_have_count(10, timeout=20_000)
    assert stored(live_server) == 10
    assert live_server.count("POST", REPORTS, 201) == 10


def test_server_errors_are_retried_with_backoff_and_delivered_once(live_server, page):
    open_form(page, live_server)
    live_server.faults.fail_next("POST", REPORTS, status=500, times=2)
    fill_and_send(page)
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "sent", timeout=15_000)
    assert live_server.count("POST", REPORTS, 500) == 2
    assert live_server.count("POST", REPORTS, 201) == 1
    assert stored(live_server) == 1


def test_validation_error_keeps_the_report_and_shows_the_fields(live_server, page, context):
    open_form(page, live_server)
    page.get_by_text("More details").click()
    page.get_by_label("Mother's citizenship (country code)").fill("kz1")
    fill_and_send(page)
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "failed", timeout=10_000)
    expect(item).to_contain_text("Not accepted")
    expect(item).to_contain_text("Mother's citizenship (country code): ")  # the form's label
    page.reload()
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "failed")
    item.get_by_role("button", name="Correct").click()
    page.get_by_label("Mother's citizenship (country code)").fill("KZ")
    page.get_by_role("button", name="Send report").click()
    expect(outbox_items(page)).to_have_count(1)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    assert stored(live_server) == 1


def test_outbox_list_has_no_axe_violations(live_server, page, context):
    open_form(page, live_server)
    context.set_offline(True)
    fill_and_send(page)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "pending")
    assert_no_axe_violations(page)


def sync_registration(context: BrowserContext, page: Page) -> tuple[object, str]:
    """A CDP session and the service worker's registration id (to fire a sync event)."""
    cdp = context.new_cdp_session(page)
    found: list[str] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda event: found.extend(r["registrationId"] for r in event["registrations"]))
    cdp.send("ServiceWorker.enable")
    for _ in range(50):
        if found:
            break
        page.wait_for_timeout(100)
    assert found, "no service worker registration reported over CDP"
    return cdp, found[-1]


def test_sync_event_and_online_event_racing_deliver_each_report_once(live_server, page,
                                                                      context):
    open_form(page, live_server)
    cdp, registration = sync_registration(context, page)
    context.set_offline(True)
    for _ in range(3):
        fill_and_send(page)
    expect(page.locator('[data-outbox-status="pending"]')).to_have_count(3)
    context.set_offline(False)  # fires the page's online event ...
    for last_chance in (False, True):  # ... while the worker gets sync events
        cdp.send("ServiceWorker.dispatchSyncEvent", {
            "origin": live_server.url, "registrationId": registration,
            "tag": "besik-outbox", "lastChance": last_chance})
    expect(page.locator('[data-outbox-status="sent"]')).to_have_count(3, timeout=15_000)
    page.wait_for_timeout(500)
    assert stored(live_server) == 3
    assert live_server.count("POST", REPORTS, 201) == 3
    assert live_server.count("POST", REPORTS) == 3  # the lock kept both paths from resending


def test_expired_session_keeps_the_report_asks_to_sign_in_then_sends(live_server, page,
                                                                      context):
    open_form(page, live_server)
    context.set_offline(True)
    fill_and_send(page)
    context.clear_cookies()  # the session is gone, as after the idle timeout
    context.set_offline(False)
    item = outbox_items(page).first
    expect(item).to_contain_text("Your session ended. The report is safe on this phone.",
                                 timeout=10_000)
    expect(item).to_have_attribute("data-outbox-status", "pending")
    assert stored(live_server) == 0
    item.get_by_role("link", name="Sign in to send").click()
    page.get_by_label("Email", exact=True).fill("nurse@besik.example")
    page.get_by_label("Password", exact=True).fill("besik-demo-2026")
    page.get_by_role("button", name="Sign in").click()
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    assert stored(live_server) == 1


def test_unsent_report_waits_for_its_author_and_sign_out_asks_first(live_server, page):
    open_form(page, live_server)
    live_server.faults.fail_next("POST", REPORTS, status=503, times=1000)  # server is down
    fill_and_send(page)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "pending")
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    assert asked and "1 reports are saved on this phone" in asked[0]
    live_server.faults.clear()  # the server is back
    attempts = live_server.count("POST", REPORTS)
    sign_in(page, live_server.url, "nurse2@besik.example")  # a colleague on the same phone
    page.goto(f"{live_server.url}/reports/new")
    item = outbox_items(page).first
    expect(item).to_contain_text("Waiting for Aigerim Nurlanovna to sign in", timeout=10_000)
    page.wait_for_timeout(1000)
    assert stored(live_server) == 0
    assert live_server.count("POST", REPORTS) == attempts  # never sent in her session
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    sign_in(page, live_server.url, "nurse@besik.example")
    page.goto(f"{live_server.url}/reports/new")
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    with live_server.app.extensions["besik.db"].writing() as session:
        report = session.scalars(select(Report)).one()
        assert report.reporter.email == "nurse@besik.example"


def test_csrf_token_older_than_its_limit_is_refreshed_and_the_report_sent(live_server, page):
    open_form(page, live_server)
    live_server.app.config["WTF_CSRF_TIME_LIMIT"] = 1
    # The first send is held on the way for 2 s: its token arrives older than its limit.
    live_server.faults.delay_next("POST", REPORTS, seconds=2.2)
    fill_and_send(page)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=15_000)
    assert live_server.count("POST", REPORTS, 400) == 1
    assert live_server.count("POST", REPORTS, 201) == 1
    assert stored(live_server) == 1


def test_the_app_meets_chromiums_installability_criteria(live_server, persistent_context,
                                                         tmp_path: Path):
    context = persistent_context(tmp_path / "phone")  # not incognito: apps install there
    page = context.pages[0] if context.pages else context.new_page()
    open_form(page, live_server)
    cdp = context.new_cdp_session(page)
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert errors == []
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"].endswith("/manifest.webmanifest")
    assert not manifest.get("errors")


def test_phone_reports_its_outbox_and_shows_the_acknowledgement(live_server, page):
    from datetime import UTC, datetime

    from reporting.models import Notice, User

    open_form(page, live_server)
    for _ in range(50):  # the heartbeat goes out beside the reference top-up
        if live_server.count("POST", "/api/v1/devices/heartbeat", 204):
            break
        page.wait_for_timeout(100)
    beats = live_server.count("POST", "/api/v1/devices/heartbeat", 204)
    assert beats >= 1
    page.reload()  # within 5 minutes of a heartbeat the server received: no other
    page.wait_for_timeout(1500)
    assert live_server.count("POST", "/api/v1/devices/heartbeat", 204) == beats
    fill_and_send(page)
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "sent", timeout=10_000)
    with live_server.app.extensions["besik.db"].writing() as session:
        notice = session.scalars(select(Notice)).one()
        notice.acknowledged_at = datetime.now(UTC)
        notice.acknowledged_by_id = session.scalars(
            select(User.id).where(User.email == "officer@besik.example")).one()
        notice.ack_channel = "api"
    page.reload()
    expect(outbox_items(page).first).to_contain_text(
        re.compile(r"Acknowledged by Guardianship of Yesil district at \d\d:\d\d"),
        timeout=10_000)
    recent = page.locator("#recent [data-report-id]").first
    expect(recent).to_have_attribute("data-state", "open")
    expect(recent).to_contain_text("Acknowledged by Guardianship of Yesil district")


def test_repeat_visit_offline_serves_the_whole_shell_from_the_phone(live_server, page,
                                                                    context):
    open_form(page, live_server)
    # The first visit's own requests (the CSRF token) finish before the network goes: one
    # still in flight would otherwise be counted as the offline visit's.
    page.wait_for_load_state("networkidle")
    context.set_offline(True)
    served: list[tuple[str, bool]] = []
    failed: list[str] = []
    page.on("response", lambda r: served.append((r.url, r.from_service_worker)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    before = len(live_server.requests)
    page.reload()
    expect(page.get_by_role("button", name="Send report")).to_be_visible()
    page.wait_for_timeout(300)
    shell = [(url, sw) for url, sw in served if "/api/" not in url]
    assert shell and all(sw for _, sw in shell), shell
    assert any(url.endswith("/static/js/app.js") for url, _ in shell)
    assert not [url for url in failed if "/api/" not in url]
    assert len(live_server.requests) == before


def test_report_saved_while_a_sync_is_running_is_still_sent_at_once(live_server, page):
    open_form(page, live_server)
    live_server.faults.delay_next("GET", "/api/v1/reports", seconds=3)
    page.reload()  # the page-load sync now waits on its recent-reports request
    until(page, "() => navigator.serviceWorker.controller !== null")
    fill_and_send(page)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=6_000)
    assert stored(live_server) == 1
