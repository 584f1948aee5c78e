"""One migration chain, from empty, on SQLite and PostgreSQL; it matches the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Date, DateTime, Engine, bindparam, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reporting import audit, create_app
from reporting.config import Settings
from reporting.db import Database
from reporting.deadlines import to_local
from reporting.migrate import alembic_config, upgrade
from reporting.models import Base
from reporting.push import ensure_vapid_key
from reporting.worker import Worker
from tests.conftest import LANES, PG_URL, bearer, report_body


def test_migrations_from_empty_on_sqlite_match_the_models(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    upgrade(database.engine)
    upgrade(database.engine)  # idempotent
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert conn.execute(text("SELECT seq FROM audit_head")).scalar_one() == 0
    database.dispose()


def test_migrated_database_matches_the_models_on_every_lane(app):
    """The app fixture's database was migrated from empty (PostgreSQL: schema dropped first)."""
    engine = app.extensions["besik.db"].engine
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
        assert MigrationContext.configure(conn).get_current_revision() == head
    assert set(inspect(engine).get_table_names()) >= {t.name for t in Base.metadata.sorted_tables}


def test_the_chain_has_one_head_and_downgrades_to_empty(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    config = alembic_config(url)
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


# --- Upgrading a database that holds data -------------------------------------------------

EARLIER = "0001"  # the first revision: every later one then runs over the rows below
NOW = datetime.now(UTC).replace(microsecond=0)
YEAR = to_local(NOW).year  # references count per year, in Kazakhstan time
REFERENCE = f"AST-{YEAR}-000001"
REPORT_ID = "6f1c2a0e-3d4b-4c5d-8e9f-0a1b2c3d4e5f"
NOTICE_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# The deadline policy as the first release stored it.
RULES_AT_0001 = [
    {"name": "report_to_guardianship", "starts_on": "discovered", "duration": "1h",
     "responsible": "facility", "basis": "Marriage and Family Code art. 118; Law 110-VIII",
     "verified": False, "needs_risk_flag": False},
    {"name": "acknowledge_notice", "starts_on": "notice_sent", "duration": "30min",
     "responsible": "agency", "basis": "internal service level", "verified": True,
     "needs_risk_flag": False},
    {"name": "examine_child", "starts_on": "notice_sent", "duration": "3wd",
     "responsible": "guardianship agency", "basis": "Marriage and Family Code art. 118",
     "verified": False, "needs_risk_flag": False},
    {"name": "inform_police", "starts_on": "discovered", "duration": "24h",
     "responsible": "facility", "basis": "Criminal Code art. 135", "verified": True,
     "needs_risk_flag": True},
    {"name": "register_in_data_bank", "starts_on": "notice_acknowledged", "duration": "1wd",
     "responsible": "guardianship agency", "basis": "order of 29 Aug 2025", "verified": False,
     "needs_risk_flag": False},
]
# Rows as revision 0001's tables hold them: table -> (primary key, rows).
ROWS_AT_0001: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "regions": ("id", [{"id": 1, "code": "AST", "name": "Astana"}]),
    "districts": ("id", [{"id": 1, "code": "AST-YES", "name": "Yesil", "region_id": 1}]),
    "facilities": ("id", [{"id": 1, "code": "PC1", "name": "Perinatal Centre No. 1",
                           "kind": "perinatal", "district_id": 1}]),
    "agencies": ("id", [{"id": 1, "code": "GRD-AST-YES", "name": "Guardianship of Yesil",
                         "kind": "guardianship", "region_id": 1, "district_id": 1,
                         "phone": "+7 7172 00 00 00"}]),
    "users": ("id", [
        {"id": 1, "email": "nurse@besik.example", "name": "Айгерим Нурлановна",
         "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$old$old", "role": "reporter",
         "facility_id": 1, "agency_id": None, "region_id": None, "is_head": False,
         "locale": "kk", "is_active": True, "created_at": NOW - timedelta(days=30)},
        {"id": 2, "email": "officer@besik.example", "name": "Dana Serikovna",
         "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$old$old", "role": "officer",
         "facility_id": None, "agency_id": 1, "region_id": None, "is_head": True,
         "locale": None, "is_active": True, "created_at": NOW - timedelta(days=30)}]),
    "policy_versions": ("id", [{"id": 1, "created_at": NOW - timedelta(days=30),
                                "created_by_id": None, "rules": RULES_AT_0001,
                                "note": "default policy"}]),
    "reference_counters": ("region_code", [{"region_code": "AST", "year": YEAR,
                                            "last_value": 1}]),
    "reports": ("id", [{
        "id": REPORT_ID, "reference": REFERENCE, "facility_id": 1, "reporter_id": 1,
        "policy_version_id": 1, "circumstance": "left_without_notice",
        "discovered_at": NOW - timedelta(hours=2), "filed_at": NOW - timedelta(hours=2),
        "received_at": NOW - timedelta(hours=1), "reported_at": NOW - timedelta(hours=2),
        "child_sex": "female", "child_iin": "250115601231",
        "child_born_at": NOW - timedelta(days=1), "child_weight_g": 3100,
        "child_condition": "stable", "mother_iin": "851231300124",
        "mother_full_name": "Әйгерім Сейтқалиқызы", "mother_birth_date": date(1985, 12, 31),
        "mother_citizenship": "KZ", "mother_phone": "+77010000000",
        "mother_address": "Астана, ул. Кенесары 1", "risk_flags": ["mother_minor"],
        "notes": "line one\nline two", "warnings": ["child.iin_birth_date_mismatch"],
        "content_hash": "a" * 64, "state": "open"}]),
    "notices": ("id", [{
        "id": NOTICE_ID, "report_id": REPORT_ID, "agency_id": 1, "is_fallback": False,
        "sent_at": NOW - timedelta(hours=1), "ack_due_at": NOW - timedelta(minutes=30),
        "acknowledged_at": None, "acknowledged_by_id": None, "ack_channel": None,
        "escalation_level": 0}]),
    "deadlines": ("id", [
        {"id": 1, "report_id": REPORT_ID, "notice_id": NOTICE_ID,
         "rule": "acknowledge_notice", "due_at": NOW - timedelta(minutes=30), "met_at": None,
         "basis": "internal service level", "is_basis_verified": True},
        {"id": 2, "report_id": REPORT_ID, "notice_id": None, "rule": "report_to_guardianship",
         "due_at": NOW - timedelta(hours=1), "met_at": NOW - timedelta(hours=2),
         "basis": "Marriage and Family Code art. 118", "is_basis_verified": False}]),
}


