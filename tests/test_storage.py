"""SQLite as the embedded database: durable commits, and checkpoints kept off requests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import make_url

from reporting.worker import Worker
from tests.conftest import report_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def reports_in_main_file(database_url: str) -> int:
    """Reports in the database file itself, ignoring what is still only in the WAL."""
    path = Path(str(make_url(database_url).database))
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as raw:
        count: int = raw.execute("SELECT count(*) FROM reports").fetchone()[0]
    return count


def test_every_connection_is_wal_with_full_sync(app):
    with app.extensions["besik.db"].engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        # 2 = FULL: the WAL is synced at each commit, so a 201 survives a power cut.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_filing_leaves_checkpoints_to_the_worker(app, client, nurse, settings, database_url):
    for _ in range(3):
        assert client.post("/api/v1/reports", json=report_body(),
                           headers=nurse).status_code == 201
    assert reports_in_main_file(database_url) == 0  # committed to the WAL only
    Worker(app.extensions["besik.db"], settings).run_once()
    assert reports_in_main_file(database_url) == 3
