"""The administrator's compliance dashboard over a big database: compliance.figures(),
GET /api/v1/compliance and GET /admin, for the whole country and for one region.

Builds the scratch database with bench/bulk.py (default 1,000,000 reports), or with --reuse
takes the one an earlier run left (and applies any migration it lacks, as `flask init-db`
would, timed). Then, over the default period (the last 30 days) and through the real code
path:

- `compliance.figures()` inside an app context with `reading()`;
- `GET /api/v1/compliance` and `GET /admin` through the Flask test client, signed in as the
  demo admin through the sign-in form;

each for the country and for one region (`?region=AST` on the routes): once cold (the first
call in a freshly created app: new connections, an empty SQLite page cache; the operating
system's file cache and PostgreSQL's shared buffers are as earlier runs left them), then the
median of --runs warm calls. --explain also prints every statement figures() runs with its
time (median of 3, rows fetched) and its plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL:
EXPLAIN (ANALYZE, BUFFERS)).

    .venv/bin/python bench/dashboard.py                        # build both, then measure
    .venv/bin/python bench/dashboard.py --database sqlite --reuse --explain
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bulk
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reporting import clock, compliance, create_app
from reporting.config import Settings
from reporting.db import get_db, reading
from reporting.demo import DEMO_PASSWORD
from reporting.models import Region

ADMIN = "admin@besik.example"
REGION = "AST"
GOAL_MS = 300.0


def holds_reports(database_url: str) -> bool:
    """True when the scratch database exists and has reports in it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return False
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM reports LIMIT 1")).first())
    except Exception:  # no database, or no schema yet: build it
        return False
    finally:
        engine.dispose()


def new_app(database_url: str, instance: Path) -> Flask:
    app = create_app(Settings(database_url=database_url, secret_key="bench-" + "x" * 32,
                              env="demo", instance_path=instance,
                              vapid_private_key_file=instance / "vapid_private.pem",
                              audit_key_file=instance / "audit.key"))
    app.config.update(TESTING=True)
    return app


def migrate(app: Flask) -> float:
    """`flask init-db` on the database (a reused one may predate a migration); seconds."""
    started = time.perf_counter()
    result = app.test_cli_runner().invoke(args=["init-db"])
    if result.exit_code != 0:
        raise RuntimeError(f"init-db failed: {result.output}{result.exception}")
    return time.perf_counter() - started


