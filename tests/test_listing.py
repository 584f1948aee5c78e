"""The list keeps the bodies it rendered (reporting/listing.py) and renders a report again
only when something it shows moved: after each kind of change, a listed report is exactly
what GET /reports/<id> answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from reporting.models import Agency, Notice, PushDelivery, Report, User
from tests.conftest import bearer, report_body


def _one_order(report: dict) -> dict:
    return {**report,
            "notices": sorted(report["notices"], key=lambda n: n["agency"]["code"]),
            "deadlines": sorted(report["deadlines"], key=lambda d: json.dumps(d)),
            "timeline": sorted(report["timeline"], key=lambda e: json.dumps(e))}


def _listed_as_alone(client, headers, report_id: str, path: str = "/api/v1/reports") -> dict:
    """The report as the list shows it, checked against the report shown alone."""
    listed = {item["id"]: item for item in client.get(path, headers=headers).get_json()["items"]}
    alone = client.get(f"/api/v1/reports/{report_id}", headers=headers).get_json()
    assert _one_order(listed[report_id]) == _one_order(alone)
    return listed[report_id]


def _write(app, statement) -> None:
    with app.extensions["besik.db"].writing() as session:
        session.execute(statement)


def test_a_kept_body_follows_every_change_the_list_shows(app, client, nurse, clock):
    clock.freeze(datetime.now(UTC))
    report = client.post("/api/v1/reports", json=report_body(risk_flags=["payment_suspected"]),
                         headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    first = _listed_as_alone(client, officer, report["id"])
    assert client.get("/api/v1/reports", headers=officer).get_json()["items"][0] == first

    # the report's own rows: the revision moves (acknowledgement, then an action)
    assert client.post(f"/api/v1/reports/{report['id']}/acknowledge", headers=officer,
                       json={"note": "on my way"}).status_code == 200
    assert _listed_as_alone(client, officer, report["id"])["state"] == "acknowledged"
    assert client.post(f"/api/v1/reports/{report['id']}/actions", headers=officer,
                       json={"action": "examined"}).status_code == 201
    _listed_as_alone(client, officer, report["id"])

    # a change to the report's row alone (the database raises its revision)
    _write(app, update(Report).where(Report.id == report["id"]).values(notes="seen again"))
    assert _listed_as_alone(client, officer, report["id"])["notes"] == "seen again"

    # names in their own tables: the agency's, the acknowledger's, the reporter's
    with app.extensions["besik.db"].reading() as session:
        notices = list(session.scalars(select(Notice).where(
            Notice.report_id == report["id"])))
    _write(app, update(Agency).where(Agency.id.in_([n.agency_id for n in notices]))
           .values(name=Agency.name + " (renamed)"))
    listed = _listed_as_alone(client, officer, report["id"])
    assert all(n["agency"]["name"].endswith("(renamed)") for n in listed["notices"])
    _write(app, update(User).where(User.email == "officer@besik.example")
           .values(name="Officer Renamed"))
    listed = _listed_as_alone(client, officer, report["id"])
    assert "Officer Renamed" in json.dumps(listed)
    _write(app, update(User).where(User.email == "nurse@besik.example")
           .values(name="Nurse Renamed"))
    assert _listed_as_alone(client, officer, report["id"])["reporter"]["name"] == "Nurse Renamed"

    # a push sent changes a delivery, not the notice: the timeline shows it delivered
    now = datetime.now(UTC)
    with app.extensions["besik.db"].writing() as session:
        officer_id = session.scalars(select(User.id).where(
            User.email == "officer@besik.example")).one()
        session.add(PushDelivery(user_id=officer_id, notice_id=notices[0].id, kind="notice",
                                 status="sent", next_attempt_at=now, created_at=now,
                                 sent_at=now))
    listed = _listed_as_alone(client, officer, report["id"])
    assert any(e["event"] == "delivered" for e in listed["timeline"])


def test_a_kept_body_is_rendered_again_when_a_due_moment_passes(app, client, nurse, clock):
    clock.freeze(datetime.now(UTC))
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    officer = bearer(app, "officer@besik.example")
    before = _listed_as_alone(client, officer, report["id"])
    assert before["notices"][0]["state"] == "pending"
    clock.advance(timedelta(hours=1))  # acknowledge_notice (30 min) has passed
    after = _listed_as_alone(client, officer, report["id"])
    assert after["notices"][0]["state"] == "overdue"
    assert after["notices"][0]["is_late"] is True
    assert [d["state"] for d in after["deadlines"]] != [d["state"] for d in before["deadlines"]]


def test_a_page_is_the_same_json_whether_its_bodies_were_kept_or_not(app, client, nurse):
    for _ in range(3):
        client.post("/api/v1/reports", json=report_body(), headers=nurse)
    officer = bearer(app, "officer@besik.example")
    fresh = client.get("/api/v1/reports?limit=2", headers=officer)
    kept = client.get("/api/v1/reports?limit=2", headers=officer)
    assert fresh.mimetype == kept.mimetype == "application/json"
    assert fresh.get_json() == kept.get_json()
    assert fresh.get_json()["next_cursor"] is not None
    assert len(fresh.get_json()["items"]) == 2


# --- an officer's pages, found through the agency's notices -------------------------------------

OFFICERS = ("officer@besik.example", "officer2@besik.example", "police@besik.example")
STATES = (None, "pending", "overdue", "acknowledged", "closed")


def _paged(client, headers, state: str | None, limit: int) -> list[str]:
    """Every id the list shows, page after page."""
    ids: list[str] = []
    cursor = None
    while True:
        query = f"limit={limit}" + (f"&state={state}" if state else "")
        if cursor:
            query += f"&cursor={cursor}"
        page = client.get(f"/api/v1/reports?{query}", headers=headers).get_json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def _in_scope(app, email: str, state: str | None, now: datetime) -> list[str]:
    """The same list read through the scope rule itself (access.visible_reports)."""
    from reporting.access import visible_reports
    from reporting.views.api import _state_filter
    from reporting.vocabulary import ReportFilter

    with app.extensions["besik.db"].reading() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        query = visible_reports(user)
        if state:
            query = query.where(_state_filter(ReportFilter(state), now))
        return list(session.scalars(query.with_only_columns(Report.id).order_by(
            Report.received_at.desc(), Report.id.desc())))


def test_an_officers_pages_hold_exactly_the_agencys_reports_in_scope_newest_first(
        app, client, nurse, clock):
    """Each officer's list, in every state and paged through, is what the scope rule finds,
    in the same order: reports of other agencies left out, reports received at the same
    moment ordered by id, a police notice added by an amendment found by its report's time."""
    nurse2 = bearer(app, "nurse2@besik.example")
    headers = {email: bearer(app, email) for email in OFFICERS}
    start = datetime.now(UTC).replace(microsecond=0)
    clock.freeze(start)
    filed = []
    for i in range(14):
        if i % 4 == 0:
            clock.advance(timedelta(minutes=11))  # every fourth moment holds several reports
        body = report_body(risk_flags=["payment_suspected"]) if i % 3 == 0 else report_body()
        response = client.post("/api/v1/reports", json=body, headers=nurse if i % 2 else nurse2)
        assert response.status_code == 201, response.get_json()
        filed.append(response.get_json()["id"])
    for report_id in filed[1:6]:
        assert client.post(f"/api/v1/reports/{report_id}/acknowledge",
                           headers=headers[OFFICERS[0]]).status_code in (200, 404)
    assert client.post(f"/api/v1/reports/{filed[3]}/actions", json={"action": "closed"},
                       headers=headers[OFFICERS[0]]).status_code == 201
    amended = client.post(f"/api/v1/reports/{filed[1]}/amendments", headers=nurse, json={
        "changes": {"risk_flags": ["third_party_claim"]}, "reason": "a man asked for the child"})
    assert amended.status_code == 201, amended.get_json()
    clock.advance(timedelta(minutes=20))  # the earliest notices fall overdue, the last do not

    with app.extensions["besik.db"].reading() as session:
        copies = session.execute(select(Notice.report_received_at, Report.received_at)
                                 .join(Report, Report.id == Notice.report_id)).all()
    assert len(copies) > len(filed)
    assert all(copy == received for copy, received in copies)  # the notices' copies

    seen_states = set()
    for email in OFFICERS:
        for state in STATES:
            expected = _in_scope(app, email, state, clock.now())
            for limit in (1, 3):  # one a page: a tie broken the wrong way shows at once
                assert _paged(client, headers[email], state, limit) == expected, (email, state)
            seen_states |= {state} if expected else set()
    assert seen_states == set(STATES)  # each state's list held reports somewhere


