"""Proven under faults: a crash, an outage or a surge never loses, duplicates or half-writes
a report, and alerts keep flowing.

Real processes (tests/processes.py): gunicorn as the Procfile runs it, killed with SIGKILL;
the worker process; a PostgreSQL cluster of the test's own, stopped and started; the local
push service (tests/push_service.py) storming, rate-limiting and hanging. PostgreSQL lane
only: what these tests prove is what production runs on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise

import pytest
from flask import Flask, Response, g
from sqlalchemy import create_engine, select, text

from reporting import clock, create_app, push
from reporting.db import Database
from reporting.migrate import upgrade
from reporting.models import PushDelivery
from reporting.worker import Worker
from tests.conftest import bearer, login, postgresql_lane_only, prepare, report_body
from tests.processes import (
    Phones,
    WebServer,
    WorkerProcess,
    app_env,
    assert_whole,
    audit_verify,
    free_port,
    health,
    new_report,
    request,
    throwaway_cluster,
)
from tests.push_service import PushService, Subscription

OFFICER = "officer@besik.example"
NURSE = "nurse@besik.example"


@pytest.fixture
def app(push_app: Flask) -> Flask:
    return push_app


def token_of(app: Flask, email: str) -> str:
    return bearer(app, email)["Authorization"].removeprefix("Bearer ")


def subscribe(app: Flask, service: PushService, email: str = OFFICER) -> Subscription:
    """A device of `email` on the local push service, registered through the API."""
    device = service.new_subscription()
    response = app.test_client().post("/api/v1/push/subscriptions", json=device.as_json(),
                                      headers=bearer(app, email))
    assert response.status_code == 201, response.get_json()
    return device


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


# --- 1. the web tier is killed -------------------------------------------------------------


@postgresql_lane_only
def test_killing_every_web_process_twice_loses_and_duplicates_no_report(
        app, push_settings, push_service, database_url, tmp_path):
    subscribe(app, push_service)  # every notice queues one delivery: duplicates would show
    env = app_env(push_settings)
    web = WebServer(env, tmp_path / "web.log", workers=2)
    web.start()
    phones = Phones([web.url], token_of(app, NURSE), threads=8, per_thread=125)
    try:
        phones.start()
        for kill, after in enumerate((300, 650), start=1):
            wait_until(lambda after=after: len(phones.ids) >= after, 40,
                       f"{after} reports filed before kill {kill}")
            web.kill()  # master and workers at once, requests in flight
            web.start()
        phones.join()
    finally:
        web.stop()
    assert phones.unexpected == [], phones.unexpected[:5]
    assert len(phones.ids) == 1000
    assert phones.answers["no answer (ConnectionRefusedError)"] > 0  # the kills were felt
    assert_whole(database_url, phones.ids, deliveries_per_notice=1)
    assert audit_verify(env).startswith("ok ")


# --- 2. the database goes away for 10 s -----------------------------------------------------


@postgresql_lane_only
def test_a_database_outage_answers_503_then_heals_with_nothing_half_written(
        database_url, push_settings, push_service, tmp_path):
    with throwaway_cluster() as cluster:
        cluster.create_database("besik_faults_outage")
        url = cluster.url("besik_faults_outage")
        database = Database(url)
        upgrade(database.engine)
        prepare(database)
        database.dispose()
        settings = replace(push_settings, database_url=url)
        setup = create_app(settings)
        device = subscribe(setup, push_service)
        token = token_of(setup, NURSE)
        setup.extensions["besik.db"].dispose()

        env = app_env(settings, WORKER_POLL_SECONDS="0.2")
        web = WebServer(env, tmp_path / "web.log", workers=2)
        # No digest key: the worker would write digests into the repository's instance/.
        worker = WorkerProcess({**env, "AUDIT_KEY_FILE": str(tmp_path / "absent.key")},
                               tmp_path / "worker.log")
        phones = Phones([web.url], token, threads=4, per_thread=40, retry_pause=0.1)
        try:
            web.start()
            phones.start()
            wait_until(lambda: len(phones.ids) >= 20 and push_service.received(device), 30,
                       "filing and pushing before the outage")
            # The database goes away while a push is in flight: its result must be recorded
            # once the database is back, not sent a second time.
            before = len(push_service.requests)
            push_service.hold()
            last = new_report()  # something left to push, however fast the phones were
            assert request(web.url, "POST", "/api/v1/reports", last,
                           {"Authorization": f"Bearer {token}"})[0] == 201
            wait_until(lambda: len(push_service.requests) > before, 15, "a push in flight")
            cluster.stop()
            down_at = time.monotonic()
            push_service.release()
            wait_until(lambda: health(web.url) == 503, 5, "/healthz 503 while down")
            wait_until(lambda: phones.refusals, 10, "a filing refused while down")
            while time.monotonic() - down_at < 10:
                assert worker.is_running(), worker.log()
                assert health(web.url) == 503
                time.sleep(0.5)
            cluster.start()
            wait_until(lambda: health(web.url) == 200, 15, "/healthz 200 once it is back")
            phones.join()
            wait_until(lambda: _all_sent(url), 30, "every queued push sent after the outage")
            assert worker.is_running(), worker.log()
        finally:
            phones_left = [t for t in phones._threads if t.is_alive()]
            web.stop()
            worker.stop()
        assert not phones_left
        assert phones.unexpected == [], phones.unexpected[:5]
        filed = phones.ids | {last["id"]}
        assert len(filed) == 161
        for status, headers, body in phones.refusals:
            assert int(headers["retry-after"]) >= 1
            assert body["error"]["code"] == "unavailable" and body["error"]["message"]
            assert set(body) == {"error"}
        assert_whole(url, filed, deliveries_per_notice=1)
        pushed = Counter(p.payload["notice_id"] for p in push_service.received(device))
        assert len(pushed) == 161 and set(pushed.values()) == {1}, "each notice pushed once"
        assert audit_verify(env).startswith("ok ")
        assert "Traceback" not in worker.log()


def _all_sent(url: str) -> bool:
    database = Database(url)
    try:
        with database.reading() as session:
            return set(session.scalars(select(PushDelivery.status))) == {"sent"}
    finally:
        database.dispose()


def test_with_the_database_unreachable_the_api_and_pages_answer_503_with_retry_after(
        settings):
    """What a phone's outbox keeps the report for: 503 and Retry-After, in the API's error
    shape, never a 500; a page says the same to a signed-in user, whose account cannot be
    read."""
    working = create_app(settings)
    signed_in = login(working.test_client(), OFFICER).get_cookie("besik_session")
    working.extensions["besik.db"].dispose()
    assert signed_in is not None
    app = create_app(replace(settings, database_url=f"postgresql+psycopg://nobody@127.0.0.1:"
                                                    f"{free_port()}/gone"))
    client = app.test_client()
    try:
        api = client.post("/api/v1/reports", json=report_body(),
                          headers={"Authorization": "Bearer any-token"})
        client.set_cookie("besik_session", signed_in.value)
        page = client.get("/inbox?lang=ru")
    finally:
        app.extensions["besik.db"].dispose()
    assert api.status_code == 503 and api.headers["Retry-After"] == "5"
    assert api.get_json() == {"error": {
        "code": "unavailable", "message": "The service is unavailable: try again shortly."}}
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert page.headers["Retry-After"] == "5"


@postgresql_lane_only
def test_a_read_connection_cut_at_the_end_of_a_request_does_not_spoil_its_answer(
        app, database_url):
    """The database cut the request's read connection after the view answered (a restart):
    ending that read transaction fails, and must not turn the answer into a 500."""
    killer = create_engine(database_url)

    @app.after_request
    def cut_the_read_connection(response: Response) -> Response:
        pid = g.db_session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with killer.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(100):
                if not conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"),
                                    {"pid": pid}).first():
                    break
                time.sleep(0.02)
        return response

    try:
        response = app.test_client().get("/api/v1/reports", headers=bearer(app, NURSE))
    finally:
        killer.dispose()
    assert response.status_code == 200, response.data


# --- 3. the push service storms, rate-limits and hangs --------------------------------------


@postgresql_lane_only
def test_a_storming_limited_or_hung_endpoint_is_backed_off_while_others_are_served(
        app, push_settings, push_service, monkeypatch):
    healthy, storming, limited, hanging = (subscribe(app, push_service) for _ in range(4))
    push_service.storm(storming, 503)
    push_service.storm(limited, 429, retry_after=3)
    push_service.stall(hanging, 3)
    monkeypatch.setattr(push, "TIMEOUT_SECONDS", 1)  # the hung endpoint times out sooner
    client, nurse = app.test_client(), bearer(app, NURSE)
    notices = set()
    for _ in range(10):
        response = client.post("/api/v1/reports", json=report_body(), headers=nurse)
        assert response.status_code == 201
        notices.add(response.get_json()["notices"][0]["id"])
    worker = Worker(app.extensions["besik.db"], push_settings, name="faults")
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            worker.run_once()
            stop.wait(0.1)

    thread = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        served = push_service.wait_for(10, timeout=15, subscription=healthy)
        served_at = max(r.arrived_monotonic for r in served)
        stop.wait(max(0.0, 8 - (time.monotonic() - started)))
        calmed_at = time.monotonic()
        for device in (storming, limited, hanging):
            push_service.calm(device)
        for device in (storming, limited, hanging):
            push_service.wait_for(10, timeout=25, subscription=device)
    finally:
        stop.set()
        thread.join(timeout=15)
    # The healthy device had everything while the hung one timed out once or twice, not
    # once per message (ten 1-second timeouts in a row, on a machine of any speed).
    knocks = [r for r in push_service.attempts(hanging) if r.arrived_monotonic < served_at]
    assert len(knocks) <= 3, len(knocks)
    during = {device: [r for r in push_service.attempts(device)
                       if r.arrived_monotonic < calmed_at]
              for device in (storming, limited, hanging)}
    # One knock per backoff step for the whole device (0, 1, 3, 7 s), not one per message.
    assert 2 <= len(during[storming]) <= 5, len(during[storming])
    assert 2 <= len(during[hanging]) <= 5, len(during[hanging])
    limited_at = [r.arrived_monotonic for r in during[limited]]
    assert 2 <= len(limited_at) <= 4, limited_at
    assert all(b - a >= 2.9 for a, b in pairwise(limited_at)), limited_at
    for device in (healthy, storming, limited):
        got = Counter(r.payload["notice_id"] for r in push_service.received(device))
        assert set(got) == notices and set(got.values()) == {1}, device.endpoint_id
    # A request that timed out may have arrived (the stalled service kept it): sent again,
    # as a phone would resend; every other notice exactly once.
    got = Counter(r.payload["notice_id"] for r in push_service.received(hanging))
    assert set(got) == notices
    assert sum(got.values()) - len(notices) <= len(during[hanging]), got
    with app.extensions["besik.db"].reading() as session:
        assert set(session.scalars(select(PushDelivery.status))) == {"sent"}


@postgresql_lane_only
def test_a_pass_that_died_after_claiming_is_taken_up_by_the_same_worker_at_once(
        app, push_service):
    device = subscribe(app, push_service)
    response = app.test_client().post("/api/v1/reports", json=report_body(),
                                      headers=bearer(app, NURSE))
    assert response.status_code == 201
    worker = Worker(app.extensions["besik.db"], app.config["BESIK"], name="faults")
    now = clock.now()
    assert len(worker.claim(now)) == 1  # ... and the database went away mid-pass
    assert Worker(app.extensions["besik.db"], app.config["BESIK"], name="other"
                  ).run_once(now).sent == 0  # another worker respects the lease
    assert worker.run_once(now).sent == 1  # its owner does not wait the lease out
    push_service.wait_for(1, subscription=device)


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7), (" 0 ", 0), ("soon", None), (None, None),
    ("<in 30 s>", 30), ("<30 s ago>", 0),
])
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header, seconds, clock):
    clock.freeze(datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    if header == "<in 30 s>":
        header = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    elif header == "<30 s ago>":
        header = format_datetime(clock.now() - timedelta(seconds=30), usegmt=True)
    headers = {} if header is None else {"Retry-After": header}
    assert push._retry_after(headers) == seconds


# --- 4. two web servers, one database ------------------------------------------------------


@postgresql_lane_only
def test_two_web_servers_on_one_database_file_distinct_whole_reports(
        app, push_settings, push_service, database_url, tmp_path):
    subscribe(app, push_service)
    env = app_env(push_settings)
    first = WebServer(env, tmp_path / "first.log", workers=2)
    second = WebServer(env, tmp_path / "second.log", workers=2)
    try:
        first.start()
        second.start()
        phones = Phones([first.url, second.url], token_of(app, NURSE), threads=8,
                        per_thread=60)
        phones.start()
        phones.join()
    finally:
        first.stop()
        second.stop()
    assert phones.unexpected == [], phones.unexpected[:5]
    assert len(phones.ids) == 480
    assert_whole(database_url, phones.ids, deliveries_per_notice=1)
    assert audit_verify(env).startswith("ok ")