def _typed(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return bindparam(name, value, type_=DateTime(timezone=True))
    if isinstance(value, date):
        return bindparam(name, value, type_=Date())
    if isinstance(value, list | dict):
        return bindparam(name, value, type_=JSON())
    return bindparam(name, value)


def _insert_raw(engine: Engine) -> None:
    """INSERT statements written against revision 0001's tables, not the models."""
    with engine.begin() as conn:
        for table, (key, rows) in ROWS_AT_0001.items():
            for row in rows:
                sql = text(f"INSERT INTO {table} ({', '.join(row)}) "
                           f"VALUES ({', '.join(':' + c for c in row)})")
                conn.execute(sql.bindparams(*(_typed(c, v) for c, v in row.items())))
            if engine.dialect.name == "postgresql" and key == "id" and isinstance(
                    rows[0]["id"], int):  # as a restore does: the sequence follows the rows
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))


def _read_raw(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The same columns read back, typed as they were written."""
    found = {}
    with engine.connect() as conn:
        for table, (key, rows) in ROWS_AT_0001.items():
            columns = list(rows[0])
            types = {c: _typed(c, v).type for row in rows for c, v in row.items()
                     if isinstance(v, date | list | dict)}
            sql = text(f"SELECT {', '.join(columns)} FROM {table} "
                       f"ORDER BY {key}").columns(**types)
            found[table] = [tuple(_utc(v) for v in r) for r in conn.execute(sql)]
    return found


def _utc(value: Any) -> Any:
    """SQLite keeps no zone: a stored UTC time comes back naive."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _as_written() -> dict[str, list[tuple[Any, ...]]]:
    return {table: [tuple(row.values()) for row in rows]
            for table, (_, rows) in ROWS_AT_0001.items()}


@pytest.fixture(params=LANES)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own on each lane. PostgreSQL: a database created for
    the test and dropped after it, so the shared test database is never touched."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgraded.db'}"
        return
    server = make_url(PG_URL)
    name = f"besik_migr_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrading_a_database_that_holds_reports_keeps_them_and_the_app_works_on(
        empty_database_url, tmp_path):
    from alembic import command

    config = alembic_config(empty_database_url)
    command.upgrade(config, EARLIER)
    engine = create_engine(empty_database_url, poolclass=NullPool)
    _insert_raw(engine)
    assert _read_raw(engine) == _as_written()  # the raw rows are what revision 0001 holds

    # As `flask init-db` does it: through the app's own engine (SQLite: foreign keys on).
    database = Database(empty_database_url)
    upgrade(database.engine)
    database.dispose()

    assert _read_raw(engine) == _as_written()  # every row, every value, survived
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == ScriptDirectory.from_config(
            config).get_current_head()
        assert compare_metadata(context, Base.metadata) == []
        assert conn.execute(text("SELECT examine_reminded_at FROM notices")).all() == [(None,)]
        # 0010 copied the reporting outcome from the report's stored deadline (this policy
        # had no statutory bound yet: none).
        outcome = text("SELECT guardianship_due_at, guardianship_statutory_due_at, "
                       "guardianship_reported_at FROM reports").columns(
            guardianship_due_at=DateTime(timezone=True),
            guardianship_reported_at=DateTime(timezone=True))
        assert [tuple(_utc(v) for v in row) for row in conn.execute(outcome)] == [
            (NOW - timedelta(hours=1), None, NOW - timedelta(hours=2))]
        # 0012 copied each notice's report's received_at, and SQLite's copy of the table
        # kept the triggers that raise the report's revision.
        order = text("SELECT report_received_at FROM notices").columns(
            report_received_at=DateTime(timezone=True))
        assert [_utc(v) for v in conn.execute(order).scalars()] == [NOW - timedelta(hours=1)]
        revision = conn.execute(text("SELECT revision FROM reports")).scalar_one()
        conn.execute(text("UPDATE notices SET escalation_level = escalation_level + 1"))
        assert conn.execute(text("SELECT revision FROM reports")).scalar_one() == revision + 1
        conn.rollback()
    engine.dispose()

    key = tmp_path / "vapid_private.pem"
    ensure_vapid_key(key)
    app = create_app(Settings(database_url=empty_database_url, secret_key="test-secret",
                              env="demo", instance_path=tmp_path, vapid_private_key_file=key))
    try:
        client, nurse = app.test_client(), bearer(app, "nurse@besik.example")
        old = client.get(f"/api/v1/reports/{REPORT_ID}", headers=nurse)
        assert old.status_code == 200, old.get_json()
        data = old.get_json()
        assert data["reference"] == REFERENCE
        assert data["mother"]["full_name"] == "Әйгерім Сейтқалиқызы"
        assert data["notes"] == "line one\nline two"
        assert [(n["id"], n["state"]) for n in data["notices"]] == [(NOTICE_ID, "overdue")]
        assert client.get(f"/reports/{REPORT_ID}", headers=nurse).status_code == 200

        new = client.post("/api/v1/reports", json=report_body(), headers=nurse)
        assert new.status_code == 201, new.get_json()
        assert new.get_json()["reference"] == f"AST-{YEAR}-000002"  # the counter went on
        listed = client.get("/api/v1/reports", headers=nurse).get_json()["items"]
        assert [r["id"] for r in listed] == [new.get_json()["id"], REPORT_ID]

        assert Worker(app.extensions["besik.db"], app.config["BESIK"]).run_once().escalated == 1
        officer = bearer(app, "officer@besik.example")
        ack = client.post(f"/api/v1/reports/{REPORT_ID}/acknowledge", headers=officer)
        assert ack.status_code == 200, ack.get_json()
        assert ack.get_json()["escalation_level"] == 1
        with app.extensions["besik.db"].reading() as session:
            assert audit.verify(session).is_ok
    finally:
        app.extensions["besik.db"].dispose()
