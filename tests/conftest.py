"""Fixtures compose: database lane -> settings -> app -> client -> signed-in user.

Every database test runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL too.
In CI (CI=true) a missing or unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from reporting import clock as besik_clock
from reporting import create_app
from reporting.config import Settings
from reporting.db import Database
from reporting.demo import DEMO_PASSWORD, seed_demo
from reporting.digests import ensure_key as ensure_audit_key
from reporting.migrate import upgrade
from reporting.models import Base
from reporting.places import install_regions
from reporting.policy import ensure_default_policy
from reporting.push import ensure_vapid_key

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
IS_CI = os.environ.get("CI", "").lower() == "true"
LANES = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pytest_configure(config: pytest.Config) -> None:
    if IS_CI and not PG_URL:
        raise pytest.UsageError("CI=true requires TEST_DATABASE_URL (the PostgreSQL lane)")


def prepare(database: Database) -> None:
    """Seed what every test starts from, as init-db and seed-demo do: the default policy,
    Kazakhstan's regions and the demo data."""
    now = datetime.now(UTC)
    with database.writing() as session:
        ensure_default_policy(session, now)
        install_regions(session, now)
        seed_demo(session, now)


@pytest.fixture(autouse=True)
def clock() -> Iterator[Any]:
    """Besik's one clock: tests move it (freeze, advance) instead of sleeping."""
    yield besik_clock
    besik_clock.reset()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated and seeded SQLite file, copied for each test (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "besik.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database.engine)
    prepare(database)
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> str:
    """PostgreSQL from an empty schema, migrated once per run."""
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:  # unreachable server: fail loudly, never skip
        raise RuntimeError(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}") from exc
    finally:
        engine.dispose()
    database = Database(PG_URL)
    upgrade(database.engine)
    database.dispose()
    return PG_URL


def _reset_postgresql(url: str) -> None:
    database = Database(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        # The audit triggers refuse TRUNCATE; a superuser's replica session skips triggers.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"),
                     {"h": "0" * 64})
    prepare(database)
    database.dispose()


@pytest.fixture(params=LANES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, seeded, empty-of-reports database on each lane."""
    if request.param == "sqlite":
        target = tmp_path / "besik.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url = request.getfixturevalue("pg_migrated")
    _reset_postgresql(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    key = tmp_path / "vapid_private.pem"
    ensure_vapid_key(key)
    audit_key = tmp_path / "audit.key"
    ensure_audit_key(audit_key)
    return Settings(database_url=database_url, secret_key="test-secret", env="demo",
                    instance_path=tmp_path, vapid_private_key_file=key,
                    audit_key_file=audit_key)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["besik.db"].dispose()


@pytest.fixture
def push_service() -> Iterator[Any]:
    """The local push service (tests/push_service.py): checks VAPID, decrypts what it gets."""
    from tests.push_service import PushService

    with PushService() as service:
        yield service


@pytest.fixture
def push_settings(settings: Settings, push_service: Any) -> Settings:
    """Settings whose pushes go to the local push service, signed with the test's key."""
    from reporting.push import public_key_b64

    push_service.expect_vapid_public_key(public_key_b64(str(settings.vapid_private_key_file)))
    return replace(settings, push_allowed_hosts=(push_service.allowed_entry,))


@pytest.fixture
def push_app(push_settings: Settings) -> Iterator[Flask]:
    """The app, pushing to the local push service (a module's `app` where it needs one)."""
    app = create_app(push_settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["besik.db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    """A reading session for inspecting, outside any request (rollback() to see new data)."""
    session = app.extensions["besik.db"].new_reader()
    yield session
    session.rollback()
    session.close()


def csrf_token(client: FlaskClient) -> str:
    response = client.get("/api/v1/csrf")
    assert response.status_code == 200, response.data
    return str(response.get_json()["csrf_token"])


def login(client: FlaskClient, email: str, password: str = DEMO_PASSWORD) -> FlaskClient:
    """Sign in through the real form (with its CSRF token)."""
    page = client.get("/login")
    token = page.data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": token})
    assert response.status_code == 302, response.data
    return client


def bearer(app: Flask, email: str) -> dict[str, str]:
    """An Authorization header for a fresh API token of `email`."""
    from sqlalchemy import select

    from reporting.models import User
    from reporting.tokens import create_token

    with app.extensions["besik.db"].writing() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        token = create_token(session, user, "test", datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


def report_body(**overrides: Any) -> dict[str, Any]:
    """A minimal valid report (the three required facts), discovered ten minutes ago."""
    discovered = datetime.now(UTC) - timedelta(minutes=10)
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "circumstance": "written_refusal",
        "discovered_at": discovered.isoformat(),
        "child": {"sex": "female"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def nurse(app: Flask) -> dict[str, str]:
    return bearer(app, "nurse@besik.example")


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """`app` over real HTTP on 127.0.0.1 (a thread per request); yields its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Added: a lane chosen on purpose, races started together, places beyond Astana ----------


def postgresql_lane_only(test: Any) -> Any:
    """Run `test` on the PostgreSQL lane alone: for what only PostgreSQL promises.

    The test asks for the `database_url` fixture (directly or through `app`) with the lane
    pinned. Without TEST_DATABASE_URL there is no such lane: the test is deselected at
    collection (never skipped, and never run on SQLite where it would prove nothing); in CI
    the lane is required, so it always runs there.
    """
    return pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)(test)


def _pinned_to_postgresql(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("database_url") == "postgresql"


_DESELECTED_PG: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL lane, the tests pinned to it are deselected, and said so."""
    if PG_URL:
        return
    pinned = [item for item in items if _pinned_to_postgresql(item)]
    if not pinned:
        return
    if IS_CI:  # pytest_configure already refuses this; never let it pass quietly
        raise pytest.UsageError("PostgreSQL-only tests need TEST_DATABASE_URL in CI")
    _DESELECTED_PG.extend(item.nodeid for item in pinned)
    config.hook.pytest_deselected(items=pinned)
    items[:] = [item for item in items if not _pinned_to_postgresql(item)]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _DESELECTED_PG:
        terminalreporter.write_line(
            f"PostgreSQL lane off (TEST_DATABASE_URL unset): {len(_DESELECTED_PG)} "
            "PostgreSQL-only test(s) not run", yellow=True)


def at_once(*calls: Any, timeout: float = 120) -> list[Any]:
    """Run each callable in its own thread, all released together by a barrier; return their
    results in order, re-raising the first exception a thread raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Any) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as exc:  # handed to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c), daemon=True)
               for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout}s"
    if errors:
        raise errors[0]
    return results


OTHER_REGION = "ALA"
OTHER_FACILITY = "ALA1"
OTHER_AGENCY = "GRD-ALA-MED"
OTHER_NURSE = "nurse.ala@besik.example"


def add_user(app: Flask, email: str, role: str, *, region: str | None = None,
             facility: str | None = None, agency: str | None = None) -> None:
    """A user with the demo password (sign-in works), made through the ORM."""
    from sqlalchemy import select

    from reporting.models import Agency, Facility, Region, Role, User
    from reporting.passwords import hash_password

    with app.extensions["besik.db"].writing() as session:
        def find(model: Any, code: str | None) -> Any:
            return None if code is None else session.scalars(
                select(model).where(model.code == code)).one()

        session.add(User(email=email, name=email.split("@")[0], role=Role(role),
                         password_hash=hash_password(DEMO_PASSWORD),
                         region=find(Region, region), facility=find(Facility, facility),
                         agency=find(Agency, agency), created_at=datetime.now(UTC)))


def add_other_region(app: Flask) -> None:
    """Almaty city (ALA) beside the demo's Astana: a district, a facility, its guardianship
    agency and a nurse there."""
    from sqlalchemy import select

    from reporting.models import Agency, AgencyKind, District, Facility, Region

    with app.extensions["besik.db"].writing() as session:
        region = session.scalars(select(Region).where(Region.code == OTHER_REGION)).one()
        district = District(code="ALA-MED", name="Medeu", region=region)
        session.add_all([
            region, district,
            Facility(code=OTHER_FACILITY, name="Almaty Maternity No. 1", kind="maternity",
                     district=district),
            Agency(code=OTHER_AGENCY, name="Guardianship of Medeu district",
                   kind=AgencyKind.GUARDIANSHIP, region=region, district=district)])
    add_user(app, OTHER_NURSE, "reporter", facility=OTHER_FACILITY)
