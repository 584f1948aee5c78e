"""The working-day calendar: the year view (/admin/calendar), overrides set and removed from
the page and from `flask calendar`, audited, and moving the working-day deadlines of reports
filed afterwards only.

A region's admin may read the calendar (their reports' deadlines are counted on it) but not
change it: the calendar is national.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from reporting.models import AuditEntry, CalendarOverride
from tests.conftest import add_user, bearer, csrf_token, login, report_body

ADMIN = "admin@besik.example"
REGION_ADMIN = "admin.ast@besik.example"
MONDAY = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 11:00 in Almaty
INDEPENDENCE_WEEK = datetime(2026, 12, 14, 6, 0, tzinfo=UTC)  # Monday; the 16th is a holiday


def _end_of_almaty_day(day: str) -> datetime:
    """24:00 of `day` in Almaty (UTC+5), as a UTC moment."""
    return datetime.fromisoformat(f"{day}T00:00:00+05:00").astimezone(UTC) + timedelta(days=1)


def _state(app) -> tuple[list[tuple], int]:
    """(overrides, audit entries): what a refused change must leave alone."""
    with app.extensions["besik.db"].reading() as session:
        overrides = [(o.day, o.is_working_day, o.note)
                     for o in session.scalars(select(CalendarOverride))]
        return overrides, session.scalar(select(func.count()).select_from(AuditEntry))


def _set(browser, **fields: str):
    return browser.post("/admin/calendar", data={"csrf_token": csrf_token(browser), **fields})


def _remove(browser, day: str):
    return browser.post("/admin/calendar/remove",
                        data={"csrf_token": csrf_token(browser), "day": day})


def _cell(html: str, day: str) -> str:
    """The year view's cell of one day."""
    return html.split(f'<td data-day="{day}"')[1].split("</td>")[0]


def _last_audit(app) -> AuditEntry:
    with app.extensions["besik.db"].reading() as session:
        return session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())
                               .limit(1)).one()


# --- The year view ----------------------------------------------------------------------------


def test_the_year_view_marks_holidays_weekends_and_working_days(app):
    page = login(app.test_client(), ADMIN).get("/admin/calendar?year=2026")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-working="false" data-why="holiday"' in _cell(html, "2026-12-16")
    assert "Independence Day" in _cell(html, "2026-12-16")
    assert '<li data-reason-day="2026-12-16"><strong>16</strong> — Independence Day</li>' in html
    assert 'data-working="false" data-why="weekend"' in _cell(html, "2026-12-19")  # Saturday
    assert 'data-working="true" data-why="working"' in _cell(html, "2026-12-15")
    # Twelve months of weeks from Monday: 1 January 2026 is a Thursday.
    assert html.count("<caption") == 12 and "<caption id=\"month-12\">December</caption>" in html
    january = html.split('id="month-1"')[1].split("</tr>", 2)[1]
    assert january.count("<td></td>") == 3 and '<td data-day="2026-01-01"' in january
    assert '<abbr title="Monday">' in html.split("<thead>")[-1].split("</thead>")[0]


def test_the_year_view_speaks_the_pages_language(app):
    browser = login(app.test_client(), ADMIN)
    kazakh = browser.get("/admin/calendar?year=2026&lang=kk").get_data(as_text=True)
    assert "Тәуелсіздік күні" in _cell(kazakh, "2026-12-16")  # the library's Kazakh name
    assert '<caption id="month-12">Желтоқсан</caption>' in kazakh  # Babel's month name
    russian = browser.get("/admin/calendar?year=2026&lang=ru").get_data(as_text=True)
    assert '<caption id="month-12">декабрь</caption>' in russian
    assert "Independence Day" in _cell(russian, "2026-12-16")  # the library has no Russian


def test_a_bad_year_is_422(app):
    browser = login(app.test_client(), ADMIN)
    for year in ("20x6", "3000", "-1"):
        assert browser.get(f"/admin/calendar?year={year}").status_code == 422, year


# --- Changing a day from the page ---------------------------------------------------------


