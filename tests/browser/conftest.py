"""Browser test infrastructure: a live server with fault injection, a phone-sized Chromium.

Browser tests run on SQLite only (a copy of the session's migrated and seeded template), in
Debian's Chromium (never `playwright install`). Nothing here is parametrised by database lane.

    def test_something(live_server, page):
        sign_in(page, live_server.url, "nurse@besik.example")
        live_server.faults.fail_next("POST", "/api/v1/reports", status=500, times=2)
        ...
        assert live_server.count("POST", "/api/v1/reports") == 3
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import BrowserContext, Page, Playwright, Worker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import get_input_stream

from reporting import create_app
from reporting.config import Settings
from reporting.demo import DEMO_PASSWORD
from reporting.push import ensure_vapid_key

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A small phone: what a nurse holds (context options shared by every browser in these tests).
PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 640},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
    "locale": "en-US",
    "timezone_id": "Asia/Almaty",
    "service_workers": "allow",
}
INJECTED_BODY = json.dumps({"error": {"code": "injected", "message": "injected"}}).encode()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# --- the server side ------------------------------------------------------------------


class Hit(NamedTuple):
    """One request as the server saw it (injected faults included)."""

    method: str
    path: str
    status: int


@dataclass
class _Rule:
    method: str
    path: str
    status: int
    remaining: int
    delay: float


@dataclass
class FaultInjector:
    """WSGI middleware: answers the next matching requests with an error, logs every request.

    `fail_next("POST", "/api/v1/reports", status=500, times=2)` makes the next two
    `POST /api/v1/reports` answer 500 with `{"error": {"code": "injected", ...}}` without
    reaching the app (their bodies are read and dropped). `path` is matched exactly against
    the request path (no query string); a trailing `*` matches a prefix. Rules are used in
    the order they were added. `delay` seconds are slept before answering (a slow network).
    """

    app: WSGIApp
    log: list[Hit] = field(default_factory=list)
    injected: list[Hit] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, method: str, path: str, status: int = 500, times: int = 1,
                  delay: float = 0.0) -> None:
        """Answer the next `times` requests matching `method` and `path` with `status`."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), path, status, times, delay))

    def delay_next(self, method: str, path: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` matching requests for `seconds`, then let the app answer."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), path, 0, times, seconds))

    def clear(self) -> None:
        """Forget every pending fault (the log stays)."""
        with self._lock:
            self._rules.clear()

    @property
    def pending(self) -> int:
        """How many injected answers are still to come."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def hits(self) -> list[Hit]:
        """A snapshot of the log."""
        with self._lock:
            return list(self.log)

    def _take(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and (
                    rule.path == path
                    or (rule.path.endswith("*") and path.startswith(rule.path[:-1]))
                ):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def _record(self, hit: Hit, injected: bool) -> None:
        with self._lock:
            self.log.append(hit)
            if injected:
                self.injected.append(hit)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO", "") or "/"
        rule = self._take(method, path)
        if rule is not None and rule.status == 0:  # a slow network, not a failure
            time.sleep(rule.delay)
            rule = None
        if rule is not None:
            get_input_stream(environ).read()  # keep the connection's framing intact
            if rule.delay:
                time.sleep(rule.delay)
            self._record(Hit(method, path, rule.status), injected=True)
            start_response(f"{rule.status} Injected", [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(INJECTED_BODY))),
                ("Cache-Control", "no-store"),
            ])
            return [INJECTED_BODY]

        seen: list[int] = []

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            seen.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            self._record(Hit(method, path, seen[-1] if seen else 500), injected=False)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the FaultInjector keeps one)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class LiveServer:
    """A running Besik on 127.0.0.1 (a secure context, so service workers register)."""

    url: str
    app: Flask
    faults: FaultInjector

    @property
    def requests(self) -> list[Hit]:
        """A snapshot of every request so far, in arrival order: (method, path, status)."""
        return self.faults.hits()

    def count(self, method: str, path: str, status: int | None = None) -> int:
        """How many `method path` requests were answered (by the app or a fault)."""
        return sum(1 for hit in self.requests
                   if hit.method == method.upper() and hit.path == path
                   and (status is None or hit.status == status))


@pytest.fixture
def live_server(sqlite_template: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """Besik served over real HTTP from a copy of the seeded SQLite template (demo mode)."""
    target = tmp_path / "besik.db"
    shutil.copyfile(sqlite_template, target)
    ensure_vapid_key(tmp_path / "vapid_private.pem")
    settings = Settings(database_url=f"sqlite:///{target}", secret_key="test-secret",
                        env="demo", instance_path=tmp_path,
                        vapid_private_key_file=tmp_path / "vapid_private.pem")
    app = create_app(settings)
    faults = FaultInjector(app)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, faults, threaded=True,
                                         request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="besik-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app, faults=faults)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["besik.db"].dispose()


# --- the browser side -------------------------------------------------------------------


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """No session-wide base URL (each test has its own live server's `.url`).

    Overrides pytest-playwright's fallback `base_url`, a session fixture defined as an
    instance method, which pytest 9 warns about (PytestRemovedIn10Warning: an error here).
    """
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, headless (unless --headed), no sandbox (we run as root)."""
    return {"headless": True, **browser_type_launch_args,
            "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """Every context is a 360x640 touch phone in Kazakhstan, with service workers."""
    return {**browser_context_args, **PHONE}


@pytest.fixture
def persistent_context(
    playwright: Playwright, browser_type_launch_args: dict[str, Any],
) -> Iterator[Callable[[Path], BrowserContext]]:
    """`launch(user_data_dir)`: a phone browser with a profile that survives a restart.

    Close the returned context to "quit the browser"; launch again with the same directory
    to reopen it (service worker, IndexedDB, cookies kept). Anything left open is closed at
    teardown.
    """
    opened: list[BrowserContext] = []

    def launch(user_data_dir: Path) -> BrowserContext:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), **browser_type_launch_args, **PHONE)
        opened.append(context)
        return context

    yield launch
    for context in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            context.close()


def sign_in(page: Page, base_url: str, email: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the real /login form and wait for the role's home page."""
    page.goto(f"{base_url}/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in", exact=True).click()
    assert urlsplit(page.url).path != "/login", f"sign-in as {email} failed: still on {page.url}"


def running_worker(context: BrowserContext, page: Page) -> Worker:
    """Besik's running service worker, as Playwright attaches to it (Chromium, over CDP).

    `running_worker(context, page).evaluate(...)` runs code inside the real worker: how tests
    reach its functions without any test-only hook in the worker's own code.
    """
    for _ in range(100):
        workers = [w for w in context.service_workers if w.url.endswith("/sw.js")]
        if workers:
            return workers[-1]
        page.wait_for_timeout(100)
    raise AssertionError("no running service worker")


_AXE = Axe()


def run_axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (bundled axe, runs offline)."""
    violations: list[dict[str, Any]] = _AXE.run(page).response["violations"]
    return violations


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One block per violation: id, impact, help, and each failing node's target."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v.get('impact')}): {v.get('help')} [{v.get('helpUrl', '')}]")
        for node in v.get("nodes", []):
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {node.get('target')}: {summary}")
    return "\n".join(lines)


def assert_no_axe_violations(page: Page) -> None:
    """Fail with every axe violation (id, impact, help, failing nodes) listed."""
    violations = run_axe(page)
    assert not violations, (
        f"{len(violations)} axe violation(s) on {page.url}:\n{format_violations(violations)}")
