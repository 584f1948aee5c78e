"""Officers polling their inbox while reports keep arriving, over real HTTP to gunicorn.

For each database (SQLite in a scratch directory, PostgreSQL in a scratch database) it
builds a history of `--history` reports (bench/bulk.py: init-db, seed-demo, places across
the country, 20,000 reports by default, their export lines rendered as the worker keeps
them; `--history 0`: the demo's data alone), gives each Astana district a nurse (the
history's, or a new facility's where the demo leaves it without one), adds `--officers`
officers spread over Astana's six agencies (the five districts' guardianship and the city's
police), then starts exactly what the Procfile runs (web and worker). Half the officers sign
in through the sign-in form (a cookie session each), half hold their own API token. Each
polls `GET /api/v1/reports?state=pending` every `--poll-seconds` (their first polls spread
over one interval), while another process files `POST /api/v1/reports` at `--rate` per
second on a fixed schedule (from several connections, so that a slow answer does not delay
the next report), round-robin over the districts' nurses, one report in five with a risk
flag (routed to the police too).

After `--seconds` it prints per database, side by side, each endpoint's requests, req/s,
p50/p95/p99 latency and errors (any status other than 200 or 201, or a failed connection),
how late the filing schedule ran, the load average before and after, and the goal.

    .venv/bin/python bench/load.py                              # SQLite and PostgreSQL, 60 s
    .venv/bin/python bench/load.py --database sqlite --seconds 10 --officers 50

The PostgreSQL database is dropped and created afresh, so its name must contain "bench".
Exit status: 0 after a measurement, even when a goal is missed; 1 when any request failed;
2 when the set-up failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import filing
from filing import HOST, POSTGRESQL_URL, SetupError, percentile

REPO = filing.REPO
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_P99_MS = 150.0
# Reports already stored when the surge starts: a service that has run for a while, whose
# PostgreSQL statistics describe tables of some size. From the demo's few rows alone (this
# machine's server runs without autovacuum), the planner took the open reports for a handful
# and read every notice of the agency for each of them: a poll's list cost 34 ms of the
# server's time at 720 reports, growing with the square, until the server was saturated.
HISTORY = 20_000
LIST_PATH = "/api/v1/reports?state=pending"
DEMO_NURSES = ("nurse@besik.example", "nurse2@besik.example")
QUANTILES = (0.50, 0.95, 0.99)


@dataclass
class Tally:
    """One endpoint's answers inside the measured window (shared by its threads)."""

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
            if len(self.samples) < 5:
                self.samples.append(what)


@dataclass(frozen=True)
class Caller:
    """How one officer or nurse authenticates: a bearer token or a session cookie."""

    headers: dict[str, str]


def add_people(env: dict[str, str], officers: int) -> tuple[list[str], list[str], list[str]]:
    """Facilities and nurses for the districts without one, and the officers (through the
    models, as an administrator's page would leave them): the nurses' tokens, the tokens of
    the officers who use one, and the emails of those who sign in."""
    from sqlalchemy import select

    from reporting import create_app
    from reporting.config import Settings
    from reporting.db import get_db
    from reporting.demo import DEMO_PASSWORD
    from reporting.models import Agency, District, Facility, Region, Role, User
    from reporting.passwords import hash_password
    from reporting.tokens import create_token

    app = create_app(Settings.from_env(env))
    now = datetime.now(UTC)
    password_hash = hash_password(DEMO_PASSWORD)
    with app.app_context(), get_db().writing() as session:
        astana = session.scalars(select(Region).where(Region.code == "AST")).one()
        nurses = list(session.scalars(select(User).where(User.email.in_(DEMO_NURSES))))
        staffed = {nurse.facility.district_id for nurse in nurses if nurse.facility}
        for district in session.scalars(select(District).where(
                District.region_id == astana.id).order_by(District.code)):
            if district.id in staffed:
                continue
            # The history's own nurse of the district, if it has one (bench/bulk.py).
            nurse = session.scalars(select(User).join(Facility).where(
                Facility.district_id == district.id, User.role == Role.REPORTER)
                .order_by(User.id).limit(1)).first()
            if nurse is not None:
                nurses.append(nurse)
                continue
            facility = Facility(code=f"LOAD-{district.code}", name=f"Maternity {district.name}",
                                kind="maternity", district=district)
            nurse = User(email=f"nurse.{district.code.lower()}@load.example",
                         name=f"Nurse {district.code}", role=Role.REPORTER, facility=facility,
                         password_hash=password_hash, created_at=now)
            session.add_all([facility, nurse])
            nurses.append(nurse)
        agencies = list(session.scalars(select(Agency).where(Agency.region_id == astana.id)
                                        .order_by(Agency.code)))
        people = [User(email=f"officer{i:03d}@load.example", name=f"Officer {i}",
                       role=Role.OFFICER, agency=agencies[i % len(agencies)],
                       password_hash=password_hash, created_at=now) for i in range(officers)]
        session.add_all(people)
        session.flush()
        nurse_tokens = [create_token(session, nurse, "load", now) for nurse in nurses]
        officer_tokens = [create_token(session, user, "load", now) for user in people[::2]]
        signing_in = [user.email for user in people[1::2]]
    app.extensions["besik.db"].dispose()
    return nurse_tokens, officer_tokens, signing_in


