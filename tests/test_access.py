"""Deny by default: every endpoint declares who may use it; the matrix over the URL map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from reporting import create_app
from reporting.access import (
    PUBLIC,
    PUBLIC_ENDPOINTS,
    SIGNED_IN,
    allow,
    declared_access,
    is_token_authenticated,
)
from reporting.models import (
    AuditEntry,
    Deadline,
    Notice,
    Report,
    ReportAction,
    ReportAmendment,
    User,
)
from tests.conftest import (
    OTHER_AGENCY,
    OTHER_NURSE,
    OTHER_REGION,
    add_other_region,
    add_user,
    bearer,
    csrf_token,
    login,
    report_body,
)

ROLES = {"reporter": "nurse@besik.example", "officer": "officer@besik.example",
         "admin": "admin@besik.example"}


def endpoints(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every route, with a placeholder for each argument."""
    found = []
    for rule in app.url_map.iter_rules():
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "00000000-0000-4000-8000-000000000000")
            url = url.replace(f"<path:{arg}>", "css/besik.css")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, url))
    return found


def test_every_endpoint_declares_who_may_use_it(app):
    undeclared = [e for e, _, _ in endpoints(app) if declared_access(app, e) is None]
    assert undeclared == []


def test_an_undeclared_endpoint_is_refused_and_caught_by_the_walk(settings):
    app = create_app(settings)

    @app.get("/forgotten")
    def forgotten() -> str:
        return "personal data"

    assert "forgotten" in [e for e, _, _ in endpoints(app)
                           if declared_access(app, e) is None]
    client = app.test_client()
    login(client, "admin@besik.example")
    response = client.get("/forgotten")
    assert response.status_code == 403
    assert b"personal data" not in response.data
    app.extensions["besik.db"].dispose()


@pytest.mark.parametrize("role", [None, *ROLES])
def test_access_matrix_over_the_whole_url_map(app, role):
    client = app.test_client()
    headers = bearer(app, ROLES[role]) if role else {}
    for endpoint, method, url in endpoints(app):
        declared = declared_access(app, endpoint)
        assert declared is not None
        allowed = PUBLIC in declared or (role is not None and (
            SIGNED_IN in declared or role in declared))
        response = client.open(url, method=method, headers=headers)
        status = response.status_code
        response.close()
        if allowed and is_token_authenticated(app, endpoint) and method == "POST":
            # Its own proof is a token in the body: a made-up one is refused, never a login.
            assert status in (403, 415, 422), (role, method, url, status)
        elif allowed:
            assert status not in (401, 403), (role, method, url, status)
            assert "/login" not in response.headers.get("Location", "") or url == "/logout"
        elif role is None:
            assert status in (401, 302), (role, method, url, status)
            if status == 302:
                assert "/login" in response.headers["Location"]
        else:
            assert status == 403, (role, method, url, status)