def signed_in(app: Flask) -> FlaskClient:
    """A test client signed in as the demo admin through the real form."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"email": ADMIN, "password": DEMO_PASSWORD,
                                           "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"sign-in as {ADMIN} answered {response.status_code}")
    return client


def figures_call(app: Flask, region: str | None) -> Callable[[], Any]:
    """compliance.figures() as the views call it, in a fresh reading() session each time."""
    with app.app_context(), reading() as session:
        found = compliance.region_of(session, region) if region else None
    region_id = found.id if found is not None else None

    def call() -> Any:
        now = clock.now()
        with app.app_context(), reading() as session:
            return compliance.figures(
                session, compliance.Scope(region_id, *compliance.default_period(now)), now)

    return call


def route_call(client: FlaskClient, path: str) -> Callable[[], Any]:
    def call() -> Any:
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        return response.data

    return call


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(database_url: str, instance: Path, runs: int) -> None:
    """Each target: cold in a fresh app, then the median of `runs` warm calls."""
    targets: list[tuple[str, Callable[[Flask], Callable[[], Any]]]] = [
        ("figures() country", lambda app: figures_call(app, None)),
        (f"figures() {REGION}", lambda app: figures_call(app, REGION)),
        ("GET /api/v1/compliance", lambda app: route_call(signed_in(app),
                                                          "/api/v1/compliance")),
        (f"GET /api/v1/compliance?region={REGION}",
         lambda app: route_call(signed_in(app), f"/api/v1/compliance?region={REGION}")),
        ("GET /admin", lambda app: route_call(signed_in(app), "/admin")),
        (f"GET /admin?region={REGION}",
         lambda app: route_call(signed_in(app), f"/admin?region={REGION}")),
    ]
    print(f"{'':40} {'cold ms':>9} {'warm ms':>9}   (median of {runs}; goal < {GOAL_MS:.0f})")
    for name, make in targets:
        app = new_app(database_url, instance)
        try:
            call = make(app)
            cold = timed(call)
            warm = statistics.median(timed(call) for _ in range(runs))
        finally:
            app.extensions["besik.db"].dispose()
        verdict = "ok" if max(cold, warm) < GOAL_MS else "MISS"
        print(f"{name:40} {cold:9.1f} {warm:9.1f}   {verdict}", flush=True)


@contextmanager
def statements_of(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the app's engine runs inside the block, with its parameters."""
    seen: list[tuple[str, Any]] = []
    engine = app.extensions["besik.db"].engine

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):  # not the BEGINs
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(database_url: str, instance: Path) -> None:
    """Each statement of figures() (country and region): its time and its plan."""
    app = new_app(database_url, instance)
    is_sqlite = make_url(database_url).get_backend_name() == "sqlite"
    try:
        for region in (None, REGION):
            call = figures_call(app, region)
            with statements_of(app) as seen:
                call()
            print(f"\n=== figures() {region or 'country'}: {len(seen)} statements")
            with app.app_context():
                raw = get_db().engine.raw_connection()
                try:
                    for statement, parameters in seen:
                        _explain_one(raw.driver_connection, statement, parameters, is_sqlite)
                finally:
                    raw.close()
    finally:
        app.extensions["besik.db"].dispose()


def _explain_one(conn: Any, statement: str, parameters: Any, is_sqlite: bool) -> None:
    def run() -> Any:
        cursor = conn.cursor()
        try:
            cursor.execute(statement, parameters)
            return cursor.fetchall()
        finally:
            cursor.close()

    times = [timed(run) for _ in range(3)]
    rows = len(run())
    first_line = " ".join(statement.split())[:150]
    print(f"\n--- {statistics.median(times):.1f} ms, {rows} rows: {first_line}...")
    cursor = conn.cursor()
    try:
        if is_sqlite:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            for _id, parent, _notused, detail in cursor.fetchall():
                print(f"  [{parent}] {detail}")
        else:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            for (line,) in cursor.fetchall():
                print(f"  {line}")
    finally:
        cursor.close()
    if not is_sqlite:
        conn.rollback()


def bench(database_url: str, reports: int, reuse: bool, runs: int, show_plans: bool) -> None:
    print(f"\n##### {make_url(database_url).render_as_string()}", flush=True)
    if reuse and holds_reports(database_url):
        print("reusing the database an earlier run built")
    else:
        bulk.fill(database_url, reports)
    with tempfile.TemporaryDirectory(prefix="besik-dash-") as scratch:
        instance = Path(scratch)
        app = new_app(database_url, instance)
        print(f"init-db (applies any migration the database lacks): {migrate(app):.1f} s")
        with app.app_context(), reading() as session:
            count = session.scalar(text("SELECT count(*) FROM reports"))
            regions = session.scalar(select(Region.id).where(Region.code == REGION))
        app.extensions["besik.db"].dispose()
        if regions is None:
            raise SystemExit(f"no region {REGION} in {database_url}")
        print(f"{count:,} reports")
        measure(database_url, instance, runs)
        if show_plans:
            explain(database_url, instance)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--database-url", help="instead of --database")
    parser.add_argument("--reports", type=int, default=bulk.DEFAULT_REPORTS)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the scratch database an earlier run built")
    parser.add_argument("--runs", type=int, default=5, help="warm calls per target")
    parser.add_argument("--explain", action="store_true",
                        help="print each statement's time and plan")
    args = parser.parse_args()
    for url in [args.database_url] if args.database_url else bulk.urls_for(args.database):
        bench(url, args.reports, args.reuse, args.runs, args.explain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