def with_history(url: str, scratch: Path, reports: int) -> dict[str, str]:
    """A fresh database holding `reports` reports of the last two years across the country
    (bench/bulk.py: init-db, seed-demo, the places beyond the demo's, the rows as filing,
    acknowledging and the worker would have left them; PostgreSQL analyzed after the load),
    as a service that has been running meets a surge; the environment to run against it."""
    import bulk

    from reporting import clock, create_app, exports
    from reporting.config import Settings

    bulk.fill(url, reports)
    env = filing.scratch_env(url, scratch)
    filing.flask_cli(env, "init-db")  # this run's audit key; no migration is missing
    filing.flask_cli(env, "vapid-keys")
    # The export's lines, as the worker's hourly pass keeps them: a worker started on a
    # history without them spends its first seconds rendering them all (SQLite: in the
    # write lock's turns, beside the web processes), which is a cold start, not a surge.
    app = create_app(Settings.from_env(env))
    with app.app_context():
        exports.render_ahead(app.extensions["besik.db"], clock.now())
    app.extensions["besik.db"].dispose()
    return env


def analyze(url: str) -> None:
    """Statistics for PostgreSQL's planner, as autovacuum keeps them on any database that has
    run for a minute (this machine's server runs with autovacuum off), taken after set-up
    on the history (see HISTORY: statistics of the demo's few rows alone are not enough)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def sign_in(port: int, email: str) -> Caller:
    """A cookie session through the sign-in form, as a browser gets one."""
    from reporting.demo import DEMO_PASSWORD

    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    from urllib.parse import urlencode

    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.request("POST", "/login", body=urlencode({
        "email": email, "password": DEMO_PASSWORD, "csrf_token": csrf}),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    if response.status != 302:
        raise SetupError(f"signing in {email} answered {response.status}")
    return Caller({"Cookie": response.getheader("Set-Cookie", "").split(";", 1)[0]})


def poll(port: int, caller: Caller, tally: Tally, first_at: float, every: float,
         measure_from: float, stop: float) -> None:
    """One officer: the pending list every `every` seconds from `first_at` until `stop`."""
    next_at = first_at
    while next_at < stop:
        time.sleep(max(0.0, next_at - time.monotonic()))
        began = time.monotonic()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            conn.request("GET", LIST_PATH, headers=caller.headers)
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
        else:
            if response.status != 200:
                tally.error(f"HTTP {response.status}: {payload[:200]!r}")
            elif began >= measure_from:
                tally.add(time.monotonic() - began)
        next_at += every


def file_at_rate(port: int, tokens: list[str], rate: float, measure_from_in: float,
                 seconds_in: float, results: Any) -> None:
    """The filing process: report i is due at start + i / rate, taken by the first free
    connection; sends back (latencies in the window, errors, samples, worst lateness)."""
    start = time.monotonic()
    measure_from, stop = start + measure_from_in, start + seconds_in
    due = iter(range(int(rate * seconds_in)))
    lock = threading.Lock()
    tally, lateness = Tally(), [0.0]

    def connection() -> None:
        while True:
            with lock:
                i = next(due, None)
            if i is None:
                return
            at = start + i / rate
            time.sleep(max(0.0, at - time.monotonic()))
            began = time.monotonic()
            with lock:
                lateness[0] = max(lateness[0], began - at)
            discovered = datetime.now(UTC) - timedelta(minutes=10)
            body: dict[str, Any] = {"id": str(uuid.uuid4()), "circumstance": "written_refusal",
                                    "discovered_at": discovered.isoformat(),
                                    "child": {"sex": random.choice(["female", "male"])}}
            if i % 5 == 0:
                body["risk_flags"] = ["payment_suspected"]
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
                conn.request("POST", "/api/v1/reports", body=json.dumps(body), headers={
                    "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                    "Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                conn.close()
            except (OSError, http.client.HTTPException) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                continue
            if response.status != 201:
                tally.error(f"HTTP {response.status}: {payload[:200]!r}")
            elif began >= measure_from and began < stop:
                tally.add(time.monotonic() - began)

    threads = [threading.Thread(target=connection) for _ in range(max(4, int(rate)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((tally.latencies, tally.errors, tally.samples, lateness[0]))


@dataclass
class Outcome:
    database: str
    polls: Tally
    filings: Tally
    seconds: float
    lateness: float
    load_before: str
    load_after: str


def measure(database: str, url: str, args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="besik-load-") as name:
        scratch = Path(name)
        env = (with_history(url, scratch, args.history) if args.history
               else filing.prepare_database(url, scratch))
        nurse_tokens, officer_tokens, signing_in = add_people(env, args.officers)
        if url.startswith("postgresql"):
            analyze(url)
        with filing.procfile_running(env, args.workers, scratch) as port:
            callers = [Caller({"Authorization": f"Bearer {t}"}) for t in officer_tokens]
            callers += [sign_in(port, email) for email in signing_in]
            load_before = filing.load_average()
            print(f"{database}: {len(callers)} officers polling every {args.poll_seconds:g} s, "
                  f"filing at {args.rate:g}/s, {args.seconds:g} s measured after "
                  f"{args.warmup:g} s, gunicorn sync workers {args.workers}, load average "
                  f"{load_before}", flush=True)
            polls = Tally()
            results: Any = multiprocessing.get_context("spawn").Queue()
            total = args.warmup + args.seconds
            filer = multiprocessing.get_context("spawn").Process(
                target=file_at_rate,
                args=(port, nurse_tokens, args.rate, args.warmup, total, results))
            start = time.monotonic()
            filer.start()
            pollers = [threading.Thread(target=poll, args=(
                port, caller, polls, start + args.poll_seconds * i / len(callers),
                args.poll_seconds, start + args.warmup, start + total))
                for i, caller in enumerate(callers)]
            for thread in pollers:
                thread.start()
            for thread in pollers:
                thread.join()
            latencies, errors, samples, lateness = results.get(timeout=total + 120)
            filer.join(timeout=30)
            load_after = filing.load_average()
    return Outcome(database, polls, Tally(latencies, errors, samples), args.seconds, lateness,
                   load_before, load_after)


def show(outcomes: list[Outcome]) -> None:
    width = 22
    print()
    print(f"{'':26}" + "".join(f"{o.database:>{width}}" for o in outcomes))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:26}" + "".join(f"{v:>{width}}" for v in values))

    for label, kind in (("GET reports?state=pending", "polls"), ("POST reports", "filings")):
        tallies = [getattr(o, kind) for o in outcomes]
        print(label)
        row("  requests", [str(len(t.latencies)) for t in tallies])
        row("  req/s", [f"{len(t.latencies) / o.seconds:.1f}"
                        for t, o in zip(tallies, outcomes, strict=True)])
        for q in QUANTILES:
            row(f"  p{round(q * 100)} ms", [
                f"{percentile(t.latencies, q) * 1000:.1f}" if t.latencies else "-"
                for t in tallies])
        row("  errors", [str(t.errors) for t in tallies])
        row(f"  goal p99 < {GOAL_P99_MS:.0f} ms", [
            "PASS" if t.latencies and percentile(t.latencies, 0.99) * 1000 < GOAL_P99_MS
            else "MISS" for t in tallies])
    row("filing schedule late by", [f"{o.lateness * 1000:.0f} ms at most" for o in outcomes])
    row("load average before", [o.load_before for o in outcomes])
    row("load average after", [o.load_after for o in outcomes])
    for outcome in outcomes:
        for label, tally in (("poll", outcome.polls), ("filing", outcome.filings)):
            for sample in tally.samples:
                print(f"  {outcome.database} {label} error: {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgresql-url", default=POSTGRESQL_URL,
                        help=f"dropped and created afresh (default {POSTGRESQL_URL})")
    parser.add_argument("--workers", type=int,
                        default=int(os.environ.get("WEB_CONCURRENCY", "3")),
                        help="gunicorn sync workers (default: as the Procfile)")
    parser.add_argument("--officers", type=int, default=200)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=20.0, help="reports filed per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="unrecorded lead-in")
    parser.add_argument("--history", type=int, default=HISTORY,
                        help=f"reports already in the database (bench/bulk.py; default "
                             f"{HISTORY:,}; 0: the demo's only)")
    args = parser.parse_args()
    outcomes = []
    try:
        for name, url in filing.databases(args):
            if url is None:
                with tempfile.TemporaryDirectory(prefix="besik-load-db-") as where:
                    outcomes.append(measure(name, f"sqlite:///{where}/load.db", args))
            else:
                outcomes.append(measure(name, url, args))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    show(outcomes)
    return 1 if any(o.polls.errors or o.filings.errors for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
