"""The Procfile's processes, live: their logs are JSON lines with nothing personal or secret
in them, and `web` binds the address HOST names.

One gunicorn (the Procfile's web line, bound to 127.0.0.2) and one worker (its worker
line) run against a copy of the seeded SQLite database; the test signs in with a password,
files a report full of personal details with a bearer token, opens an acknowledgement link
with its token in the query string, and lets the worker fail to deliver to a device whose
endpoint holds a secret path. Then every line both processes wrote is read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from reporting.db import Database
from reporting.demo import DEMO_PASSWORD
from reporting.digests import ensure_key as ensure_audit_key
from reporting.logs import FIELDS
from reporting.models import PushSubscription, User
from reporting.push import ensure_vapid_key
from reporting.tokens import create_token

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BOUND = "127.0.0.2"  # loopback, but not the default 127.0.0.1: only HOST can have chosen it

# Personal details and secrets that must never reach a log line.
MOTHER = {"iin": "851231300124", "full_name": "Zhanar Logtestova", "phone": "+77015550199",
          "address": "Kabanbay Batyr 99, flat 7", "birth_date": "1985-12-31",
          "citizenship": "KZ"}
CHILD_IIN = "250115601231"
NOTES = "left a note signed Gulnara Secretnote"
ACK_SECRET = "ackSECRET" + uuid.uuid4().hex
QUERY_SECRET = "querySECRET" + uuid.uuid4().hex
ENDPOINT_SECRET = "endpointSECRET" + uuid.uuid4().hex
REQUEST_ID = "lb-" + uuid.uuid4().hex


@dataclass
class Live:
    base: str
    port: int
    database: Database
    log: Path
    secrets: list[str]
    answers: dict[str, requests.Response]
    reachable: dict[str, bool]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((BOUND, 0))
        port: int = sock.getsockname()[1]
        return port


def procfile(kind: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return command.strip()
    raise AssertionError(f"no {kind} line in the Procfile")


def start(kind: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # as honcho runs a line: under a shell, in the repository
        return subprocess.Popen(["/bin/sh", "-c", f"exec {procfile(kind)}"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def answers_health(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def refuses_nothing(port: int) -> bool:
    """Whether something accepts connections on the default address at `port`."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if line.strip()]