def _officers_page_statement(app, client, nurse) -> tuple[str, Any]:
    """The statement (and its parameters) of an officer's page of two pending reports."""
    from sqlalchemy import event

    officer = bearer(app, "officer@besik.example")
    for _ in range(3):
        assert client.post("/api/v1/reports", json=report_body(), headers=nurse).status_code \
            == 201
    engine = app.extensions["besik.db"].engine
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "routed" in statement and "report_received_at" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        page = client.get("/api/v1/reports?state=pending&limit=2", headers=officer)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert page.status_code == 200 and len(page.get_json()["items"]) == 2
    ((statement, parameters),) = captured  # the page is one statement
    return statement, parameters


def test_an_officers_page_walks_the_agencys_notices_in_order_and_stops_when_full(
        app, client, nurse, clock):
    """The page's reports come from the notices' index, newest first, each report checked
    as it comes, until the page is full: no sort of the agency's reports and no join of all
    of them, whatever the database's statistics say (on PostgreSQL, with the planner told
    that sequential reads and nested loops cost more than anything else)."""
    statement, parameters = _officers_page_statement(app, client, nurse)
    walk = "ix_notices_agency_id_report_order"
    engine = app.extensions["besik.db"].engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # As if the planner found any other way cheaper: a join by hashing or merging
            # the agency's reports, or a sequential read of a table.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
            lines = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)]
            plan = "\n".join(lines)
            at = next(i for i, line in enumerate(lines)
                      if f"Scan Backward using {walk} on notices routed" in line)
            # The page's limit over a loop whose outer side is the walk: it stops when full.
            assert "->  Nested Loop  " in lines[at - 1], plan
            assert "->  Limit  " in lines[at - 2], plan
        else:
            rows = list(conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            plan = "\n".join(row[3] for row in rows)
            (subquery,) = [row[0] for row in rows if row[3].startswith("LIST SUBQUERY")]
            inside, parents = [], {subquery}
            for node, parent, _, detail in rows:
                if parent in parents:
                    parents.add(node)
                    inside.append(detail)
            assert any(f"USING COVERING INDEX {walk}" in detail for detail in inside), plan
            assert not any("TEMP B-TREE" in detail for detail in inside), plan


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_pages_stamps_find_each_notices_sent_pushes_by_the_notice(app, client, nurse):
    """SQLite, without statistics, chose between an index on the notice and one on the
    status by their order: it read every sent push of the service for each notice of a page.
    One index on both leaves no choice (PostgreSQL plans from its statistics)."""
    statement, parameters = _officers_page_statement(app, client, nurse)
    with app.extensions["besik.db"].engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                       parameters)]
    pushes = [detail for detail in plan if "stamp_delivery" in detail]
    assert pushes == ["SEARCH stamp_delivery USING COVERING INDEX "
                      "ix_push_deliveries_notice_id_status (notice_id=? AND status=?)"], plan
