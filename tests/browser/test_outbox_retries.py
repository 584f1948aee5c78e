"""The outbox's retries as the browser keeps them: a sync that leaves work rejects, the
backoff stored with a report holds across wake-ups (a tap overrides it), receipts leave the
phone after a week, refused reports can be discarded, and the form is read from itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, LiveServer, running_worker, sign_in
from tests.browser.test_offline import (
    REPORTS,
    fill_and_send,
    open_form,
    outbox_items,
    stored,
    sync_registration,
)
from tests.conftest import bearer

ALMATY = ZoneInfo("Asia/Almaty")
DAY_MS = 24 * 3600 * 1000

OUTBOX = """() => new Promise(resolve => {
    const open = indexedDB.open("besik");
    open.onsuccess = () => {
      const req = open.result.transaction("outbox").objectStore("outbox").getAll();
      req.onsuccess = () => { open.result.close(); resolve(req.result); };
    };
  })"""

# Change one stored report under the outbox's own lock, as the page and the worker do.
EDIT = """([id, changes]) => navigator.locks.request("besik-outbox", () => new Promise(resolve => {
    const open = indexedDB.open("besik");
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction("outbox", "readwrite");
      const objects = tx.objectStore("outbox");
      const found = objects.get(id);
      found.onsuccess = () => {
        const item = found.result;
        for (const [key, value] of Object.entries(changes)) {
          item[key] = typeof value === "string" && value.startsWith("now")
            ? Date.now() + Number(value.slice(3) || 0) : value;
        }
        objects.put(item);
      };
      tx.oncomplete = () => { db.close(); resolve(true); };
    };
  }))"""


# What the outbox says on its channel when a report changed: the page draws it again.
CHANGED = "() => new BroadcastChannel('besik-outbox').postMessage({type: 'changed'})"


def outbox(page: Page) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = page.evaluate(OUTBOX)
    return items


def edit(page: Page, report_id: str, **changes: Any) -> None:
    """Change fields of one stored report; a value "now+<ms>" is the phone's clock plus ms."""
    page.evaluate(EDIT, [report_id, changes])


def wait_for(condition, what: str, page: Page, timeout_ms: int = 10_000) -> None:
    for _ in range(timeout_ms // 100):
        if condition():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what}")


# Test instrumentation, installed from outside into the running worker: record how the promise
# each sync event hands to waitUntil settles (the worker itself has no hook for tests).
OBSERVE_SYNCS = """() => {
    self.__syncs = [];
    const original = ExtendableEvent.prototype.waitUntil;
    ExtendableEvent.prototype.waitUntil = function (promise) {
      if (this.type === "sync") {
        const record = {tag: this.tag, outcome: "running"};
        self.__syncs.push(record);
        Promise.resolve(promise).then(() => { record.outcome = "resolved"; },
                                      () => { record.outcome = "rejected"; });
      }
      return original.call(this, promise);
    };
  }"""


def test_sync_event_rejects_while_a_report_waits_for_a_retry(live_server, page, context):
    open_form(page, live_server)
    cdp, registration = sync_registration(context, page)
    worker = running_worker(context, page)
    worker.evaluate(OBSERVE_SYNCS)
    live_server.faults.fail_next("POST", REPORTS, status=503, times=1000)  # server is down
    context.set_offline(True)
    fill_and_send(page)
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "pending")
    report_id = outbox(page)[0]["id"]
    page.goto(f"{live_server.url}/offline")  # no page script left: only the worker sends
    context.set_offline(False)

    def dispatch() -> None:
        cdp.send("ServiceWorker.dispatchSyncEvent", {
            "origin": live_server.url, "registrationId": registration,
            "tag": "besik-outbox", "lastChance": False})

    def settled() -> list[str]:
        return [s["outcome"] for s in worker.evaluate("() => self.__syncs")
                if s["outcome"] != "running"]

    dispatch()
    wait_for(lambda: settled() and live_server.count("POST", REPORTS, 503) >= 1,
             "a sync event to settle after a 503", page)
    # Rejected, so the browser schedules the sync again: nothing else will wake the worker.
    assert set(settled()) == {"rejected"}, settled()
    item = next(i for i in outbox(page) if i["id"] == report_id)
    assert item["status"] == "pending" and item["next_attempt_at"] > 0

    live_server.faults.clear()  # the server is back: once the backoff is over, a sync resolves
    wait_for(lambda: page.evaluate("(at) => Date.now() > at", outbox(page)[0]["next_attempt_at"]),
             "the backoff to end", page)
    before = len(settled())
    dispatch()
    wait_for(lambda: len(settled()) > before, "the next sync event to settle", page)
    assert settled()[-1] == "resolved"
    assert outbox(page)[0]["status"] == "sent"
    assert live_server.count("POST", REPORTS, 201) == 1
    assert stored(live_server) == 1


