"""The compliance log export over a big database: rows/s and peak memory, CSV and XLSX.

Builds a scratch database with `bulk.fill` (1,000,000 reports by default, with their notices
and deadlines), then exports every report through the real code path (`exports.run`, what
both `GET /api/v1/export` and `flask export` stream) in a fresh process per run, so that
each peak RSS is that run's alone:

- `csv fresh`: CSV, every row rendered by the export itself (no line rendered ahead);
- `render`: the worker's pass rendering the CSV lines ahead (`exports.render_ahead`), for the
  export's language (the worker renders each of the three);
- `csv`: CSV again, copying the lines rendered ahead;
- `xlsx`: XLSX (always rendered by the export).

Prints rows/s on the wall clock and per CPU-second (the machine is shared; CPU time shows the
code's own cost), bytes written and peak RSS.
Goals (issue 10): CSV >= 50,000 rows/s, XLSX >= 10,000 rows/s, peak RSS <= 150 MB.

    .venv/bin/python bench/export.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/export.py --database sqlite --reports 100000
    .venv/bin/python bench/export.py --reuse                  # keep the last scratch databases
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulk import fill

URLS = {"sqlite": "sqlite:////tmp/besik-export-bench.db",
        "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/besik_export_bench"}


LANGUAGE = "ru"
RUNS = ("csv fresh", "render", "csv", "xlsx")


def run_once(database_url: str, run: str) -> dict[str, float]:
    """One run (RUNS) over every report, in this process (the child's job)."""
    from reporting import clock, create_app, exports
    from reporting.config import Settings
    from reporting.vocabulary import ExportFormat

    with tempfile.TemporaryDirectory(prefix="besik-export-") as folder:
        instance = Path(folder)
        app = create_app(Settings(database_url=database_url, secret_key="bench-" + "x" * 32,
                                  env="demo", instance_path=instance,
                                  vapid_private_key_file=instance / "vapid.pem",
                                  audit_key_file=instance / "audit.key"))
        with app.app_context():
            started, cpu = time.perf_counter(), time.process_time()
            written = rows = rendered = 0
            if run == "render":
                sweep = exports.render_ahead(app.extensions["besik.db"], clock.now(),
                                             languages=[LANGUAGE])
                rows, rendered = sweep.reports, sweep.rendered
            else:
                job = exports.Export(ExportFormat(run.split()[0]), exports.Filters(), LANGUAGE,
                                     clock.now(), use_lines=run != "csv fresh")
                with open("/dev/null", "wb") as sink:
                    for chunk in exports.run(job, None):
                        written += len(chunk)
                        sink.write(chunk)
                rows, rendered = job.rows, job.rows_rendered
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _peak_rss_mb()
    return {"rows": rows, "rendered": rendered, "seconds": wall, "cpu_seconds": cpu,
            "bytes": written, "peak_rss_mb": peak}


def migrate(database_url: str) -> None:
    """A reused database gets the migrations it lacks, as `flask init-db` would."""
    from reporting.db import Database
    from reporting.migrate import upgrade

    database = Database(database_url)
    upgrade(database.engine)
    database.dispose()


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries it over
    exec from the forking parent (which, having just built the database, is large)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(database_url: str, run: str) -> dict[str, float]:
    """run_once in a fresh Python process."""
    output = subprocess.run([sys.executable, __file__, "--child", run, database_url],
                            check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--reuse", action="store_true", help="export the existing databases")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child[1], args.child[0])))
        return 0
    goals = {"csv fresh": 50_000, "csv": 50_000, "xlsx": 10_000, "render": 0}
    for name in (["sqlite", "postgresql"] if args.database == "both" else [args.database]):
        url = URLS[name]
        if not args.reuse:
            fill(url, args.reports)
        migrate(url)
        for run in args.runs:
            r = measure(url, run)
            rate, cpu_rate = r["rows"] / r["seconds"], r["rows"] / r["cpu_seconds"]
            verdict = ("PASS" if rate >= goals[run] and r["peak_rss_mb"] <= 150 else "MISS")
            print(f"{name:10} {run:9} {int(r['rows']):>9,} rows in {r['seconds']:6.1f} s"
                  f" = {rate:8,.0f} rows/s ({cpu_rate:8,.0f} per CPU-s), "
                  f"{int(r['rendered']):>9,} rendered, {r['bytes'] / 1e6:7.1f} MB, "
                  f"peak RSS {r['peak_rss_mb']:5.0f} MB  {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
