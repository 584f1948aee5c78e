"""The administrator's figures on a fixture with known answers, and the coverage monitor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from reporting.models import Agency, District, PushSubscription, Region, Role, User
from reporting.worker import Worker
from tests.conftest import bearer, report_body

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 11:00 in Almaty, a Monday


def _file(client, nurse, minutes_ago: int, **body) -> dict:
    discovered = (T0 - timedelta(minutes=minutes_ago)).isoformat()
    response = client.post("/api/v1/reports", json=report_body(discovered_at=discovered,
                                                               **body), headers=nurse)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def known(app, client, nurse, clock):
    """R1 on time and acknowledged after 10 min; R2 filed two hours after discovery (late);
    R3 risk-flagged, so the police got it too; at T0 + 40 min nobody else acknowledged."""
    clock.freeze(T0)
    admin = bearer(app, "admin@besik.example")
    officer = bearer(app, "officer@besik.example")
    r1 = _file(client, nurse, 10)
    r2 = _file(client, nurse, 120)
    r3 = _file(client, nurse, 10, risk_flags=["payment_suspected"])
    clock.advance(timedelta(minutes=10))
    assert client.post(f"/api/v1/reports/{r1['id']}/acknowledge",
                       headers=officer).status_code == 200
    clock.advance(timedelta(minutes=30))
    Worker(app.extensions["besik.db"], app.config["BESIK"], name="w").run_once()
    return {"admin": admin, "r1": r1, "r2": r2, "r3": r3}


def test_facility_figures(client, known):
    data = client.get("/api/v1/compliance", headers=known["admin"]).get_json()
    pc1 = next(f for f in data["facilities"] if f["code"] == "PC1")
    assert (pc1["reports"], pc1["on_time"], pc1["late"]) == (3, 2, 1)
    assert (pc1["on_time_statutory"], pc1["late_statutory"]) == (3, 0)
    assert pc1["on_time_rate"] == pytest.approx(0.667)
    assert pc1["median_minutes_to_file"] == pytest.approx(10.0)
    cp4 = next(f for f in data["facilities"] if f["code"] == "CP4")
    assert (cp4["reports"], cp4["on_time_rate"], cp4["median_minutes_to_file"]) == (0, None,
                                                                                  None)


def test_agency_figures(client, known):
    data = client.get("/api/v1/compliance", headers=known["admin"]).get_json()
    agencies = {a["code"]: a for a in data["agencies"]}
    yes = agencies["GRD-AST-YES"]
    assert (yes["notices"], yes["acknowledged"], yes["overdue_now"], yes["escalations"]) == (
        3, 1, 2, 2)
    assert yes["median_minutes_to_ack"] == pytest.approx(10.0)
    assert yes["p90_minutes_to_ack"] == pytest.approx(10.0)
    police = agencies["POL-AST"]
    assert (police["notices"], police["acknowledged"], police["overdue_now"],
            police["escalations"]) == (1, 0, 1, 1)
    assert agencies["GRD-AST-SAR"]["notices"] == 0


def test_overdue_now_most_overdue_first(client, known):
    data = client.get("/api/v1/compliance", headers=known["admin"]).get_json()
    overdue = [(o["reference"], o["rule"], o["agency"]) for o in data["overdue"]]
    r2, r3 = known["r2"]["reference"], known["r3"]["reference"]
    assert sorted(overdue) == sorted([(r2, "acknowledge_notice", "GRD-AST-YES"),
                                      (r3, "acknowledge_notice", "GRD-AST-YES"),
                                      (r3, "acknowledge_notice", "POL-AST")])
    due = [o["due_at"] for o in data["overdue"]]
    assert due == sorted(due)


def test_the_period_excludes_what_came_before(client, known):
    data = client.get("/api/v1/compliance?from=2026-12-01&to=2026-12-31",
                      headers=known["admin"]).get_json()
    assert all(f["reports"] == 0 for f in data["facilities"])
    assert client.get("/api/v1/compliance?from=2026-12-02&to=2026-12-01",
                      headers=known["admin"]).status_code == 422


def test_a_regions_admin_sees_only_that_region(app, client, known):
    from reporting.passwords import hash_password

    with app.extensions["besik.db"].writing() as session:
        other = session.scalars(select(Region).where(Region.code == "ALA")).one()
        ast = session.scalars(select(Region.id).where(Region.code == "AST")).one()
        for email, region_id in (("ala-admin@besik.example", other.id),
                                 ("ast-admin@besik.example", ast)):
            session.add(User(email=email, name=email, role=Role.ADMIN, region_id=region_id,
                             password_hash=hash_password("x" * 16)))
    ala, ast_admin = (bearer(app, "ala-admin@besik.example"),
                      bearer(app, "ast-admin@besik.example"))
    ala_data = client.get("/api/v1/compliance", headers=ala).get_json()
    assert ala_data == {"from": ala_data["from"], "to": ala_data["to"], "facilities": [],
                        "agencies": [], "overdue": []}
    assert client.get("/api/v1/compliance?region=AST", headers=ala).status_code == 404
    assert client.get("/api/v1/compliance?region=ALA", headers=ast_admin).status_code == 404
    narrowed = client.get("/api/v1/compliance?region=AST", headers=known["admin"]).get_json()
    assert {f["code"] for f in narrowed["facilities"]} == {"PC1", "CP4"}


@pytest.mark.parametrize("email", ["nurse@besik.example", "officer@besik.example"])
def test_reporters_and_officers_get_403(app, client, email):
    headers = bearer(app, email)
    for url in ("/api/v1/compliance", "/api/v1/coverage"):
        assert client.get(url, headers=headers).status_code == 403


# --- coverage -------------------------------------------------------------------------------

def _gaps(client, app) -> set[tuple[str, str]]:
    data = client.get("/api/v1/coverage", headers=bearer(app, "admin@besik.example")).get_json()
    return {(g["kind"], g["code"]) for g in data["gaps"]}


def _give_every_district_a_heard_officer(app, now: datetime) -> None:
    """Fresh devices for an officer of each district's guardianship agency."""
    from reporting.passwords import hash_password

    with app.extensions["besik.db"].writing() as session:
        for agency in session.scalars(select(Agency).where(Agency.kind == "guardianship")):
            user = User(email=f"o-{agency.code}@x.example", name=agency.code,
                        role=Role.OFFICER, agency_id=agency.id,
                        password_hash=hash_password("x" * 16))
            session.add(user)
            session.flush()
            session.add(PushSubscription(user_id=user.id, endpoint=f"https://fcm.googleapis.com/"
                                         f"fcm/send/{agency.code}", p256dh="k", auth="a",
                                         created_at=now, last_success_at=now))


