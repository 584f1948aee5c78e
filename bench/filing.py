"""Filing throughput against the health check, over real HTTP to gunicorn.

Sets up a scratch database (init-db, seed-demo, create-token), starts what the Procfile
runs (gunicorn with sync workers, and the worker process, which also checkpoints SQLite's
WAL off the request path), then drives `POST /api/v1/reports` and `GET /healthz` at the
same time from this process and prints requests, req/s and p50/p99 latency for each,
their ratio and the goals. Latencies and rates cover the measured window only; errors (any
status other than 201 for filing and 200 for the health check, or a failed connection) are
counted over the whole run.

Run from the repository root:

    .venv/bin/python bench/filing.py                      # SQLite in a scratch directory
    .venv/bin/python bench/filing.py --workers 2 --seconds 20
    .venv/bin/python bench/filing.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/besik_bench

A PostgreSQL database must exist and hold no other data than an earlier run of this script
(its demo data is loaded only when the database is empty). Exit status: 0 after a measurement,
even when a goal is missed; 1 when any request failed; 2 when the set-up failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
GOAL_RATIO = 0.30
GOAL_FILING_P99_MS = 100.0
MAX_ERRORS_SHOWN = 5


class SetupError(RuntimeError):
    """The database or the server could not be brought up."""


@dataclass
class Tally:
    """What one kind of request did inside the measured window (shared by its threads)."""

    name: str
    expected: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float) -> None:
        with self.lock:
            self.latencies.append(latency)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.samples) < MAX_ERRORS_SHOWN:
                self.samples.append(what)


Request = Callable[[], tuple[str, str, bytes | None, dict[str, str]]]


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run `flask --app app ARGS` in the repository; its stdout, or SetupError."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = done.stderr[-2000:]
        raise SetupError(f"flask {' '.join(args)} exited {done.returncode}:\n{tail}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(server: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SetupError(f"gunicorn exited {server.returncode} before answering")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SetupError(f"/healthz did not answer 200 within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def filing_request(token: str) -> Request:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def make() -> tuple[str, str, bytes | None, dict[str, str]]:
        discovered = datetime.now(UTC) - timedelta(minutes=10)
        body = {"id": str(uuid.uuid4()), "circumstance": "written_refusal",
                "discovered_at": discovered.isoformat(), "child": {"sex": "female"}}
        return "POST", "/api/v1/reports", json.dumps(body).encode(), headers

    return make


def healthz_request() -> tuple[str, str, bytes | None, dict[str, str]]:
    return "GET", "/healthz", None, {}


def drive(port: int, make: Request, tally: Tally, measure_from: float, stop: float) -> None:
    """One connection: request after request until `stop`; only the window is recorded."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    while (began := time.monotonic()) < stop:
        method, path, body, headers = make()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            conn.close()  # reconnects on the next request
            continue
        ended = time.monotonic()
        if status != tally.expected:
            tally.error(f"HTTP {status}: {payload[:200]!r}")
        elif began >= measure_from and ended <= stop:
            tally.add(ended - began)
    conn.close()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of non-empty `values`."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def measure(port: int, token: str, threads: int, warmup: float, seconds: float
            ) -> tuple[Tally, Tally]:
    filing, health = Tally("filing", 201), Tally("healthz", 200)
    measure_from = time.monotonic() + warmup
    stop = measure_from + seconds
    workers = [threading.Thread(target=drive, args=(port, make, tally, measure_from, stop))
               for make, tally in ((filing_request(token), filing), (healthz_request, health))
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return filing, health


def report(filing: Tally, health: Tally, seconds: float) -> None:
    print(f"{'':8} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    rates = {}
    for tally in (filing, health):
        count = len(tally.latencies)
        rates[tally.name] = count / seconds
        p50, p99 = ((percentile(tally.latencies, q) * 1000 for q in (0.50, 0.99)) if count
                    else (float("nan"), float("nan")))
        print(f"{tally.name:8} {count:9d} {rates[tally.name]:9.1f} {p50:8.1f} {p99:8.1f} "
              f"{tally.errors:7d}")
        for sample in tally.samples:
            print(f"  {tally.name} error: {sample}")
    ratio = rates["filing"] / rates["healthz"] if rates["healthz"] else float("nan")
    filing_p99 = percentile(filing.latencies, 0.99) * 1000 if filing.latencies else float("inf")
    print(f"ratio filing/healthz req/s: {ratio:.3f}")
    print(f"goal ratio >= {GOAL_RATIO:.2f}: {'PASS' if ratio >= GOAL_RATIO else 'MISS'}")
    print(f"goal filing p99 < {GOAL_FILING_P99_MS:.0f} ms: "
          f"{'PASS' if filing_p99 < GOAL_FILING_P99_MS else 'MISS'}")


def run(args: argparse.Namespace, scratch: Path) -> int:
    url = args.database_url or f"sqlite:///{scratch / 'bench.db'}"
    env = {**os.environ, "BESIK_ENV": "demo", "DATABASE_URL": url,
           "VAPID_PRIVATE_KEY_FILE": str(scratch / "vapid_private.pem")}
    flask_cli(env, "init-db")
    flask_cli(env, "seed-demo", "--if-empty")
    token = flask_cli(env, "create-token", "--email", "nurse@besik.example").strip()
    port = free_port()
    log_path = scratch / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "--worker-class", "sync", "--workers", str(args.workers),
             "--bind", f"{HOST}:{port}", "app:app"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker = subprocess.Popen([str(BIN / "flask"), "--app", "app", "worker"],
                                  cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_healthy(server, port)
        except SetupError:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        kind = url.split(":", 1)[0].split("+", 1)[0]
        print(f"database {kind}, gunicorn sync workers {args.workers}, "
              f"{args.threads} filing + {args.threads} healthz connections, "
              f"{args.warmup:g} s warm-up, {args.seconds:g} s measured")
        filing, health = measure(port, token, args.threads, args.warmup, args.seconds)
    finally:
        for process in (server, worker):
            stop_process(process)
    report(filing, health, args.seconds)
    return 1 if filing.errors or health.errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int,
                        default=int(os.environ.get("WEB_CONCURRENCY", "3")),
                        help="gunicorn sync workers (default: as the Procfile, "
                             "$WEB_CONCURRENCY or 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded lead-in")
    parser.add_argument("--threads", type=int, default=8,
                        help="connections per kind (filing, healthz)")
    parser.add_argument("--database-url", help="default: SQLite in the scratch directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="besik-bench-") as scratch:
        try:
            return run(args, Path(scratch))
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