def test_an_override_is_shown_with_its_reason_and_audited_before_and_after(app):
    browser = login(app.test_client(), ADMIN)
    response = _set(browser, day="2026-12-18", kind="day-off", reason="Decree No. 7 moves it")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/admin/calendar?year=2026&saved=2026-12-18")
    html = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved: 2026-12-18." in html
    cell = _cell(html, "2026-12-18")
    assert 'data-working="false" data-why="override"' in cell and "Decree No. 7 moves it" in cell
    assert '<tr data-override="2026-12-18" data-working="false">' in html
    entry = _last_audit(app)
    assert (entry.tag, entry.subject) == ("calendar:changed", "calendar:2026-12-18")
    assert entry.data == {"day": "2026-12-18",
                          "from": {"kind": "working", "source": "library", "reason": None},
                          "to": {"kind": "day-off", "source": "override",
                                 "reason": "Decree No. 7 moves it"}}
    # Changed again: the audit entry holds the override it replaced.
    assert _set(browser, day="2026-12-18", kind="working",
                reason="Decree No. 8 cancels it").status_code == 303
    assert _last_audit(app).data["from"] == {"kind": "day-off", "source": "override",
                                             "reason": "Decree No. 7 moves it"}


def test_removing_an_override_restores_the_librarys_answer(app):
    browser = login(app.test_client(), ADMIN)
    assert _set(browser, day="2026-12-16", kind="working",
                reason="Moved to Saturday").status_code == 303
    html = browser.get("/admin/calendar?year=2026").get_data(as_text=True)
    assert 'data-working="true" data-why="override"' in _cell(html, "2026-12-16")
    response = _remove(browser, "2026-12-16")
    assert response.status_code == 303
    html = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-working="false" data-why="holiday"' in _cell(html, "2026-12-16")
    assert "data-override=" not in html
    assert _last_audit(app).data == {
        "day": "2026-12-16",
        "from": {"kind": "working", "source": "override", "reason": "Moved to Saturday"},
        "to": {"kind": "day-off", "source": "library", "reason": "Independence Day"}}
    before = _state(app)
    again = _remove(browser, "2026-12-16")
    assert again.status_code == 422
    assert "This day has no override." in again.get_data(as_text=True)
    assert _state(app) == before


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"reason": ""}, "reason", "This field is required."),
    ({"reason": "   "}, "reason", "This field is required."),
    ({"reason": "x" * 256}, "reason", "At most 255 characters."),
    ({"day": "2026-02-30"}, "day", "Must be a date (YYYY-MM-DD)."),
    ({"day": ""}, "day", "This field is required."),
    ({"kind": "holiday"}, "kind", "Not in the expected format."),
])
def test_a_bad_field_is_422_with_its_message_and_nothing_saved(app, fields, field, message):
    browser = login(app.test_client(), ADMIN)
    before = _state(app)
    good = {"day": "2026-12-18", "kind": "day-off", "reason": "Decree"}
    response = _set(browser, **(good | fields))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'<p class="error" id="{field}-error" role="alert">{message}</p>' in html
    assert _state(app) == before


def test_reporters_and_officers_get_403(app):
    for email in ("nurse@besik.example", "officer@besik.example", "police@besik.example"):
        browser, token = login(app.test_client(), email), bearer(app, email)
        assert browser.get("/admin/calendar").status_code == 403, email
        before = _state(app)
        assert _set(browser, day="2026-12-18", kind="day-off",
                    reason="x").status_code == 403, email
        assert _remove(browser, "2026-12-18").status_code == 403, email
        api = app.test_client()
        assert api.post("/admin/calendar", headers=token, data={
            "day": "2026-12-18", "kind": "day-off", "reason": "x"}).status_code == 403
        assert _state(app) == before


def test_a_region_admin_reads_the_national_calendar_but_cannot_change_it(app):
    add_user(app, REGION_ADMIN, "admin", region="AST")
    national = login(app.test_client(), ADMIN)
    assert _set(national, day="2026-12-18", kind="day-off", reason="Decree").status_code == 303
    browser = login(app.test_client(), REGION_ADMIN)
    page = browser.get("/admin/calendar?year=2026")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-working="false" data-why="holiday"' in _cell(html, "2026-12-16")
    assert '<tr data-override="2026-12-18"' in html and "data-read-only" in html
    assert "<form method=\"post\" action=\"/admin/calendar" not in html
    before = _state(app)
    assert _set(browser, day="2026-12-21", kind="day-off", reason="mine").status_code == 403
    assert _remove(browser, "2026-12-18").status_code == 403
    assert _state(app) == before


# --- Deadlines: an override applies to reports filed afterwards ----------------------------


def _file(client, nurse) -> dict:
    from reporting import clock

    body = report_body(discovered_at=(clock.now() - timedelta(minutes=10)).isoformat())
    response = client.post("/api/v1/reports", json=body, headers=nurse)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _due(client, nurse, report: dict) -> dict[str, datetime]:
    """The report's working-day deadlines, as the API shows them now."""
    shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
    return {d["rule"]: datetime.fromisoformat(d["due_at"]) for d in shown["deadlines"]
            if d["rule"] in ("examine_child", "report_to_guardianship_statutory")}