def test_coverage_is_empty_when_all_is_well(app, client, clock):
    _give_every_district_a_heard_officer(app, clock.now())
    assert _gaps(client, app) == set()


def test_coverage_finds_each_kind_of_gap(app, client, nurse, clock):
    now = clock.now()
    _give_every_district_a_heard_officer(app, now)
    with app.extensions["besik.db"].writing() as session:
        # Saryarka's agency leaves for another region: CP4 is routed nowhere...
        elsewhere = Region(code="ZZZ", name="Elsewhere")
        session.add(elsewhere)
        session.flush()
        session.execute(update(Agency).where(Agency.code == "GRD-AST-SAR")
                        .values(district_id=None, region_id=elsewhere.id))
        # ...and Nura's officer's device has been silent for a week.
        nura = session.scalars(select(Agency.id).where(Agency.code == "GRD-AST-NUR")).one()
        session.execute(update(PushSubscription).where(PushSubscription.user_id.in_(
            select(User.id).where(User.agency_id == nura))).values(
            last_success_at=now - timedelta(days=8)))
    assert client.post("/api/v1/devices/heartbeat", json={
        "device_id": "phone-0001", "outbox_depth": 2,
        "oldest_unsent_at": (now - timedelta(minutes=20)).isoformat()},
        headers=nurse).status_code == 204
    found = _gaps(client, app)
    assert ("facility_unrouted", "CP4") in found
    assert ("district_unreachable", "AST-SAR") in found
    assert ("district_unreachable", "AST-NUR") in found
    assert ("phone_stuck", "device:phone-0001") in found
    assert any(kind == "subscription_stale" for kind, _ in found)
    assert ("district_unreachable", "AST-YES") not in found
    # A regional guardianship agency turns "nowhere" into a flagged fallback.
    with app.extensions["besik.db"].writing() as session:
        ast = session.scalars(select(Region.id).where(Region.code == "AST")).one()
        session.add(Agency(code="GRD-AST", name="Astana guardianship", kind="guardianship",
                           region_id=ast, district_id=None))
    found = _gaps(client, app)
    assert ("facility_fallback", "CP4") in found and ("facility_unrouted", "CP4") not in found


