"""Real processes for the fault tests: gunicorn as the Procfile runs it, the worker, a
throwaway PostgreSQL cluster, and phones that file through the HTTP API and retry.

Nothing here is a stand-in: the servers are the real `gunicorn app:app` and
`flask --app app worker`, killed with real signals; the database is a real PostgreSQL cluster
of its own (never the shared server at 127.0.0.1:5432, which other runs use).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from glob import glob
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from reporting.config import Settings
from reporting.db import Database
from reporting.models import AuditEntry, Deadline, Notice, PushDelivery, Report

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def app_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment the Procfile's processes get, for `settings`' database and keys."""
    env = {**os.environ, "BESIK_ENV": "demo", "SECRET_KEY": settings.secret_key,
           "DATABASE_URL": settings.database_url,
           "VAPID_PRIVATE_KEY_FILE": str(settings.vapid_private_key_file),
           "AUDIT_KEY_FILE": str(settings.audit_key_file),
           "PUSH_ALLOWED_HOSTS": ",".join(settings.push_allowed_hosts)}
    env.update(extra)
    return env


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies, dead but unreaped, do not)."""
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class WebServer:
    """`gunicorn app:app` with sync workers, in a process group of its own (master and
    workers), so that one signal reaches them all, as a crash of the machine's web tier."""

    def __init__(self, env: dict[str, str], log_path: Path, *, workers: int = 2,
                 port: int | None = None) -> None:
        self.env, self.log_path, self.workers = env, log_path, workers
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 40) -> None:
        """Start and wait until /healthz answers 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "--worker-class", "sync", "--workers", str(self.workers),
                 "--timeout", "30", "--graceful-timeout", "3", "--no-control-socket",
                 "--bind", f"{HOST}:{self.port}", "app:app"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.process.returncode}:\n{self.log()}")
            if health(self.url) == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer /healthz within {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the master and every worker at once; wait until none is left."""
        self._signal_group(signal.SIGKILL, wait=10)

    def stop(self) -> None:
        """End it (SIGTERM, then SIGKILL), if still running."""
        if self.process is not None:
            self._signal_group(signal.SIGTERM, wait=10)
            self._signal_group(signal.SIGKILL, wait=10)

    def _signal_group(self, signum: int, wait: float) -> None:
        assert self.process is not None
        pgid = self.process.pid  # a new session: the master leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=wait)
        deadline = time.monotonic() + wait
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class WorkerProcess:
    """`flask --app app worker`, as the Procfile runs it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "flask"), "--app", "app", "worker"], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def health(base_url: str) -> int | None:
    """GET /healthz: its status, or None when nothing answers."""
    try:
        return request(base_url, "GET", "/healthz", timeout=3)[0]
    except (OSError, http.client.HTTPException):
        return None


def request(base_url: str, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 15
            ) -> tuple[int, dict[str, str], Any]:
    """One HTTP request on a fresh connection: (status, headers, JSON body or None)."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        parsed = json.loads(raw) if raw and "json" in answer_headers.get(
            "content-type", "") else None
        return response.status, answer_headers, parsed
    finally:
        conn.close()


def new_report() -> dict[str, Any]:
    """A minimal valid report, as a phone builds it once and resends unchanged."""
    discovered = datetime.now(UTC) - timedelta(minutes=10)
    return {"id": str(uuid.uuid4()), "circumstance": "written_refusal",
            "discovered_at": discovered.isoformat(), "child": {"sex": "female"}}