def sign_in(base: str, email: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=10).text
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = browser.post(f"{base}/login?next=/inbox&hint={QUERY_SECRET}",
                            data={"email": email, "password": DEMO_PASSWORD,
                                  "csrf_token": csrf}, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    return browser


@pytest.fixture(scope="module")
def live(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    where = tmp_path_factory.mktemp("live")
    shutil.copyfile(sqlite_template, where / "besik.db")
    url = f"sqlite:///{where / 'besik.db'}"
    ensure_vapid_key(where / "vapid_private.pem")
    ensure_audit_key(where / "audit.key")
    database = Database(url)
    now = datetime.now(UTC)
    with database.writing() as session:
        nurse = session.scalars(select(User).where(User.email == "nurse@besik.example")).one()
        token = create_token(session, nurse, "logs", now)
        officer = session.scalars(select(User).where(User.email == "officer@besik.example")
                                  ).one()
        # Not on the allowed push services: the worker gives up on it, and says so.
        session.add(PushSubscription(user_id=officer.id, created_at=now,
                                     endpoint=f"https://push.invalid/send/{ENDPOINT_SECRET}",
                                     p256dh="BPkey", auth="authsecret"))
    port = free_port()
    base = f"http://{BOUND}:{port}"
    env = {**os.environ, "BESIK_ENV": "demo", "DATABASE_URL": url,
           "SECRET_KEY": "logs-test-" + "k" * 32, "HOST": BOUND, "PORT": str(port),
           "WEB_CONCURRENCY": "1", "WORKER_POLL_SECONDS": "0.2",
           "VAPID_PRIVATE_KEY_FILE": str(where / "vapid_private.pem"),
           "AUDIT_KEY_FILE": str(where / "audit.key"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    web_log, worker_log = where / "web.log", where / "worker.log"
    web = start("web", env, web_log)
    worker = None
    try:
        wait_for(lambda: answers_health(base) or web.poll() is not None, "gunicorn")
        assert web.poll() is None, web_log.read_text()[-3000:]
        answers = exercise(base, token)
        reachable = {"HOST": answers_health(base), "default": refuses_nothing(port)}
        worker = start("worker", env, worker_log)
        wait_for(lambda: any('"worker:pass"' in line for line in lines(worker_log)),
                 "the worker's pass")
    finally:
        for process in (worker, web):
            if process is not None:
                stop(process)
    log = where / "all.log"
    log.write_text(web_log.read_text() + worker_log.read_text())
    secrets = [token, DEMO_PASSWORD, ACK_SECRET, QUERY_SECRET, ENDPOINT_SECRET, CHILD_IIN,
               NOTES, *(MOTHER[k] for k in ("iin", "full_name", "phone", "address")),
               "Logtestova", "Secretnote", "Bearer", "besik_session", "nurse@besik.example",
               "officer@besik.example"]
    yield Live(base, port, database, log, secrets, answers, reachable)
    database.dispose()


def exercise(base: str, token: str) -> dict[str, requests.Response]:
    """What the logs must describe without repeating: a sign-in, a filing, a link."""
    bearer = {"Authorization": f"Bearer {token}"}
    officer = sign_in(base, "officer@besik.example")
    discovered = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    report = {"id": str(uuid.uuid4()), "circumstance": "written_refusal",
              "discovered_at": discovered, "notes": NOTES,
              "child": {"sex": "female", "iin": CHILD_IIN}, "mother": MOTHER}
    answers = {
        "filed": requests.post(f"{base}/api/v1/reports", json=report, timeout=30,
                               headers={**bearer, "X-Request-ID": REQUEST_ID}),
        "refused": requests.post(f"{base}/api/v1/reports", timeout=30, headers={
            **bearer, "X-Request-ID": "not a sane id\t" + MOTHER["full_name"]},
            json={**report, "id": str(uuid.uuid4()), "mother": {
                **MOTHER, "iin": "851231300125"}}),
        "listed": officer.get(f"{base}/api/v1/reports?state=pending", timeout=30),
        "link": requests.get(f"{base}/ack/{uuid.uuid4()}?t={ACK_SECRET}", timeout=30),
        "anonymous": requests.get(f"{base}/api/v1/me", timeout=30),
    }
    answers["signed_out"] = officer.post(f"{base}/logout", timeout=30, headers={
        "X-CSRFToken": officer.get(f"{base}/api/v1/csrf", timeout=30).json()["csrf_token"]})
    return answers


def parsed(live: Live) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(live.log)]


def test_every_line_both_processes_write_is_a_json_object_with_the_fields(live):
    found = lines(live.log)
    assert len(found) > 10
    for line in found:
        entry = json.loads(line)  # raises on a line that is not JSON
        assert isinstance(entry, dict), line
        assert set(FIELDS) <= set(entry), line
        assert entry["level"] in ("debug", "info", "warning", "error", "critical"), line
        datetime.fromisoformat(entry["time"])


def test_no_secret_or_personal_value_reaches_the_logs(live):
    assert live.answers["filed"].status_code == 201, live.answers["filed"].text[:500]
    assert live.answers["refused"].status_code == 422
    text = live.log.read_text()
    cookie = live.answers["listed"].request.headers["Cookie"]
    for secret in [*live.secrets, cookie.split("=", 1)[1][:40]]:
        assert secret not in text, secret


def test_each_request_has_one_line_with_its_id_user_status_and_duration(live):
    requests_logged = [e for e in parsed(live) if e["event"] == "http:request"]
    filed = [e for e in requests_logged if e["request_id"] == REQUEST_ID]
    assert len(filed) == 1
    (line,) = filed
    with live.database.reading() as session:
        ids = {row.email: row.id for row in session.execute(select(User.email, User.id))}
    assert (line["status"], line["user_id"], line["method"], line["route"]) == (
        201, ids["nurse@besik.example"], "POST", "/api/v1/reports")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    listed = [e for e in requests_logged if e["route"] == "/api/v1/reports"
              and e["method"] == "GET"]
    assert [(e["status"], e["user_id"]) for e in listed] == [
        (200, ids["officer@besik.example"])]
    link = next(e for e in requests_logged if e["route"] == "/ack/<notice_id>")
    assert "?" not in json.dumps(link)
    assert {e["status"] for e in requests_logged} >= {200, 201, 302, 401, 422}


def test_the_request_id_is_the_callers_when_sane_else_a_fresh_one_and_is_answered(live):
    assert live.answers["filed"].headers["X-Request-ID"] == REQUEST_ID
    fresh = live.answers["refused"].headers["X-Request-ID"]
    assert fresh != REQUEST_ID and "sane" not in fresh and len(fresh) == 32
    logged = {e["request_id"] for e in parsed(live) if e["event"] == "http:request"}
    assert {REQUEST_ID, fresh} <= logged


def test_the_worker_logs_its_passes_as_events(live):
    passes = [e for e in parsed(live) if e["event"] == "worker:pass"]
    assert passes and passes[0]["failed"] == 1 and passes[0]["duration_ms"] >= 0


def test_the_procfile_web_line_binds_the_address_host_names(live):
    # Nothing listens on the default address: gunicorn bound HOST's, and only it.
    assert live.reachable == {"HOST": True, "default": False}