def test_a_district_without_any_agency_is_unreachable(app, client, clock):
    _give_every_district_a_heard_officer(app, clock.now())
    with app.extensions["besik.db"].writing() as session:
        ast = session.scalars(select(Region.id).where(Region.code == "AST")).one()
        session.add(District(code="AST-NEW", name="New", region_id=ast))
    assert ("district_unreachable", "AST-NEW") in _gaps(client, app)


@pytest.mark.parametrize(("values", "median", "p90"), [
    ([7.0], 7.0, 7.0),
    ([1.0, 2.0], 1.5, 2.0),
    ([5.0, 1.0, 3.0], 3.0, 5.0),
    ([float(v) for v in range(1, 11)], 5.5, 9.0),
    ([float(v) for v in range(1, 21)], 10.5, 18.0),
    ([None, 1.0, None, 3.0], 2.0, 3.0),  # a notice not acknowledged has no value
    ([None], None, None),
])
def test_median_and_p90_are_computed_in_sql(db, values, median, p90):
    from sqlalchemy import Float, cast, literal, union_all

    from reporting.percentiles import median as median_of
    from reporting.percentiles import median_and_p90

    rows = union_all(*[select(literal(1).label("key"), cast(literal(v), Float).label("value"))
                       for v in values]).subquery()
    (found,) = db.execute(select(median_of(rows.c.value), median_and_p90(rows.c.value))
                          .group_by(rows.c.key)).all()
    assert found[0] == (median and pytest.approx(median))
    assert found[1] == (median and pytest.approx(median), p90 and pytest.approx(p90))


def test_the_dashboard_shows_the_same_figures_with_a_chart_and_gaps(app, client, known):
    from tests.conftest import login

    login(client, "admin@besik.example")
    page = client.get("/admin")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html and 'role="img"' in html
    assert 'data-facility="PC1"><th scope="row">PC1 Perinatal Centre No. 1</th><td>3</td>' \
           '<td>2</td><td>1</td>' in html
    assert 'data-agency="GRD-AST-YES"' in html
    for reference in (known["r2"]["reference"], known["r3"]["reference"]):
        assert reference in html
    assert html.count("data-countdown=") == 3
    assert 'data-gap-kind="district_unreachable"' in html  # demo officers have no devices
    assert "<script>" not in html  # the chart needs no script
    bad = client.get("/admin?from=2026-12-02&to=2026-12-01")
    assert bad.status_code == 422 and 'id="from-error"' in bad.get_data(as_text=True)


def test_reporters_and_officers_get_403_on_the_dashboard(client):
    from tests.conftest import login

    for email in ("nurse@besik.example", "officer@besik.example"):
        login(client, email)
        assert client.get("/admin").status_code == 403
        client.post("/logout", headers={"X-CSRFToken": client.get("/api/v1/csrf")
                                        .get_json()["csrf_token"]})