def test_backoff_holds_across_wake_ups_and_a_tap_sends_at_once(live_server, page, context):
    open_form(page, live_server)
    live_server.faults.fail_next("POST", REPORTS, status=500, times=1000)
    fill_and_send(page)  # a tap: sent at once, and refused with a 500
    wait_for(lambda: live_server.count("POST", REPORTS, 500) >= 1, "the first attempt", page)
    item = outbox_items(page).first
    expect(item).to_have_attribute("data-outbox-status", "pending")
    report_id = item.get_attribute("data-outbox-id")
    # As after many failures: the next attempt is minutes away.
    edit(page, report_id, attempts=9, next_attempt_at="now+240000")
    page.evaluate(CHANGED)  # the page plans its own retry for that time
    attempts = live_server.count("POST", REPORTS)
    recent = live_server.count("GET", REPORTS)

    # Each wake-up ends by reading the recent reports: that is the sign it has run.
    for wake_up in (1, 2):  # two online events ...
        context.set_offline(True)
        context.set_offline(False)
        wait_for(lambda n=wake_up: live_server.count("GET", REPORTS) >= recent + n,
                 f"online event {wake_up}", page)
    page.reload()  # ... and a page load
    wait_for(lambda: live_server.count("GET", REPORTS) >= recent + 3, "the page load", page)
    assert live_server.count("POST", REPORTS) == attempts  # none resent before its time

    item = outbox_items(page).first
    expect(item).to_contain_text("Will retry at")
    item.get_by_role("button", name="Send now").click()  # the nurse's tap overrides it
    wait_for(lambda: live_server.count("POST", REPORTS) == attempts + 1, "the tapped attempt", page)
    assert next(i for i in outbox(page) if i["id"] == report_id)["attempts"] == 10

    live_server.faults.clear()
    outbox_items(page).first.get_by_role("button", name="Send now").click()
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    assert live_server.count("POST", REPORTS, 201) == 1


def test_receipts_leave_the_phone_after_seven_days(live_server, page):
    open_form(page, live_server)
    fill_and_send(page)
    fill_and_send(page)
    expect(page.locator('[data-outbox-status="sent"]')).to_have_count(2, timeout=10_000)
    older, newer = sorted(outbox(page), key=lambda i: i["saved_at"])
    edit(page, older["id"], sent_at=f"now-{8 * DAY_MS}")
    edit(page, newer["id"], sent_at=f"now-{6 * DAY_MS}")
    page.reload()  # a wake-up prunes
    expect(page.locator(f'[data-outbox-id="{newer["id"]}"]')).to_contain_text("Delivered")
    expect(page.locator(f'[data-outbox-id="{older["id"]}"]')).to_have_count(0, timeout=10_000)
    assert [i["id"] for i in outbox(page)] == [newer["id"]]  # pruned in the same pass: kept


def test_too_large_and_unreadable_reports_get_their_own_message(live_server, page):
    open_form(page, live_server)
    live_server.faults.fail_next("POST", REPORTS, status=413)
    fill_and_send(page)
    expect(page.locator('[data-outbox-status="failed"]')).to_have_count(1, timeout=10_000)
    live_server.faults.fail_next("POST", REPORTS, status=415)
    fill_and_send(page)
    expect(page.locator('[data-outbox-status="failed"]')).to_have_count(2, timeout=10_000)
    newest, oldest = outbox_items(page).nth(0), outbox_items(page).nth(1)
    expect(oldest).to_contain_text("Refused: the report is too large.")
    expect(newest).to_contain_text("Refused: the server could not read this report.")
    expect(page.locator("#outbox")).not_to_contain_text("may not file reports")
    for card in (newest, oldest):  # the nurse can take it back into the form, or give it up
        expect(card.get_by_role("button", name="Correct")).to_be_visible()
        expect(card.get_by_role("button", name="Discard")).to_be_visible()


