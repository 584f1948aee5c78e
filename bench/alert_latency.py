"""Alert latency: from a filed report's commit to its Web Push arriving at the officer's browser.

For each database (SQLite in a scratch directory, PostgreSQL in a scratch database) it sets up
the database (init-db, seed-demo, vapid-keys, create-token), starts the real local push service
of tests/push_service.py in this process (it checks the VAPID JWT against the app's key and
decrypts the aes128gcm body, as a browser's push service and service worker would), gunicorn
(2 sync workers) and one push worker, or --workers N (`flask --app app worker`, woken by
commits, polling every WORKER_POLL_SECONDS as the fallback). It registers one push subscription for
officer@besik.example through the API and checks the pipeline end to end with one untimed test
push. Then it files reports as nurse@besik.example at a fixed rate, one connection at a time,
and records when each POST returned 201 (just after the report was committed) under the id of
its notice. Each push's latency is its arrival in the push service, after verification and
decryption, minus that time; it prints count, p50, p95, p99 and max in ms, duplicates (a notice
pushed twice), missing pushes and rejected requests. Then, with nothing to do, the worker's CPU
use (utime + stime from /proc/<pid>/stat) over --idle-seconds, as a share of one core. The
load average is printed with the numbers: on a shared machine they move with it.

Run from the repository root:

    .venv/bin/python bench/alert_latency.py                     # SQLite, then PostgreSQL
    .venv/bin/python bench/alert_latency.py --database sqlite --count 200 --rate 10
    .venv/bin/python bench/alert_latency.py --database postgresql \\
        --postgresql-url postgresql+psycopg://postgres@127.0.0.1:5432/besik_alert_bench

The PostgreSQL database is dropped and created afresh (only one whose name contains "bench"),
and dropped again at the end. Exit status: 0 after a measurement, even when a goal is missed
(MISS); 1 when a filing failed or a push is missing, duplicated or was rejected; 2 when the
set-up failed; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
NURSE = "nurse@besik.example"
OFFICER = "officer@besik.example"
GOAL_P95_MS = 200.0
GOAL_P99_MS = 400.0
GOAL_IDLE_CPU_PERCENT = 1.0
POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/besik_alert_bench"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from tests.push_service import PushRequest, PushService  # noqa: E402


class SetupError(RuntimeError):
    """The database, a process or the push pipeline could not be brought up."""


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run `flask --app app ARGS` in the repository; its stdout, or SetupError."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SetupError(f"flask {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def call(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """One request on a fresh connection (sync gunicorn closes it anyway): status, JSON."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw[:200]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session (Ctrl-C reaches only us; we stop it ourselves)."""
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started, SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def wait_healthy(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        with contextlib.suppress(OSError, http.client.HTTPException):
            if call(port, "GET", "/healthz", "")[0] == 200:
                return
        time.sleep(0.1)
    raise SetupError(f"gunicorn did not answer /healthz:\n{tail(log)}")


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def subscribe(stack: contextlib.ExitStack, push: PushService, port: int, token: str) -> None:
    """Register the officer's one device; removed again at the end (for a reused database)."""
    status, listed = call(port, "GET", "/api/v1/push/subscriptions", token)
    if status != 200 or listed["items"]:
        raise SetupError(f"{OFFICER} must start with no push subscriptions: {status} {listed}")
    subscription = push.new_subscription()
    status, body = call(port, "POST", "/api/v1/push/subscriptions", token,
                        subscription.as_json())
    if status != 201:
        raise SetupError(f"subscribing answered {status}: {body}")
    stack.callback(forget, port, token, subscription.endpoint)
    status, body = call(port, "POST", "/api/v1/push/test", token)
    if status != 202:
        raise SetupError(f"test push answered {status}: {body}")
    try:  # proves the worker is up, signs with the right key and reaches the push service
        push.wait_for(1, timeout=30)
    except AssertionError as exc:
        raise SetupError(f"the test push did not arrive: {exc}") from exc


def forget(port: int, token: str, endpoint: str) -> None:
    """Best effort: remove the run's subscription so a reused database starts clean."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        call(port, "DELETE", "/api/v1/push/subscriptions", token, {"endpoint": endpoint})


def file_reports(port: int, token: str, count: int, rate: float
                 ) -> tuple[dict[str, float], list[str]]:
    """File `count` reports at `rate`/s: {notice id: time.time() the 201 returned}, errors."""
    committed: dict[str, float] = {}
    errors: list[str] = []
    began = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, began + i / rate - time.monotonic()))
        body = {"id": str(uuid.uuid4()), "circumstance": "written_refusal",
                "discovered_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
                "child": {"sex": "female"}}
        try:
            status, answer = call(port, "POST", "/api/v1/reports", token, body)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        returned = time.time()
        if status != 201:
            errors.append(f"HTTP {status}: {answer}")
            continue
        committed[answer["notices"][0]["id"]] = returned
    return committed, errors


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def evaluate(committed: dict[str, float], requests: list[PushRequest], filing_errors: list[str]
             ) -> tuple[int, list[str]]:
    """Match pushes to filings, print the numbers; the exit status and the goals missed."""
    notices = [r for r in requests
               if r.accepted and r.payload and r.payload.get("type") != "test"]
    per_notice = Counter(str(r.payload["notice_id"]) for r in notices if r.payload)
    first: dict[str, float] = {}
    for request in notices:
        if request.payload:
            first.setdefault(str(request.payload["notice_id"]), request.arrived_at)
    latencies = [(first[n] - t) * 1000 for n, t in committed.items() if n in first]
    duplicates = sum(n - 1 for n in per_notice.values() if n > 1)
    missing = sum(1 for n in committed if n not in first)
    unexpected = sum(1 for n in first if n not in committed)
    rejected = [r for r in requests if not r.accepted]
    p95, p99 = percentile(latencies, 0.95), percentile(latencies, 0.99)
    print(f"filed {len(committed)}, filing errors {len(filing_errors)}")
    for error in filing_errors[:5]:
        print(f"  filing error: {error}")
    print(f"count {len(latencies)}  p50 {percentile(latencies, 0.50):.0f} ms  "
          f"p95 {p95:.0f} ms  p99 {p99:.0f} ms  max {max(latencies, default=float('nan')):.0f} ms")
    print(f"duplicates {duplicates}  missing {missing}  unexpected {unexpected}  "
          f"rejected {len(rejected)}")
    for request in rejected[:5]:
        print(f"  rejected: {request.status} {request.reason}")
    missed = [goal for goal, met in ((f"p95 <= {GOAL_P95_MS:.0f} ms", p95 <= GOAL_P95_MS),
                                     (f"p99 <= {GOAL_P99_MS:.0f} ms", p99 <= GOAL_P99_MS))
              if not met]
    failed = bool(filing_errors or duplicates or missing or unexpected or rejected)
    return (1 if failed else 0), missed


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """The share of one core a process used over `seconds` of wall time."""
    began_cpu, began = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - began_cpu) / (time.monotonic() - began)


def scratch_postgresql(stack: contextlib.ExitStack, database_url: str) -> None:
    """Drop and create the bench's PostgreSQL database; drop it again at the end."""
    url = make_url(database_url)
    name = url.database or ""
    if "bench" not in name:
        raise SetupError(f"refusing to drop database {name!r}: its name must contain 'bench'")
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT",
                           poolclass=NullPool)

    def drop() -> None:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    try:
        drop()
        with server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, no rights: say so, not a traceback
        raise SetupError(f"cannot create PostgreSQL database {name!r}: {exc}") from exc
    stack.callback(server.dispose)
    stack.callback(drop)