@pytest.mark.parametrize(("filed_at", "day", "kind", "library_due", "override_due"), [
    # Mon 30 Nov: Tue, Wed, Thu; with Wednesday a day off: Tue, Thu, Fri.
    (MONDAY, "2026-12-02", "day-off", "2026-12-03", "2026-12-04"),
    # Mon 14 Dec: Tue, (Independence Day), Thu, Fri; with the holiday worked: Tue, Wed, Thu.
    (INDEPENDENCE_WEEK, "2026-12-16", "working", "2026-12-18", "2026-12-17"),
])
def test_an_override_moves_the_three_working_day_deadlines_of_later_reports_only(
        app, client, nurse, clock, filed_at, day, kind, library_due, override_due):
    clock.freeze(filed_at)
    before = _file(client, nurse)
    expected = _end_of_almaty_day(library_due)
    assert _due(client, nurse, before) == {"examine_child": expected,
                                           "report_to_guardianship_statutory": expected}
    browser = login(app.test_client(), ADMIN)
    assert _set(browser, day=day, kind=kind, reason="Government decree").status_code == 303
    after = _file(client, nurse)
    moved = _end_of_almaty_day(override_due)
    assert _due(client, nurse, after) == {"examine_child": moved,
                                          "report_to_guardianship_statutory": moved}
    assert _due(client, nurse, before) == {"examine_child": expected,  # kept as computed
                                           "report_to_guardianship_statutory": expected}
    assert _remove(browser, day).status_code == 303  # the library's answer again
    assert _due(client, nurse, _file(client, nurse))["examine_child"] == expected


# --- The command line ---------------------------------------------------------------------


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_calendar_set_and_show(app, clock):
    clock.freeze(MONDAY)
    result = run(app, "calendar", "set", "2026-12-18", "day-off", "--reason", "Decree No. 7")
    assert result.exit_code == 0, result.output
    assert run(app, "calendar", "set", "2026-03-28", "working").exit_code == 0  # no reason
    assert run(app, "calendar", "set", "2027-01-04", "day-off", "--reason", "x").exit_code == 0
    shown = run(app, "calendar", "show", "--year", "2026")
    assert shown.exit_code == 0
    assert shown.output == "2026-03-28\tworking\t\n2026-12-18\tday-off\tDecree No. 7\n"
    assert run(app, "calendar", "show").output == shown.output  # this year, in Almaty
    assert run(app, "calendar", "show", "--year", "2027").output == "2027-01-04\tday-off\tx\n"
    entry = _last_audit(app)
    assert (entry.tag, entry.actor_id, entry.data["to"]) == (
        "calendar:changed", None, {"kind": "day-off", "source": "override", "reason": "x"})
    unchanged = run(app, "calendar", "set", "2027-01-04", "day-off", "--reason", "x")
    assert unchanged.exit_code == 0 and "unchanged" in unchanged.output
    assert _last_audit(app).seq == entry.seq
    html = login(app.test_client(), ADMIN).get("/admin/calendar?year=2026").get_data(True)
    assert "Decree No. 7" in _cell(html, "2026-12-18")


def test_calendar_unset(app):
    assert run(app, "calendar", "set", "2026-12-18", "day-off").exit_code == 0
    assert run(app, "calendar", "unset", "2026-12-18").exit_code == 0
    assert run(app, "calendar", "show", "--year", "2026").output == ""
    assert run(app, "calendar", "unset", "2026-12-18").exit_code == 2  # nothing to remove
    with app.extensions["besik.db"].reading() as session:
        assert session.get(CalendarOverride, date(2026, 12, 18)) is None


@pytest.mark.parametrize("args", [
    ("set", "2026-02-30", "day-off"),
    ("set", "18.12.2026", "day-off"),
    ("set", "2026-12-18", "holiday"),
    ("set", "2026-12-18", "day-off", "--reason", "x" * 256),
    ("set", "2026-12-18", "day-off", "--reason", "bad\x00byte"),
    ("set", "1800-01-01", "working"),
    ("set", "2026-12-18"),
    ("unset", "someday"),
    ("show", "--year", "20x6"),
    ("show", "--year", "3000"),
])
def test_calendar_bad_input_exits_2_and_changes_nothing(app, args):
    before = _state(app)
    result = run(app, "calendar", *args)
    assert result.exit_code == 2, result.output
    assert _state(app) == before