def test_anonymous_api_call_gets_401_json_never_a_redirect(client):
    for url in ("/api/v1/reports", "/api/v1/csrf", "/api/v1/audit/verify"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    response = client.post("/api/v1/reports", json=report_body())
    assert response.status_code == 401


def test_anonymous_page_redirects_to_sign_in(client):
    response = client.get("/reports/new")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/reports/new")


def test_officer_cannot_file_a_report(client, app):
    response = client.post("/api/v1/reports", json=report_body(),
                           headers=bearer(app, "officer@besik.example"))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_reporter_cannot_verify_the_audit_log(client, app):
    response = client.get("/api/v1/audit/verify", headers=bearer(app, "nurse@besik.example"))
    assert response.status_code == 403


def test_each_role_lands_on_its_home(app):
    for role, home in (("reporter", "/reports/new"), ("officer", "/inbox"),
                       ("admin", "/admin")):
        client = login(app.test_client(), ROLES[role])
        response = client.get("/")
        assert response.status_code == 302
        assert response.headers["Location"] == home
        assert client.get(home).status_code == 200


# --- The matrix with real ids: every route with an argument, every kind of user ----------

ADMIN_AST = "admin.ast@besik.example"  # a region's admin: Astana
ADMIN_ALA = "admin.ala@besik.example"  # a region's admin: Almaty city
# The records every matrix run files: report key -> (reporter, risk flags).
FILED = {"yes": ("nurse@besik.example", []),  # PC1, Yesil district
         "sar": ("nurse2@besik.example", []),  # CP4, Saryarka district
         "risky": ("nurse@besik.example", ["payment_suspected"]),  # PC1, routed to police too
         "ala": (OTHER_NURSE, [])}  # Almaty city: another region
# Where each report is routed (PRODUCT §4): (report key, agency code) per notice.
NOTICES = (("yes", "GRD-AST-YES"), ("sar", "GRD-AST-SAR"), ("risky", "GRD-AST-YES"),
           ("risky", "POL-AST"), ("ala", OTHER_AGENCY))
ACTION_OF_KIND = {"GRD": "examined", "POL": "investigation_opened"}  # CONTRACT §5


@dataclass(frozen=True)
class Person:
    email: str
    role: str
    sees: frozenset[str]  # the report keys in scope, written out by hand (PRODUCT §1)
    agency: str | None = None


PEOPLE = {person.email.split("@")[0]: person for person in (
    Person("nurse@besik.example", "reporter", frozenset({"yes", "risky"})),
    Person("nurse2@besik.example", "reporter", frozenset({"sar"})),
    Person(OTHER_NURSE, "reporter", frozenset({"ala"})),
    Person("officer@besik.example", "officer", frozenset({"yes", "risky"}), "GRD-AST-YES"),
    Person("officer2@besik.example", "officer", frozenset({"sar"}), "GRD-AST-SAR"),
    Person("police@besik.example", "officer", frozenset({"risky"}), "POL-AST"),
    Person("admin@besik.example", "admin", frozenset(FILED)),
    Person(ADMIN_AST, "admin", frozenset({"yes", "sar", "risky"})),
    Person(ADMIN_ALA, "admin", frozenset({"ala"})),
)}


@dataclass
class World:
    reports: dict[str, str]  # report key -> id
    references: dict[str, str]
    notices: dict[tuple[str, str], str]  # (report key, agency code) -> notice id

    def report_key(self, report_id: str) -> str:
        return next(k for k, v in self.reports.items() if v == report_id)


@pytest.fixture
def world(app) -> World:
    """Astana's demo, Almaty city beside it, a region admin for each, and four real reports."""
    add_other_region(app)
    add_user(app, ADMIN_AST, "admin", region="AST")
    add_user(app, ADMIN_ALA, "admin", region=OTHER_REGION)
    client = app.test_client()
    reports, references, notices = {}, {}, {}
    for key, (reporter, flags) in FILED.items():
        response = client.post("/api/v1/reports", json=report_body(risk_flags=flags),
                               headers=bearer(app, reporter))
        assert response.status_code == 201, response.get_json()
        data = response.get_json()
        reports[key], references[key] = data["id"], data["reference"]
        for notice in data["notices"]:
            notices[(key, notice["agency"]["code"])] = notice["id"]
    assert sorted(notices) == sorted(NOTICES)  # routed as PRODUCT §4 says
    return World(reports, references, notices)


@dataclass(frozen=True)
class Route:
    """What a route with an argument answers: `roles` may use it at all (others: 403);
    within scope it answers `ok`; outside scope 404. `by_token`: the proof is a token in the
    request, so no session or role gets further than 403 with a made-up one."""

    ok: int
    roles: frozenset[str] = frozenset({"reporter", "officer", "admin"})
    by_token: bool = False


OFFICERS = frozenset({"officer"})
CORRECTORS = frozenset({"reporter", "admin"})  # the facility's reporters, admins in scope
CORRECTING = ("api.amend", "reports.correct")  # the routes that write an amendment
# Every (endpoint, method) with an argument, in the order the matrix runs them: reads, then
# acknowledgements, then actions (which need an acknowledged notice), then corrections, then
# the token routes.
ROUTES = {
    ("api.show_report", "GET"): Route(200),
    ("reports.show", "GET"): Route(200),
    ("reports.evidence_record", "GET"): Route(200, frozenset({"officer", "admin"})),
    ("api.acknowledge_report", "POST"): Route(200, OFFICERS),
    ("officer.acknowledge_from_report", "POST"): Route(303, OFFICERS),
    ("officer.acknowledge_from_inbox", "POST"): Route(303, OFFICERS),
    ("api.record_report_action", "POST"): Route(201, OFFICERS),
    ("officer.action_from_report", "POST"): Route(303, OFFICERS),
    ("reports.correct_form", "GET"): Route(200, CORRECTORS),
    ("api.amend", "POST"): Route(201, CORRECTORS),
    ("reports.correct", "POST"): Route(303, CORRECTORS),
    ("officer.ack_page", "GET"): Route(200, by_token=True),
    ("officer.ack_with_token", "POST"): Route(403, by_token=True),
    ("api.acknowledge_with_ack_token", "POST"): Route(403, by_token=True),
}


def routes_with_arguments(app: Flask) -> dict[tuple[str, str], tuple[str, ...]]:
    """(endpoint, method) -> argument names, for every route of the URL map that takes one."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or not rule.arguments:
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found[(rule.endpoint, method)] = tuple(sorted(rule.arguments))
    return found


def test_every_route_with_an_argument_is_in_the_scope_matrix(app):
    found = routes_with_arguments(app)
    assert set(found) == set(ROUTES), "add the new route to ROUTES, with what it answers"
    assert set(found.values()) <= {("report_id",), ("notice_id",)}


def test_a_new_route_with_an_argument_is_caught_by_the_matrix_walk(settings):
    app = create_app(settings)

    @app.get("/reports/<report_id>/evidence")
    @allow(SIGNED_IN)
    def evidence(report_id: str) -> str:
        return report_id

    assert set(routes_with_arguments(app)) - set(ROUTES) == {("evidence", "GET")}
    app.extensions["besik.db"].dispose()


def _targets(world: World, argument: str) -> list[tuple[str, str, str]]:
    """(argument value, report key, agency code or '') for every real record."""
    if argument == "report_id":
        return [(world.reports[key], key, "") for key in FILED]
    assert argument == "notice_id", f"no real records for <{argument}>: add them to World"
    return [(world.notices[(key, agency)], key, agency) for key, agency in NOTICES]


def _expected(route: Route, person: Person, key: str, agency: str) -> int:
    if route.by_token:
        return route.ok
    if person.role not in route.roles:
        return 403
    in_scope = person.agency == agency if agency else key in person.sees
    return route.ok if in_scope else 404


@pytest.mark.parametrize("who", sorted(PEOPLE))
def test_every_route_with_a_real_id_answers_in_scope_and_404_outside(app, world, who):
    person = PEOPLE[who]
    found = routes_with_arguments(app)  # the URL map, walked: nothing may be left out
    assert set(found) == set(ROUTES), "add the new route to ROUTES, with what it answers"
    api = bearer(app, person.email)
    browser = login(app.test_client(), person.email)
    form_token = csrf_token(browser)
    action = ACTION_OF_KIND[(person.agency or "GRD")[:3]]  # the person's own agency's kind
    urls = app.url_map.bind("localhost")
    failures = []
    for (endpoint, method), route in ROUTES.items():
        (argument,) = found[(endpoint, method)]
        for value, key, agency in _targets(world, argument):
            url = urls.build(endpoint, {argument: value}, method=method)
            if endpoint.startswith("api."):  # bearer token, JSON
                body = ({"token": "made-up-token"} if route.by_token
                        else {"action": action} if endpoint.endswith("_action")
                        else {"changes": {"notes": "corrected over the API"},
                              "reason": "matrix"} if endpoint == "api.amend"
                        else {"note": "seen"})
                response = app.test_client().open(url, method=method, headers=api,
                                                  json=body if method == "POST" else None)
            elif method == "POST":  # the pages' forms, in the signed-in browser
                response = browser.post(url, data={"t": "made-up-token"} if route.by_token
                                        else {"csrf_token": form_token, "action": action,
                                              "notes": "corrected in the form",
                                              "reason": "matrix"})
            else:
                response = browser.get(url)
            expected = _expected(route, person, key, agency)
            if response.status_code != expected:
                failures.append((method, endpoint, key, agency, response.status_code,
                                 expected, response.get_data(as_text=True)[:200]))
            if route.by_token and method == "GET":  # the one-tap page shows nothing first
                assert world.references[key] not in response.get_data(as_text=True)
    assert failures == [], "\n".join(map(str, failures))
    _only_own_agency_changed(app, world, person)
    _only_reports_in_scope_corrected(app, world, person)


def _only_own_agency_changed(app: Flask, world: World, person: Person) -> None:
    """Acknowledged and acted on: exactly the notices of the person's own agency."""
    own = {(key, agency) for key, agency in NOTICES if agency == person.agency}
    with app.extensions["besik.db"].reading() as session:
        notices = session.scalars(select(Notice)).all()
        acknowledged = {(world.report_key(n.report_id), n.agency.code): n.acknowledged_by_id
                        for n in notices if n.acknowledged_at is not None}
        actions = sorted((world.report_key(a.report_id), a.user.email)
                         for a in session.scalars(select(ReportAction)))
        user_id = session.scalars(select(User.id).where(User.email == person.email)).one()
    assert acknowledged == dict.fromkeys(own, user_id)
    assert actions == sorted([(key, person.email) for key, _ in own] * 2)  # API and form


def _only_reports_in_scope_corrected(app: Flask, world: World, person: Person) -> None:
    """Corrected: exactly the reports in the person's scope, once by each route that
    corrects, and only by those who may correct."""
    with app.extensions["besik.db"].reading() as session:
        corrected = sorted((world.report_key(a.report_id), a.author.email)
                           for a in session.scalars(select(ReportAmendment)))
    routes = [route for (endpoint, _), route in ROUTES.items() if endpoint in CORRECTING]
    times = sum(1 for route in routes if person.role in route.roles)
    assert corrected == sorted([(key, person.email) for key in person.sees] * times)


# --- An officer of another agency, through the pages: 404, and nothing changes --------------


def _database_state(app: Flask) -> dict[str, Any]:
    """Everything an acknowledgement or an action could touch."""
    with app.extensions["besik.db"].reading() as session:
        return {
            "notices": sorted((n.id, n.acknowledged_at, n.acknowledged_by_id, n.ack_channel,
                               n.escalation_level) for n in session.scalars(select(Notice))),
            "reports": sorted((r.id, str(r.state)) for r in session.scalars(select(Report))),
            "deadlines": sorted((d.id, d.rule, d.met_at)
                                for d in session.scalars(select(Deadline))),
            "actions": session.scalar(select(func.count()).select_from(ReportAction)),
            "audit": session.scalar(select(func.max(AuditEntry.seq))),
        }


def test_officer_cannot_act_on_another_agencys_notice_through_the_pages(app, nurse):
    report = app.test_client().post("/api/v1/reports", json=report_body(),
                                    headers=nurse).get_json()
    (notice,) = report["notices"]
    assert notice["agency"]["code"] == "GRD-AST-YES"
    posts = [(f"/inbox/{notice['id']}/acknowledge", {}),
             (f"/reports/{report['id']}/acknowledge", {}),
             (f"/reports/{report['id']}/actions", {"action": "examined", "note": "x"})]
    intruder = login(app.test_client(), "officer2@besik.example")  # GRD-AST-SAR
    token = csrf_token(intruder)
    before = _database_state(app)
    for url, data in posts:
        response = intruder.post(url, data=data | {"csrf_token": token})
        assert response.status_code == 404, url
        assert report["reference"] not in response.get_data(as_text=True)
    assert _database_state(app) == before
    # The same forms from the notice's own agency do act (so the 404s above were scope).
    owner = login(app.test_client(), "officer@besik.example")
    token = csrf_token(owner)
    for url, data in posts:
        assert owner.post(url, data=data | {"csrf_token": token}).status_code == 303, url
    after = _database_state(app)
    assert after["actions"] == before["actions"] + 1
    assert after["notices"] != before["notices"]


# --- A region's admin sees that region only; the country's admin sees everything -------------


def test_region_admin_sees_only_reports_of_facilities_in_their_region(app, world):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["create-user", "--email", "ast.cli@besik.example", "--name",
                               "Astana Admin", "--role", "admin", "--region", "AST"],
                         input="besik-demo-2026\n")
    assert made.exit_code == 0, made.output
    astana = {"yes", "sar", "risky"}
    for email, sees in (("ast.cli@besik.example", astana), (ADMIN_AST, astana),
                        (ADMIN_ALA, {"ala"}), ("admin@besik.example", set(FILED))):
        api = bearer(app, email)
        listed = app.test_client().get("/api/v1/reports", headers=api).get_json()["items"]
        assert sorted(world.report_key(r["id"]) for r in listed) == sorted(sees), email
        page = login(app.test_client(), email)
        assert f"Reports received in this period: {len(sees)}" in page.get("/admin").get_data(
            True)
        for key, report_id in world.reports.items():
            expected = 200 if key in sees else 404
            assert app.test_client().get(f"/api/v1/reports/{report_id}",
                                         headers=api).status_code == expected, (email, key)
            shown = page.get(f"/reports/{report_id}")
            assert shown.status_code == expected, (email, key)
            assert (world.references[key] in shown.get_data(as_text=True)) is (key in sees)