@dataclass
class Phones:
    """`threads` phones filing `per_thread` reports each through POST /api/v1/reports,
    each report resent with the same id and content until the server answers 200 or 201,
    as the phone's outbox does. Every answer and failure is tallied."""

    base_urls: list[str]
    token: str
    threads: int
    per_thread: int
    retry_pause: float = 0.05
    deadline_seconds: float = 90  # a bound for a very busy machine; ~20 s is usual
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    refusals: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def ids(self) -> set[str]:
        with self._lock:
            return set(self.accepted)

    def start(self) -> None:
        self._deadline = time.monotonic() + self.deadline_seconds
        for index in range(self.threads):
            thread = threading.Thread(target=self._file_all, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=max(1.0, self._deadline - time.monotonic() + 10))
        assert not any(t.is_alive() for t in self._threads), "phones still filing"

    def _file_all(self, index: int) -> None:
        base_url = self.base_urls[index % len(self.base_urls)]
        headers = {"Authorization": f"Bearer {self.token}"}
        for _ in range(self.per_thread):
            body = new_report()
            while time.monotonic() < self._deadline:
                try:
                    status, answer_headers, answer = request(
                        base_url, "POST", "/api/v1/reports", body, headers)
                # Refused, reset, timed out, or an answer cut off by a kill (IncompleteRead):
                # the phone's outbox keeps the report and sends it again.
                except (OSError, http.client.HTTPException) as exc:
                    self._tally(f"no answer ({type(exc).__name__})")
                    time.sleep(self.retry_pause)
                    continue
                self._tally(str(status))
                if status in (200, 201):
                    self._accept(body, answer)
                    break
                if status == 503:
                    with self._lock:
                        self.refusals.append((status, answer_headers, answer))
                elif status != 502:  # 502/503: a proxy's or our own "try again"
                    with self._lock:
                        self.unexpected.append(f"{status}: {answer}")
                time.sleep(self.retry_pause)
            else:
                with self._lock:
                    self.unexpected.append(f"gave up on {body['id']} at the deadline")
                return

    def _accept(self, body: dict[str, Any], answer: Any) -> None:
        with self._lock:
            if body["id"] in self.accepted:
                self.unexpected.append(f"{body['id']} accepted twice")
            self.accepted[body["id"]] = answer

    def _tally(self, what: str) -> None:
        with self._lock:
            self.answers[what] += 1


def assert_whole(database_url: str, ids: set[str], *, deliveries_per_notice: int) -> None:
    """Exactly the reports `ids`, each whole: a distinct reference, one notice (its agency's),
    the same deadlines as every other, one delivery per notice and subscribed device, and
    one `report:filed` and one `notice:created` audit entry; nothing else stored."""
    database = Database(database_url)
    try:
        with database.reading() as session:
            stored = dict(session.execute(select(Report.id, Report.reference)).all())
            assert set(stored) == ids, (
                f"{len(set(stored) - ids)} stored that no phone was told of, "
                f"{len(ids - set(stored))} told but not stored")
            assert len(set(stored.values())) == len(ids), "references repeat"
            notices = dict(session.execute(
                select(Notice.report_id, func.count()).group_by(Notice.report_id)).all())
            assert notices == {i: 1 for i in ids}, "a report without, or with extra, notices"
            deadlines = Counter(dict(session.execute(
                select(Deadline.report_id, func.count()).group_by(Deadline.report_id)).all()))
            assert set(deadlines) == ids and len(set(deadlines.values())) == 1, (
                f"deadline sets differ: {Counter(deadlines.values())}")
            per_notice = Counter(dict(session.execute(
                select(PushDelivery.notice_id, func.count())
                .group_by(PushDelivery.notice_id)).all()))
            assert sum(per_notice.values()) == len(ids) * deliveries_per_notice
            assert set(per_notice.values()) <= {deliveries_per_notice}, "duplicate deliveries"
            filed = Counter(session.scalars(select(AuditEntry.subject)
                                            .where(AuditEntry.tag == "report:filed")))
            assert filed == Counter({f"report:{i}": 1 for i in ids}), "report:filed entries"
            created = session.scalar(select(func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.tag == "notice:created"))
            assert created == len(ids), "notice:created entries"
    finally:
        database.dispose()


def audit_verify(env: dict[str, str]) -> str:
    """`flask audit-verify` as an administrator runs it: its output (exit 0 asserted)."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", "audit-verify"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


# --- a PostgreSQL cluster of the test's own -----------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise AssertionError(f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory on a port of its own, to stop and start
    at will. As root, it runs as the `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="besik-faults-pg-"))
        self.data = self.root / "data"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self.root, self._user)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              user=self._user, cwd=self.root, check=False)
        assert done.returncode == 0, f"{args[0]}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync", "--no-instructions")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={HOST} "
                   "-c fsync=off -c max_connections=60")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """Fast shutdown: sessions are cut off, open transactions roll back."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                  "stop")

    def create_database(self, name: str) -> None:
        self._run(_pg_bin("createdb"), "-h", HOST, "-p", str(self.port), "-U", "postgres",
                  name)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                          "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
