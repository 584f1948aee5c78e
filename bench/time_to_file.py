"""Time to file: from opening the nurse's form to a delivered (or safely saved) report, in Chromium.

Sets up a scratch SQLite database (init-db, seed-demo), starts gunicorn (2 sync workers) and
Debian's Chromium as a 360x640 touch phone (the PHONE context of tests/browser/conftest.py),
signs in once as the demo nurse and waits until the service worker controls /reports/new and
the phone holds 5 reserved references. Then it times two scenarios, each run from the start
of `page.goto("/reports/new")` until the new outbox item (the first, newest, of one more item
than before) is visible in its end state; each run fills the three required fields (What
happened = written refusal, Girl, Discovered at left at its default) and clicks Send report:

- online: until the item is `data-outbox-status="sent"` and says "Delivered — reference AST-…";
- offline (`context.set_offline(True)`, the form comes from the service worker's cache): until
  it is "pending" and shows its reserved reference ("Reference AST-…").

Before every run, untimed, the phone is online and settled: nothing unsent, 5 references
reserved (so each offline run has one). The end state is awaited in the page with a
MutationObserver, not with `expect`, whose polling backs off to 500 ms steps. At the end the
scratch database must hold every report exactly once: one row in `reports` per run, with the
ids of the phone's delivered outbox items.

Run from the repository root:

    .venv/bin/python bench/time_to_file.py
    .venv/bin/python bench/time_to_file.py --runs 5

Exit status: 0 after a measurement, even when the goal is missed (MISS); 1 when a run did not
reach its end state or the exactly-once check failed; 2 when the set-up failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
NURSE = "nurse@besik.example"
PASSWORD = "besik-demo-2026"  # the documented demo password
FORM = "/reports/new"
RESERVE_TARGET = 5  # what the phone keeps reserved (static/js/outbox.js)
GOAL_MS = 1000.0
RUN_TIMEOUT_MS = 30_000
SETTLE_TIMEOUT_S = 20.0
# As in tests/browser/conftest.py.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True,
    "device_scale_factor": 2, "locale": "en-US", "timezone_id": "Asia/Almaty",
    "service_workers": "allow",
}
SENT_TEXT = r"Delivered — reference AST-\d{4}-\d{6}"
PENDING_TEXT = r"Reference AST-\d{4}-\d{6}"

# Call only once app.js has created the database (opening it first would create it empty).
PHONE_STATE = """() => new Promise((resolve, reject) => {
    const open = indexedDB.open("besik");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains("outbox") || !db.objectStoreNames.contains("refs")) {
        db.close();
        return resolve({items: 0, unsent: 0, refs: 0, sent_ids: []});
      }
      const tx = db.transaction(["outbox", "refs"]);
      const items = tx.objectStore("outbox").getAll();
      const refs = tx.objectStore("refs").count();
      tx.oncomplete = () => {
        db.close();
        resolve({items: items.result.length, refs: refs.result,
                 unsent: items.result.filter(i => i.status !== "sent" && i.status !== "failed")
                   .length,
                 sent_ids: items.result.filter(i => i.status === "sent").map(i => i.id)});
      };
    };
  })"""

# Resolves true as soon as the outbox list shows `count` items, the first (newest) visible, in
# `status` and matching `pattern`; false after `timeoutMs`.
NEW_ITEM = """({count, status, pattern, timeoutMs}) => new Promise(resolve => {
    const re = new RegExp(pattern);
    const done = () => {
      const items = document.querySelectorAll("#outbox [data-outbox-id]");
      const first = items[0];
      return items.length === count && first.dataset.outboxStatus === status
        && re.test(first.textContent) && first.getClientRects().length > 0;
    };
    if (done()) return resolve(true);
    const observer = new MutationObserver(() => { if (done()) finish(true); });
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(ok) { observer.disconnect(); clearTimeout(timer); resolve(ok); }
    observer.observe(document.documentElement,
                     {subtree: true, childList: true, attributes: true, characterData: true});
  })"""


class SetupError(RuntimeError):
    """The database, the server, the browser or the sign-in could not be brought up."""


class RunError(RuntimeError):
    """A run did not reach its end state, or the phone did not settle between runs."""


@dataclass
class PhoneState:
    items: int
    unsent: int
    refs: int
    sent_ids: list[str]


@dataclass
class Scenario:
    name: str
    offline: bool
    status: str
    pattern: str
    totals: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # goto returned (the "load" event)
    sends: list[float] = field(default_factory=list)  # fields filled, Send clicked


def flask_cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SetupError(f"flask {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(server: subprocess.Popen[bytes], base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SetupError(f"gunicorn exited {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SetupError(f"gunicorn did not answer /healthz within {timeout:g} s")


def phone_state(page: Page) -> PhoneState:
    return PhoneState(**page.evaluate(PHONE_STATE))


def until(page: Page, ready: Callable[[PhoneState], bool], what: str,
          timeout: float = SETTLE_TIMEOUT_S) -> PhoneState:
    """Poll the phone's IndexedDB (page.wait_for_function would eval: the CSP forbids it)."""
    deadline = time.monotonic() + timeout
    while True:
        state = phone_state(page)
        if ready(state):
            return state
        if time.monotonic() > deadline:
            raise RunError(f"no {what} within {timeout:g} s (phone: {state})")
        page.wait_for_timeout(100)


def settled(state: PhoneState) -> bool:
    return state.unsent == 0 and state.refs >= RESERVE_TARGET