def test_the_worker_alerts_each_new_gap_once_to_the_regions_admins(app, client, clock):
    from reporting.models import CoverageGap
    from tests.push_service import PushService

    with PushService() as service:
        from dataclasses import replace

        from reporting import create_app
        from reporting.push import public_key_b64

        settings = replace(app.config["BESIK"], push_allowed_hosts=(service.allowed_entry,))
        service.expect_vapid_public_key(public_key_b64(str(settings.vapid_private_key_file)))
        pushing = create_app(settings)
        admin_device = service.new_subscription()
        assert pushing.test_client().post("/api/v1/push/subscriptions",
                                          json=admin_device.as_json(),
                                          headers=bearer(pushing, "admin@besik.example")
                                          ).status_code == 201
        database = pushing.extensions["besik.db"]
        first = Worker(database, settings, name="w1")
        second = Worker(database, settings, name="w2")
        first.run_once()
        second.run_once()  # another worker finds the same gaps: nothing is sent twice
        messages = [m.payload for m in service.wait_for(5, subscription=admin_device)]
        assert sorted(m["title"] for m in messages) == sorted(
            ["Coverage gap: Nobody would hear a report from this district"] * 5)
        assert {m["type"] for m in messages} == {"coverage"}
        assert all(m["ack_token"] is None for m in messages)
        # Fifteen minutes later, nothing new: nothing more is sent; a fixed gap closes.
        _give_every_district_a_heard_officer(pushing, clock.now())
        clock.advance(timedelta(minutes=15))
        first.run_once()
        assert len(service.received(admin_device)) == 5
        with database.reading() as session:
            open_gaps = session.scalars(select(CoverageGap).where(
                CoverageGap.closed_at.is_(None))).all()
        assert open_gaps == []
        database.dispose()


# --- At scale: the overdue list's two ways, and the plans of migration 0008's indexes ---------


@pytest.fixture
def staggered(app, client, clock):
    """Reports filed five minutes apart, Astana's and Almaty's in turn, none acknowledged: at
    T0 + 1 h, four acknowledge_notice deadlines are overdue, each due at its own moment."""
    from tests.conftest import OTHER_NURSE, add_other_region

    add_other_region(app)
    clock.freeze(T0)
    nurses = [bearer(app, email) for email in ("nurse@besik.example", OTHER_NURSE,
                                               "nurse2@besik.example", OTHER_NURSE)]
    references = []
    for nurse in nurses:
        references.append(_file(client, nurse, 10)["reference"])
        clock.advance(timedelta(minutes=5))
    clock.freeze(T0 + timedelta(hours=1))
    return {"AST": [references[0], references[2]], "ALA": [references[1], references[3]]}


@pytest.mark.parametrize("lookahead", [1, 2, 3, 4, 10_000])
def test_a_regions_overdue_list_is_the_same_whichever_way_it_is_read(
        db, clock, staggered, monkeypatch, lookahead):
    """Among the `lookahead` oldest open deadlines when `limit` of them are the region's,
    else from the region's own reports: the region's oldest, in order, either way."""
    from reporting import compliance

    monkeypatch.setattr(compliance, "OVERDUE_LOOKAHEAD", lookahead)
    db.rollback()
    now = clock.now()
    period = compliance.default_period(now)
    regions = {code: id_ for code, id_ in db.execute(select(Region.code, Region.id))}
    country = compliance.overdue(db, compliance.Scope(None, *period), now)
    assert [o["reference"] for o in country] == [staggered["AST"][0], staggered["ALA"][0],
                                                 staggered["AST"][1], staggered["ALA"][1]]
    for code in ("AST", "ALA"):
        for limit in (1, 2, 3, 200):
            found = compliance.overdue(db, compliance.Scope(regions[code], *period), now, limit)
            assert [o["reference"] for o in found] == staggered[code][:limit]
            assert found == [o for o in country if o["reference"] in staggered[code]][:limit]


