"""Page weight of the nurse's form: what must arrive before the first render, and all the JS.

Sets up a scratch SQLite database (init-db, seed-demo), starts gunicorn, signs in as the demo
nurse with `requests`, fetches `/reports/new`, finds its render-blocking resources
(`<link rel=stylesheet>` not limited to print, their `@import`s, and `<script src>` without
`defer`, `async` or `type=module`), fetches them and prints raw and gzip (level 6, what a
compressing proxy would send) bytes for each and for their total, against one TCP initial
congestion window (10 segments, 14 KB = 14,336 bytes). Separately it sums every JavaScript
file under `static/` against 30 KB (30,720 bytes) gzip.

Run from the repository root:

    .venv/bin/python bench/page_weight.py
    .venv/bin/python bench/page_weight.py --url http://127.0.0.1:8000   # a running `make run`

Exit status: 0 after a measurement, even when a goal is missed (MISS); 1 when a resource
could not be fetched; 2 when the set-up (database, server, sign-in) failed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
NURSE = "nurse@besik.example"
PASSWORD = "besik-demo-2026"  # the documented demo password
PAGE = "/reports/new"
GZIP_LEVEL = 6
GOAL_FIRST_RENDER = 14 * 1024  # 14,336 bytes: ~10 TCP segments, one initial window
GOAL_ALL_JS = 30 * 1024  # 30,720 bytes
TIMEOUT = 10
IMPORT_RE = re.compile(r"""@import\s+(?:url\(\s*)?["']?([^"')\s;]+)""", re.IGNORECASE)


class SetupError(RuntimeError):
    """The database, the server or the sign-in could not be brought up."""


@dataclass
class Weight:
    name: str
    raw: int
    gzipped: int


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))


def weigh(name: str, data: bytes) -> Weight:
    return Weight(name, len(data), gzip_size(data))


class PageParser(HTMLParser):
    """Collects the CSRF token and the render-blocking stylesheets and scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.csrf_token: str | None = None
        self.blocking: list[tuple[str, str]] = []  # (kind, href)
        self.deferred: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "input" and a.get("name") == "csrf_token" and self.csrf_token is None:
            self.csrf_token = a.get("value")
        elif tag == "link" and "stylesheet" in a.get("rel", "").lower().split():
            if "href" not in a:
                return
            media = a.get("media", "all").strip().lower() or "all"
            target = self.deferred if media == "print" or "disabled" in a else self.blocking
            target.append(("stylesheet", a["href"]))
        elif tag == "script" and a.get("src"):
            later = "defer" in a or "async" in a or a.get("type", "").lower() == "module"
            (self.deferred if later else self.blocking).append(("script", a["src"]))


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


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
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SetupError(f"gunicorn did not answer /healthz within {timeout:g} s")


def sign_in(http: requests.Session, base: str) -> None:
    page = http.get(f"{base}/login", timeout=TIMEOUT)
    token = parse(page.text).csrf_token
    if page.status_code != 200 or not token:
        raise SetupError(f"GET /login answered {page.status_code} without a CSRF token")
    done = http.post(f"{base}/login", timeout=TIMEOUT,
                     data={"email": NURSE, "password": PASSWORD, "csrf_token": token})
    if done.status_code != 200 or urlsplit(done.url).path == "/login":
        raise SetupError(f"sign-in as {NURSE} failed ({done.status_code}, {done.url})")


def fetch(http: requests.Session, url: str) -> bytes:
    # Identity encoding: the raw bytes; gzip is computed here at a known level.
    response = http.get(url, timeout=TIMEOUT, headers={"Accept-Encoding": "identity"})
    if response.status_code != 200:
        raise requests.HTTPError(f"GET {url} answered {response.status_code}")
    return response.content


def css_imports(css: bytes, base_url: str) -> list[str]:
    return [urljoin(base_url, m) for m in IMPORT_RE.findall(css.decode("utf-8", "replace"))]


def table(title: str, rows: list[Weight]) -> Weight:
    total = Weight("total", sum(r.raw for r in rows), sum(r.gzipped for r in rows))
    width = max([len(r.name) for r in rows] + [len(title), 5])
    print(f"{title:<{width}}  {'raw':>9}  {'gzip-' + str(GZIP_LEVEL):>9}")
    for row in [*rows, total]:
        print(f"{row.name:<{width}}  {row.raw:>9,}  {row.gzipped:>9,}")
    return total


def verdict(what: str, value: int, goal: int) -> None:
    status = "PASS" if value <= goal else "MISS"
    print(f"goal {what} <= {goal:,} bytes gzip: {status} ({value:,}, "
          f"{value / goal:.0%} of the budget)")


def measure(base: str) -> int:
    with requests.Session() as http:
        sign_in(http, base)
        page_url = f"{base}{PAGE}"
        html = fetch(http, page_url)
        parsed = parse(html.decode("utf-8", "replace"))
        rows = [weigh(f"{PAGE} (HTML)", html)]
        failures = 0
        queue = [(kind, urljoin(page_url, href)) for kind, href in parsed.blocking]
        seen: set[str] = set()
        while queue:
            kind, url = queue.pop(0)
            if url in seen:
                continue
            seen.add(url)
            try:
                body = fetch(http, url)
            except requests.RequestException as exc:
                print(f"could not fetch {url}: {exc}", file=sys.stderr)
                failures += 1
                continue
            rows.append(weigh(f"{urlsplit(url).path} [{kind}]", body))
            if kind == "stylesheet":
                queue.extend(("stylesheet @import", u) for u in css_imports(body, url))
    print(f"first render of {PAGE} (signed in as {NURSE}): the HTML and "
          f"{len(rows) - 1} render-blocking resource(s)")
    total = table("resource", rows)
    for kind, href in parsed.deferred:
        print(f"  not render-blocking, not counted: {href} [{kind}]")
    verdict(f"first render of {PAGE}", total.gzipped, GOAL_FIRST_RENDER)
    print()

    scripts = sorted(p for p in (REPO / "static").rglob("*")
                     if p.is_file() and p.suffix in (".js", ".mjs"))
    js_rows = [weigh(str(p.relative_to(REPO)), p.read_bytes()) for p in scripts]
    print(f"all JavaScript under static/ ({len(js_rows)} file(s))")
    js_total = table("file", js_rows)
    verdict("all JavaScript under static/", js_total.gzipped, GOAL_ALL_JS)
    return 1 if failures else 0


def serve_and_measure(scratch: Path) -> int:
    env = {**os.environ, "BESIK_ENV": "demo",
           "DATABASE_URL": f"sqlite:///{scratch / 'page_weight.db'}",
           "VAPID_PRIVATE_KEY_FILE": str(scratch / "vapid_private.pem")}
    env.pop("SECRET_KEY", None)
    flask_cli(env, "init-db")
    flask_cli(env, "seed-demo", "--if-empty")
    port = free_port()
    base = f"http://{HOST}:{port}"
    log_path = scratch / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "--workers", "1", "--bind", f"{HOST}:{port}", "app:app"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_healthy(server, base)
        except SetupError:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        return measure(base)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure this running server (demo data) instead of "
                                      "starting one, e.g. http://127.0.0.1:8000")
    args = parser.parse_args()
    try:
        if args.url:
            return measure(args.url.rstrip("/"))
        with tempfile.TemporaryDirectory(prefix="besik-weight-") as scratch:
            return serve_and_measure(Path(scratch))
    except (SetupError, requests.RequestException) as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
