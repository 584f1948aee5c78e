"""The officer's phone: the service worker's real push and click handlers in Chromium."""

from __future__ import annotations

import json
from dataclasses import replace

from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select

from reporting.models import Notice
from reporting.push import ensure_vapid_key, public_key_b64
from reporting.worker import Worker
from tests.browser.conftest import LiveServer, assert_no_axe_violations, running_worker, sign_in
from tests.conftest import bearer, report_body
from tests.push_service import PushService


def pushed_message(live_server: LiveServer, tmp_path) -> dict:
    """File a report and let the real worker push it to a local push service: the message
    exactly as the officer's browser would decrypt it."""
    app = live_server.app
    key = tmp_path / "vapid.pem"
    ensure_vapid_key(key)
    with PushService() as service:
        service.expect_vapid_public_key(public_key_b64(str(key)))
        settings = replace(app.config["BESIK"], vapid_private_key_file=key,
                           push_allowed_hosts=(service.allowed_entry,))
        app.config["BESIK"] = settings
        client = app.test_client()
        subscription = service.new_subscription()
        assert client.post("/api/v1/push/subscriptions", json=subscription.as_json(),
                           headers=bearer(app, "officer@besik.example")).status_code == 201
        assert client.post("/api/v1/reports", json=report_body(),
                           headers=bearer(app, "nurse@besik.example")).status_code == 201
        Worker(app.extensions["besik.db"], settings, name="test").run_once()
        return service.wait_for(1)[0].payload


def controlled_inbox(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server.url, "officer@besik.example")
    page.goto(f"{live_server.url}/inbox")
    for _ in range(100):
        if page.evaluate("() => navigator.serviceWorker.controller !== null"):
            return
        page.wait_for_timeout(100)
    raise AssertionError("the service worker never took control of the inbox")


def registration_id(context: BrowserContext, page: Page):
    cdp = context.new_cdp_session(page)
    found: list[str] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda e: found.extend(r["registrationId"] for r in e["registrations"]))
    cdp.send("ServiceWorker.enable")
    for _ in range(50):
        if found:
            return cdp, found[-1]
        page.wait_for_timeout(100)
    raise AssertionError("no service worker registration")


NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications()).map(n => ({
    title: n.title, body: n.body, tag: n.tag, data: n.data,
    actions: n.actions.map(a => a.action)}));
}"""


def test_push_handler_shows_a_notification_with_acknowledge_and_open(live_server, page,
                                                                     context, tmp_path):
    message = pushed_message(live_server, tmp_path)
    context.grant_permissions(["notifications"], origin=live_server.url)
    controlled_inbox(page, live_server)
    cdp, registration = registration_id(context, page)
    cdp.send("ServiceWorker.deliverPushMessage", {
        "origin": live_server.url, "registrationId": registration,
        "data": json.dumps(message)})
    shown: list = []
    for _ in range(50):
        shown = page.evaluate(NOTIFICATIONS)
        if shown:
            break
        page.wait_for_timeout(100)
    assert len(shown) == 1
    notification = shown[0]
    assert notification["title"] == message["title"]
    assert notification["tag"] == message["notice_id"]
    assert notification["actions"] == ["acknowledge", "open"]
    assert notification["data"]["ack_token"] == message["ack_token"]
    # A newer message about the same notice replaces it rather than piling up.
    cdp.send("ServiceWorker.deliverPushMessage", {
        "origin": live_server.url, "registrationId": registration,
        "data": json.dumps(message | {"title": "again"})})
    page.wait_for_timeout(500)
    assert [n["title"] for n in page.evaluate(NOTIFICATIONS)] == ["again"]


def tap(page: Page, action: str, data: dict) -> dict:
    """Run the worker's own click logic, as a tap on the notification (or on one of its
    buttons) would: a headless browser cannot click a notification, and the worker keeps no
    hook for tests, so the function is called in the running worker through the protocol."""
    worker = running_worker(page.context, page)
    result: dict = worker.evaluate("([action, data]) => handleClick(action, data)",
                                   [action, data])
    return result


def test_acknowledge_button_logic_acknowledges_with_the_token(live_server, page, tmp_path):
    message = pushed_message(live_server, tmp_path)
    controlled_inbox(page, live_server)
    page.context.clear_cookies()  # the officer's session has expired: the token is enough
    assert tap(page, "acknowledge", message) == {"acknowledged": True}
    with live_server.app.extensions["besik.db"].writing() as session:
        notice = session.scalars(select(Notice).where(Notice.id == message["notice_id"])).one()
        assert notice.ack_channel == "notification"
        assert notice.acknowledged_by.email == "officer@besik.example"
    # A used token cannot acknowledge: the tap opens the one-tap page, which says so.
    with page.expect_navigation(url=f"**/ack/{message['notice_id']}?t=*"):
        assert tap(page, "acknowledge", message) == {"acknowledged": False}
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("alert")).to_contain_text("used, expired or not valid")


def test_tapping_the_notification_opens_the_report(live_server, page, tmp_path):
    message = pushed_message(live_server, tmp_path)
    controlled_inbox(page, live_server)
    with page.expect_navigation(url=f"**/reports/{message['report_id']}"):
        assert tap(page, "open", message) == {"opened": "report"}
    expect(page.get_by_role("heading", name=message["reference"])).to_be_visible()


def test_inbox_lists_the_notice_and_acknowledges_with_one_tap(live_server, page, tmp_path):
    message = pushed_message(live_server, tmp_path)
    controlled_inbox(page, live_server)
    item = page.locator(f'[data-notice-id="{message["notice_id"]}"]')
    expect(item).to_have_attribute("data-notice-state", "pending")
    countdown = item.locator("[data-countdown]")
    expect(countdown).to_contain_text("min")
    assert 0 < int(countdown.get_attribute("data-left") or "0") <= 30 * 60
    assert_no_axe_violations(page)
    item.get_by_role("button", name="Acknowledge").click()
    item = page.locator(f'[data-notice-id="{message["notice_id"]}"]')
    expect(item).to_have_attribute("data-notice-state", "acknowledged")
    expect(item).to_contain_text("Acknowledged by Dana Serikovna")


def test_inbox_says_so_when_the_server_cannot_send_notifications(live_server, page, context,
                                                                 tmp_path):
    app = live_server.app
    # No VAPID key on this server: GET /push/vapid-public-key answers 503 push_unavailable.
    app.config["BESIK"] = replace(app.config["BESIK"],
                                  vapid_private_key_file=tmp_path / "absent.pem")
    context.grant_permissions(["notifications"], origin=live_server.url)
    controlled_inbox(page, live_server)
    page.get_by_role("button", name="Turn on notifications").click()
    expect(page.locator("#notify-state")).to_have_text(
        "Notifications are not set up on this server yet.")
    assert live_server.count("GET", "/api/v1/push/vapid-public-key", 503) == 1
    assert live_server.count("POST", "/api/v1/push/subscriptions") == 0
    expect(page.get_by_role("button", name="Turn on notifications")).to_be_visible()