def test_the_figures_read_only_the_period_through_the_covering_indexes(sqlite_template,
                                                                        tmp_path):
    """SQLite plans from no statistics (nothing runs ANALYZE), so its plans here are the
    plans over a million reports: no report, notice or deadline table is read whole, and
    the period's joins are answered from the covering indexes."""
    import re
    import shutil

    from sqlalchemy import event

    from reporting import compliance
    from reporting.db import Database

    shutil.copyfile(sqlite_template, tmp_path / "plans.db")
    database = Database(f"sqlite:///{tmp_path / 'plans.db'}")
    seen: list[tuple[str, object]] = []

    @event.listens_for(database.engine, "before_cursor_execute")
    def record(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    plans = {}
    with database.reading() as session:
        ast = session.scalars(select(Region.id).where(Region.code == "AST")).one()
        for name, region in (("country", None), ("region", ast)):
            seen.clear()
            compliance.figures(session, compliance.Scope(region, *compliance.default_period(T0)),
                               T0)
            plans[name] = "\n".join(
                row[3] for statement, parameters in seen
                for row in session.connection().exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters))
    database.dispose()
    for name, plan in plans.items():
        assert not re.search(r"^SCAN (reports|notices|deadlines)\b", plan, re.M), (name, plan)
        # The reporting outcome is the report's own: no deadline is looked up per report.
        assert "ix_deadlines_report_id_rule (report_id=? AND rule=?)" not in plan, (name, plan)
        assert ("USING COVERING INDEX ix_notices_agency_id_sent_at "
                "(agency_id=? AND sent_at>? AND sent_at<?)") in plan, (name, plan)
        assert "SEARCH deadlines USING INDEX ix_deadlines_overdue (due_at<?)" in plan, (name, plan)
        assert ("SEARCH reports USING COVERING INDEX ix_reports_facility_id_received_at_outcome "
                "(facility_id=? AND received_at>? AND received_at<?)") in plan, (name, plan)
    # The country's facilities and agencies are read in key order: their rows come grouped,
    # with no sort to group them (a region's are found through its districts, then sorted).
    assert "USE TEMP B-TREE FOR GROUP BY" not in plans["country"], plans["country"]


def test_a_reports_deadlines_due_together_are_listed_in_the_order_they_were_made(client, known):
    """R3's guardianship and police notices were sent, and fall due, at the same moment:
    the guardianship one was made first, on every database and whatever the plan."""
    data = client.get("/api/v1/compliance", headers=known["admin"]).get_json()
    r3 = [o["agency"] for o in data["overdue"] if o["reference"] == known["r3"]["reference"]]
    assert r3 == ["GRD-AST-YES", "POL-AST"]


def _outcomes(app) -> list[tuple[object, ...]]:
    """Each report's copy of its reporting outcome beside its deadlines' own values."""
    from reporting.models import Deadline, Report

    with app.extensions["besik.db"].reading() as session:
        found = []
        for report in session.scalars(select(Report)):
            rules = {d.rule: d for d in session.scalars(
                select(Deadline).where(Deadline.report_id == report.id))}
            target = rules.get("report_to_guardianship")
            statutory = rules.get("report_to_guardianship_statutory")
            found.append((
                (report.guardianship_due_at, report.guardianship_statutory_due_at,
                 report.guardianship_reported_at),
                (target and target.due_at, statutory and statutory.due_at,
                 target and target.met_at)))
        return found


def test_a_report_no_guardianship_agency_heard_is_late_once_due(app, client, nurse, clock):
    """Routed to nobody in guardianship, the reporting deadlines stay open: not on time,
    and late once the internal target has passed (the statutory bound later)."""
    clock.freeze(T0)
    with app.extensions["besik.db"].writing() as session:
        session.execute(update(Agency).where(Agency.kind == "guardianship")
                        .values(is_active=False))
    _file(client, nurse, 10)
    admin = bearer(app, "admin@besik.example")

    def pc1() -> tuple[int, int, int, int]:
        data = client.get("/api/v1/compliance", headers=admin).get_json()
        row = next(f for f in data["facilities"] if f["code"] == "PC1")
        return row["on_time"], row["late"], row["on_time_statutory"], row["late_statutory"]

    assert pc1() == (0, 0, 0, 0)
    clock.advance(timedelta(hours=2))
    assert pc1() == (0, 1, 0, 0)
    clock.advance(timedelta(days=7))
    assert pc1() == (0, 1, 0, 1)
    [(copied, own)] = _outcomes(app)
    assert copied == own and copied[2] is None


def test_every_report_carries_its_reporting_deadlines_as_they_are(app, known):
    """The compliance figures read the report's copy: it is the deadlines' own values, for
    reports on time, late and risk-flagged alike."""
    outcomes = _outcomes(app)
    assert len(outcomes) == 3
    for copied, own in outcomes:
        assert copied == own
        assert None not in copied