def test_author_discards_a_refused_report_only_after_confirming(live_server, page, context):
    open_form(page, live_server)
    answers = [False, True]
    asked: list[str] = []

    def on_dialog(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", on_dialog)
    live_server.faults.fail_next("POST", REPORTS, status=403)
    fill_and_send(page)
    refused = page.locator('[data-outbox-status="failed"]')
    expect(refused).to_have_count(1, timeout=10_000)
    refused_id = refused.get_attribute("data-outbox-id")
    context.set_offline(True)
    fill_and_send(page)  # a report still waiting: it offers no Discard
    waiting = page.locator('[data-outbox-status="pending"]')
    expect(waiting).to_have_count(1)
    expect(waiting.get_by_role("button", name="Discard")).to_have_count(0)

    refused.get_by_role("button", name="Discard").click()  # ... and Cancel
    assert asked and "It was not delivered" in asked[0]
    context.set_offline(False)
    expect(page.locator('[data-outbox-status="sent"]')).to_have_count(1, timeout=10_000)
    assert refused_id in [i["id"] for i in outbox(page)]  # later, the refused one is still kept

    refused.get_by_role("button", name="Discard").click()  # ... and OK
    expect(page.locator(f'[data-outbox-id="{refused_id}"]')).to_have_count(0)
    wait_for(lambda: refused_id not in [i["id"] for i in outbox(page)], "the discard", page)
    assert [i["status"] for i in outbox(page)] == ["sent"]


def test_now_in_almaty_comes_from_the_zone_rules_not_a_fixed_offset(live_server, browser):
    # A phone set to another zone: nothing may depend on the browser's own zone.
    context = browser.new_context(**{**PHONE, "timezone_id": "America/Los_Angeles"})
    try:
        check_almaty_clock(context.new_page(), live_server)
    finally:
        context.close()


def check_almaty_clock(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server.url, "nurse@besik.example")
    page.goto(f"{live_server.url}/reports/new")
    found = page.evaluate("""() => ({
        offset2024: BesikPage.almatyOffset(new Date("2024-01-15T12:00:00Z")),
        offset2026: BesikPage.almatyOffset(new Date("2026-11-29T05:15:00Z")),
        wall2024: BesikPage.almatyInput(new Date("2024-01-15T12:00:30Z")),
        wall2026: BesikPage.almatyInput(new Date("2026-11-29T05:15:30Z")),
        midnight: BesikPage.almatyInput(new Date("2026-11-29T19:00:00Z")),
        iso2024: BesikPage.almatyIso("2024-01-15T18:00"),
        iso2026: BesikPage.almatyIso("2026-11-29T10:15"),
        before: Date.now(),
        field: document.getElementById("discovered_at").value,
        after: Date.now(),
      })""")
    # Almaty was UTC+6 until 2024-02-29T18:00Z, UTC+5 since: both come from the zone's data.
    assert (found["offset2024"], found["offset2026"]) == (360, 300)
    assert (found["wall2024"], found["wall2026"]) == ("2024-01-15T18:00", "2026-11-29T10:15")
    assert found["midnight"] == "2026-11-30T00:00"
    assert found["iso2024"] == "2024-01-15T18:00:00+06:00"
    assert found["iso2026"] == "2026-11-29T10:15:00+05:00"
    # "Discovered at" defaults to Almaty's wall clock now (the browser's clock is in LA).
    walls = {datetime.fromtimestamp(found[k] / 1000, ALMATY).strftime("%Y-%m-%dT%H:%M")
             for k in ("before", "after")}
    assert found["field"] in walls


def test_report_body_is_read_from_the_forms_own_fields(live_server, page):
    open_form(page, live_server)
    page.get_by_label("What happened").select_option("written_refusal")
    page.get_by_label("Girl").check()
    page.get_by_text("More details").click()
    page.get_by_label("Time of birth").fill("2025-06-01T08:30")
    page.get_by_label("Weight, grams").fill("3100")
    page.get_by_label("Mother's citizenship (country code)").fill("KZ")
    page.get_by_label("Payment for the child suspected").check()
    page.get_by_label("Mother's identity unknown").check()
    page.get_by_label("Notes").fill("  found at the side door  ")
    page.get_by_role("button", name="Send report").click()
    expect(outbox_items(page).first).to_have_attribute("data-outbox-status", "sent",
                                                      timeout=10_000)
    report_id = outbox_items(page).first.get_attribute("data-outbox-id")
    app = live_server.app
    report = app.test_client().get(f"/api/v1/reports/{report_id}",
                                   headers=bearer(app, "nurse@besik.example")).get_json()
    assert report["child"] == {"sex": "female", "born_at": "2025-06-01T03:30:00Z",
                               "weight_g": 3100}
    assert report["mother"] == {"citizenship": "KZ"}
    assert sorted(report["risk_flags"]) == ["identity_unknown", "payment_suspected"]
    assert report["notes"] == "found at the side door"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", report["discovered_at"])
    discovered = datetime.fromisoformat(report["discovered_at"])
    assert abs(datetime.now(UTC) - discovered) < timedelta(minutes=2)


def test_countdown_ticks_outside_the_live_region(live_server, page, context):
    open_form(page, live_server)
    context.set_offline(True)
    fill_and_send(page)
    card = outbox_items(page).first
    expect(card).to_contain_text("Reporting deadline in")
    report_id = card.get_attribute("data-outbox-id")
    countdown = card.locator(".countdown")
    assert countdown.evaluate("n => n.closest('[aria-live]') === null")
    live = card.locator("[aria-live]")
    expect(live).to_contain_text("Saved on this phone — not yet sent")
    live.evaluate("""n => {
        window.__announced = [];
        new MutationObserver(records => window.__announced.push(...records.map(r => r.type)))
          .observe(n, {subtree: true, childList: true, characterData: true, attributes: true});
      }""")
    # The clock moves (a deadline 3 hours away), and the list is drawn again.
    edit(page, report_id, deadline_at=f"now+{3 * 3600 * 1000 + 30_000}")
    page.evaluate(CHANGED)
    expect(countdown).to_contain_text("Reporting deadline in 3 h 0 min")
    assert page.evaluate("() => window.__announced") == []
    context.set_offline(False)  # a change of status is announced
    expect(live).to_contain_text("Delivered — reference", timeout=10_000)
    assert page.evaluate("() => window.__announced.length") > 0
