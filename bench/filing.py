"""Filing against the health check, each measured alone, over real HTTP to gunicorn.

For each database (SQLite in a scratch directory, PostgreSQL in a scratch database) it
runs init-db, seed-demo and create-token, then starts exactly what the Procfile runs (its
`web` line: gunicorn with sync workers and the request log; its `worker` line), and
alternates the two kinds of request, each alone on the server: `POST /api/v1/reports`
for a while, then `GET /healthz`, then filing again, and so on (A B A B, `--rounds`
times), each phase with `--connections` connections after an unrecorded warm-up. Running
both at once would hide filing's cost: sync workers queue both kinds together, so each
kind's rate follows the other's.

It prints, per database side by side, each kind's requests, req/s, p50/p95/p99 latency
and errors over all its rounds, the rate of every round (to show the noise), the isolated
ratio filing/healthz and the goals, and the load average of the machine before and after
(other processes on the same cores move every figure). Errors (a status other than 201 for
filing or 200 for the health check, or a failed connection) are counted over whole phases.

Run from the repository root:

    .venv/bin/python bench/filing.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/filing.py --database sqlite --rounds 2 --seconds 3
    .venv/bin/python bench/filing.py --postgresql-url \\
        postgresql+psycopg://postgres@127.0.0.1:5432/besik_filing_bench

The PostgreSQL database is dropped and created afresh, so its name must contain "bench".
Exit status: 0 after a measurement, even when a goal is missed; 1 when any request failed;
2 when the set-up failed.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/besik_bench"
GOAL_RATIO = 0.30
GOAL_FILING_P99_MS = 100.0
MAX_ERRORS_SHOWN = 5
QUANTILES = (0.50, 0.95, 0.99)


class SetupError(RuntimeError):
    """The database or the server could not be brought up."""


@dataclass
class Tally:
    """What one kind of request did over its measured windows (shared by its threads)."""

    name: str
    expected: int
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    round_rates: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    answered: int = 0  # every expected answer, warm-up included (what the CPU was spent on)
    web_cpu: float = 0.0
    worker_cpu: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float | None) -> None:
        """One expected answer; its latency when it fell inside the measured window."""
        with self.lock:
            self.answered += 1
            if latency is not None:
                self.latencies.append(latency)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.samples) < MAX_ERRORS_SHOWN:
                self.samples.append(what)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")

    def quantile_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000 if self.latencies else float("nan")


Request = Callable[[], tuple[str, str, bytes | None, dict[str, str]]]


# --- the scratch database and the Procfile's processes (bench/load.py uses these too) ------

def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run `flask --app app ARGS` in the repository; its stdout, or SetupError."""
    done = subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        tail = done.stderr[-2000:]
        raise SetupError(f"flask {' '.join(args)} exited {done.returncode}:\n{tail}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def fresh_postgresql(url: str) -> None:
    """Drop and create the bench's PostgreSQL database (only one named as a bench's)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    if "bench" not in name:
        raise SetupError(f"refusing to drop database {name!r}: its name must contain 'bench'")
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def scratch_env(url: str, scratch: Path) -> dict[str, str]:
    """The environment of every process of one run: demo mode, keys in the scratch dir."""
    return {**os.environ, "BESIK_ENV": "demo", "DATABASE_URL": url,
            "SECRET_KEY": "bench-" + "x" * 32,
            "VAPID_PRIVATE_KEY_FILE": str(scratch / "vapid_private.pem"),
            "AUDIT_KEY_FILE": str(scratch / "audit.key"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def prepare_database(url: str, scratch: Path) -> dict[str, str]:
    """A fresh database with the demo loaded; the environment to run against it."""
    if url.startswith("postgresql"):
        fresh_postgresql(url)
    env = scratch_env(url, scratch)
    flask_cli(env, "init-db")
    flask_cli(env, "seed-demo", "--if-empty")
    flask_cli(env, "vapid-keys")
    return env


def procfile_line(kind: str) -> str:
    """The command of one Procfile process type (`web`, `worker`)."""
    for line in (REPO / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return command.strip()
    raise SetupError(f"no {kind!r} line in the Procfile")


def start_procfile(kind: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A Procfile line under a shell, as honcho runs it; its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(["/bin/sh", "-c", f"exec {procfile_line(kind)}"], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_healthy(server: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
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


@contextmanager
def procfile_processes(env: dict[str, str], workers: int, scratch: Path
                       ) -> Iterator[tuple[int, int, int]]:
    """The Procfile's web (on a free port, `workers` sync workers) and worker; yields the
    port, the web's pid and the worker's pid once /healthz answers."""
    port = free_port()
    env = {**env, "HOST": HOST, "PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    log = scratch / "procfile.log"
    server = start_procfile("web", env, log)
    worker = start_procfile("worker", env, log)
    try:
        try:
            wait_healthy(server, port)
        except SetupError:
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
            raise
        yield port, server.pid, worker.pid
    finally:
        for process in (server, worker):
            stop_process(process)


@contextmanager
def procfile_running(env: dict[str, str], workers: int, scratch: Path) -> Iterator[int]:
    """As procfile_processes; yields the port only."""
    with procfile_processes(env, workers, scratch) as (port, _web, _worker):
        yield port


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += used.get(current, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == current)
    return total


def load_average() -> str:
    """The load average, and how fast the cores are right now: on shared cores a fixed loop
    took from 93 to 190 ms within one minute, so every figure beside it moves as much."""
    loads = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{loads} (reference loop {reference_loop_ms():.0f} ms)"


def reference_loop_ms(runs: int = 5) -> float:
    """The median time of a fixed piece of pure-Python work (sorting 300,000 floats)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        sorted(float(i * 7919 % 100_003) for i in range(300_000))
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[runs // 2]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of non-empty `values`."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


# --- the two kinds of request -----------------------------------------------------------------

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
        else:
            tally.add(ended - began if began >= measure_from and ended <= stop else None)
    conn.close()


def phase(port: int, pids: tuple[int, int], make: Request, tally: Tally, connections: int,
          warmup: float, seconds: float) -> None:
    """One kind alone on the server: `connections` connections, warm-up, then the window;
    the CPU the web processes and the worker spent meanwhile."""
    before = len(tally.latencies)
    cpu_before = [tree_cpu_seconds(pid) for pid in pids]
    measure_from = time.monotonic() + warmup
    stop = measure_from + seconds
    threads = [threading.Thread(target=drive, args=(port, make, tally, measure_from, stop))
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    web_cpu, worker_cpu = (tree_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, cpu_before,
                                                                            strict=True))
    tally.web_cpu += web_cpu
    tally.worker_cpu += worker_cpu
    tally.seconds += seconds
    tally.round_rates.append((len(tally.latencies) - before) / seconds)


@dataclass
class Outcome:
    database: str
    filing: Tally
    health: Tally
    load_before: str
    load_after: str

    @property
    def ratio(self) -> float:
        return self.filing.rate / self.health.rate if self.health.rate else float("nan")


def measure(database: str, url: str, args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="besik-bench-") as name:
        scratch = Path(name)
        env = prepare_database(url, scratch)
        token = flask_cli(env, "create-token", "--email", "nurse@besik.example").strip()
        filing, health = Tally("filing", 201), Tally("healthz", 200)
        with procfile_processes(env, args.workers, scratch) as (port, *pids):
            load_before = load_average()
            print(f"{database}: gunicorn sync workers {args.workers}, {args.connections} "
                  f"connections, {args.rounds} rounds of {args.seconds:g} s each kind alone "
                  f"(+{args.warmup:g} s warm-up), load average {load_before}", flush=True)
            for _ in range(args.rounds):
                phase(port, (pids[0], pids[1]), filing_request(token), filing,
                      args.connections, args.warmup, args.seconds)
                phase(port, (pids[0], pids[1]), healthz_request, health, args.connections,
                      args.warmup, args.seconds)
            load_after = load_average()
    return Outcome(database, filing, health, load_before, load_after)


def show(outcomes: list[Outcome]) -> None:
    width = 22
    names = [o.database for o in outcomes]
    print()
    print(f"{'':24}" + "".join(f"{n:>{width}}" for n in names))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:24}" + "".join(f"{v:>{width}}" for v in values))

    for kind in ("filing", "health"):
        tallies = [getattr(o, kind) for o in outcomes]
        name = tallies[0].name
        row(f"{name} requests", [str(len(t.latencies)) for t in tallies])
        row(f"{name} req/s", [f"{t.rate:.1f}" for t in tallies])
        row(f"{name} req/s by round", [" ".join(f"{r:.0f}" for r in t.round_rates)
                                       for t in tallies])
        for q in QUANTILES:
            row(f"{name} p{round(q * 100)} ms", [f"{t.quantile_ms(q):.1f}" for t in tallies])
        row(f"{name} errors", [str(t.errors) for t in tallies])
        row(f"{name} web CPU ms/req", [f"{t.web_cpu / t.answered * 1000:.2f}" if t.answered
                                       else "-" for t in tallies])
        row(f"{name} worker CPU ms/req", [f"{t.worker_cpu / t.answered * 1000:.2f}"
                                          if t.answered else "-" for t in tallies])
    row("ratio filing/healthz", [f"{o.ratio:.3f}" for o in outcomes])
    row("load average before", [o.load_before for o in outcomes])
    row("load average after", [o.load_after for o in outcomes])
    row(f"goal ratio >= {GOAL_RATIO:.2f}",
        ["PASS" if o.ratio >= GOAL_RATIO else "MISS" for o in outcomes])
    row(f"goal filing p99 < {GOAL_FILING_P99_MS:.0f}",
        ["PASS" if o.filing.quantile_ms(0.99) < GOAL_FILING_P99_MS else "MISS"
         for o in outcomes])
    for outcome in outcomes:
        for tally in (outcome.filing, outcome.health):
            for sample in tally.samples:
                print(f"  {outcome.database} {tally.name} error: {sample}")


def databases(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(name, URL) per database to measure; SQLite's URL is made in the scratch directory."""
    chosen = []
    if args.database in ("sqlite", "both"):
        chosen.append(("sqlite", None))
    if args.database in ("postgresql", "both"):
        chosen.append(("postgresql", args.postgresql_url))
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgresql-url", default=POSTGRESQL_URL,
                        help=f"dropped and created afresh (default {POSTGRESQL_URL})")
    parser.add_argument("--workers", type=int,
                        default=int(os.environ.get("WEB_CONCURRENCY", "3")),
                        help="gunicorn sync workers (default: as the Procfile, "
                             "$WEB_CONCURRENCY or 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="filing, then healthz, N times")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded, per phase")
    args = parser.parse_args()
    outcomes = []
    try:
        for name, url in databases(args):
            if url is None:
                with tempfile.TemporaryDirectory(prefix="besik-bench-db-") as where:
                    outcomes.append(measure(name, f"sqlite:///{where}/bench.db", args))
            else:
                outcomes.append(measure(name, url, args))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    print("filing: POST /api/v1/reports (the three required facts, a bearer token); "
          "healthz: GET /healthz")
    show(outcomes)
    return 1 if any(o.filing.errors or o.health.errors for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