def run(args: argparse.Namespace, url: str | None) -> int:
    """One database: set up, measure, print; the exit status."""
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="besik-alert-")))
        kind = "sqlite" if url is None else "postgresql"
        if url is None:
            url = f"sqlite:///{scratch / 'bench.db'}"
        else:
            scratch_postgresql(stack, url)
        push = stack.enter_context(PushService())
        env = {**os.environ, "BESIK_ENV": "demo", "DATABASE_URL": url,
               "VAPID_PRIVATE_KEY_FILE": str(scratch / "vapid.pem"),
               "AUDIT_KEY_FILE": str(scratch / "audit.key"),
               "PUSH_ALLOWED_HOSTS": push.allowed_entry,
               "WORKER_POLL_SECONDS": str(args.poll_seconds)}
        flask_cli(env, "init-db")
        flask_cli(env, "seed-demo", "--if-empty")
        push.expect_vapid_public_key(flask_cli(env, "vapid-keys").strip().splitlines()[-1])
        nurse, officer = (flask_cli(env, "create-token", "--email", email).strip()
                          for email in (NURSE, OFFICER))
        port = free_port()
        server_log, worker_log = scratch / "gunicorn.log", scratch / "worker0.log"
        server = start([str(BIN / "gunicorn"), "--worker-class", "sync", "--workers", "2",
                        "--bind", f"{HOST}:{port}", "app:app"], env, server_log)
        stack.callback(stop, server)
        workers = []
        for number in range(args.workers):
            workers.append(start([str(BIN / "flask"), "--app", "app", "worker"], env,
                                 scratch / f"worker{number}.log"))
            stack.callback(stop, workers[-1])
        wait_healthy(server, port, server_log)
        try:
            subscribe(stack, push, port, officer)
        except SetupError as exc:
            raise SetupError(f"{exc}\nworker log:\n{tail(worker_log)}") from exc
        print(f"== {kind}: gunicorn 2 sync workers, {args.workers} push worker(s) (fallback "
              f"poll every "
              f"{args.poll_seconds:g} s); {args.count} reports at {args.rate:g}/s; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        committed, errors = file_reports(port, nurse, args.count, args.rate)
        with contextlib.suppress(AssertionError):  # a shortfall is reported below as missing
            push.wait_for(len(committed) + 1, timeout=args.timeout)
        time.sleep(max(2.0, 2 * args.poll_seconds))  # let a late duplicate show itself
        for number, worker in enumerate(workers):
            log = scratch / f"worker{number}.log"
            if worker.poll() is not None or "Traceback" in tail(log, 10**6):
                print(f"worker {number} trouble (exit {worker.poll()}):\n{tail(log)}",
                      file=sys.stderr)
        status, missed = evaluate(committed, push.requests, errors)
        cpu = idle_cpu_percent(workers[0].pid, args.idle_seconds)
        print(f"idle worker CPU {cpu:.2f} % of one core over {args.idle_seconds:g} s; "
              f"load average {os.getloadavg()[0]:.2f}")
        if cpu > GOAL_IDLE_CPU_PERCENT:
            missed.append(f"idle CPU <= {GOAL_IDLE_CPU_PERCENT:g} %")
        print(f"goals p95 <= {GOAL_P95_MS:.0f} ms, p99 <= {GOAL_P99_MS:.0f} ms, idle CPU <= "
              f"{GOAL_IDLE_CPU_PERCENT:g} %: "
              f"{'PASS' if not missed else 'MISS (' + ', '.join(missed) + ')'}")
        return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgresql-url", default=POSTGRESQL_URL,
                        help="the scratch PostgreSQL database (its name must contain 'bench')")
    parser.add_argument("--count", type=int, default=100, help="reports to file")
    parser.add_argument("--rate", type=float, default=5.0, help="reports per second")
    parser.add_argument("--workers", type=int, default=1,
                        help="push workers (several share the work; none may send twice)")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="WORKER_POLL_SECONDS of the push worker (the fallback poll)")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="how long to measure the idle worker's CPU use")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the pushes after the last filing")
    args = parser.parse_args()

    def terminated(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    signal.signal(signal.SIGTERM, terminated)
    urls = {"sqlite": [None], "postgresql": [args.postgresql_url],
            "both": [None, args.postgresql_url]}[args.database]
    status = 0
    try:
        for url in urls:
            status = max(status, run(args, url))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