def open_form(page: Page, base: str) -> None:
    """Sign in through /login, open the form, wait for the worker and the references."""
    page.goto(f"{base}/login")
    page.get_by_label("Email", exact=True).fill(NURSE)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in", exact=True).click()
    if urlsplit(page.url).path == "/login":
        raise SetupError(f"sign-in as {NURSE} failed: still on {page.url}")
    page.goto(f"{base}{FORM}")
    for _ in range(150):
        if page.evaluate("() => navigator.serviceWorker.controller !== null"):
            break
        page.wait_for_timeout(100)
    else:
        raise SetupError("the service worker did not take control of the form within 15 s")
    try:
        until(page, settled, f"{RESERVE_TARGET} reserved references")
    except RunError as exc:
        raise SetupError(str(exc)) from exc


def one_run(context: BrowserContext, page: Page, base: str, scenario: Scenario) -> None:
    before = until(page, settled, f"settled phone before {scenario.name} run")
    context.set_offline(scenario.offline)
    try:
        start = time.perf_counter()
        response = page.goto(f"{base}{FORM}")
        loaded = time.perf_counter()
        page.get_by_label("What happened").select_option("written_refusal")
        page.get_by_label("Girl").check()
        page.get_by_role("button", name="Send report").click()
        sent = time.perf_counter()
        reached = page.evaluate(NEW_ITEM, {"count": before.items + 1, "status": scenario.status,
                                           "pattern": scenario.pattern,
                                           "timeoutMs": RUN_TIMEOUT_MS})
        end = time.perf_counter()
    finally:
        context.set_offline(False)  # reconnect: the pending report is delivered, untimed
    if not reached:
        raise RunError(f"{scenario.name} run {len(scenario.totals) + 1}: no new "
                       f"{scenario.status!r} item within {RUN_TIMEOUT_MS} ms "
                       f"(phone: {phone_state(page)})")
    if scenario.offline and (response is None or not response.from_service_worker):
        raise RunError("offline, the form did not come from the service worker")
    scenario.totals.append((end - start) * 1000)
    scenario.loads.append((loaded - start) * 1000)
    scenario.sends.append((sent - loaded) * 1000)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of non-empty `values`."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def report(scenario: Scenario) -> None:
    t = scenario.totals
    median = statistics.median(t)
    waited = statistics.median(a - b - c for a, b, c in zip(t, scenario.loads, scenario.sends,
                                                            strict=True))
    print(f"{scenario.name}: runs {len(t)}, median {median:.0f} ms, "
          f"p90 {percentile(t, 0.9):.0f} ms, min {min(t):.0f} ms, max {max(t):.0f} ms")
    print(f"  medians of the steps: goto to load {statistics.median(scenario.loads):.0f} ms, "
          f"fill and send {statistics.median(scenario.sends):.0f} ms, "
          f"send to {scenario.status} {waited:.0f} ms")
    print(f"  goal median < {GOAL_MS:.0f} ms: {'PASS' if median < GOAL_MS else 'MISS'}")


def exactly_once(db: Path, phone: PhoneState, expected: int) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = [row[0] for row in conn.execute("SELECT id FROM reports")]
    ok = len(rows) == expected and sorted(rows) == sorted(phone.sent_ids)
    print(f"exactly once: {len(rows)} report rows on the server, {len(set(rows))} distinct, "
          f"{len(phone.sent_ids)} delivered on the phone, {expected} expected: "
          f"{'OK' if ok else 'FAILED'}")
    return ok


def measure(base: str, db: Path, runs: int) -> int:
    scenarios = [Scenario("online", False, "sent", SENT_TEXT),
                 Scenario("offline", True, "pending", PENDING_TEXT)]
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(headless=True, executable_path=CHROMIUM,
                                                 args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            raise SetupError(f"Chromium did not start: {exc}") from exc
        try:
            context = browser.new_context(**PHONE)
            page = context.new_page()
            try:
                open_form(page, base)
            except PlaywrightError as exc:
                raise SetupError(f"could not open the form: {exc}") from exc
            print(f"gunicorn sync workers 2, SQLite, Chromium {browser.version}, "
                  f"{runs} runs per scenario")
            try:
                for scenario in scenarios:
                    for _ in range(runs):
                        one_run(context, page, base, scenario)
                phone = until(page, settled, "delivery of every report")
            except (RunError, PlaywrightError) as exc:
                print(f"run failed: {exc}", file=sys.stderr)
                return 1
        finally:
            browser.close()
    for scenario in scenarios:
        report(scenario)
    return 0 if exactly_once(db, phone, runs * len(scenarios)) else 1


def serve_and_measure(scratch: Path, runs: int) -> int:
    db = scratch / "time_to_file.db"
    env = {**os.environ, "BESIK_ENV": "demo", "DATABASE_URL": f"sqlite:///{db}",
           "VAPID_PRIVATE_KEY_FILE": str(scratch / "vapid_private.pem")}
    env.pop("SECRET_KEY", None)
    flask_cli(env, "init-db")
    flask_cli(env, "seed-demo", "--if-empty")
    port = free_port()
    base = f"http://{HOST}:{port}"
    log_path = scratch / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "--worker-class", "sync", "--workers", "2",
             "--bind", f"{HOST}:{port}", "app:app"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_healthy(server, base)
        except SetupError:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        return measure(base, db, runs)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per scenario")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="besik-ttf-") as scratch:
            return serve_and_measure(Path(scratch), args.runs)
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
