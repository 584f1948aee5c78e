"""The deadline policy page (/admin/policy): every rule with its duration, legal basis and
verified flag; each save a new, audited policy version that only later reports are judged by.

A region's admin may read the policy (their reports are judged by it) but not change it: the
policy is national.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from reporting.deadlines import DEFAULT_POLICY, Duration
from reporting.models import AuditEntry, PolicyVersion, Report, User
from reporting.policy import change_rule, current_rules
from tests.conftest import add_user, at_once, bearer, csrf_token, login, report_body

ADMIN = "admin@besik.example"
REGION_ADMIN = "admin.ast@besik.example"
T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 11:00 in Almaty, a Monday


def _state(app) -> tuple[int, int]:
    """(policy versions, audit entries): what a refused save must leave alone."""
    with app.extensions["besik.db"].reading() as session:
        return (session.scalar(select(func.count()).select_from(PolicyVersion)),
                session.scalar(select(func.count()).select_from(AuditEntry)))


def _post(browser, **fields: str):
    return browser.post("/admin/policy", data={"csrf_token": csrf_token(browser), **fields})


def _rules(app) -> dict:
    with app.extensions["besik.db"].reading() as session:
        return current_rules(session)[1]


def test_the_page_shows_every_rule_its_duration_basis_and_the_warning(app):
    page = login(app.test_client(), ADMIN).get("/admin/policy")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for rule in DEFAULT_POLICY:
        card = html.split(f'data-rule="{rule.name}"')[1].split("</li>")[0]
        assert f"<dd data-duration>{rule.duration}</dd>" in card
        assert f"<dd data-basis>{escape(rule.basis)}</dd>" in card
        verified = "true" if rule.is_basis_verified else "false"
        assert f'data-verified="{verified}"' in html.split(f'data-rule="{rule.name}"')[1][:40]
    assert "data-unverified-warning" in html
    assert "must be confirmed by counsel" in html
    assert 'data-version="1"' in html  # the history: the default policy, installed by init-db


def test_the_warning_goes_once_every_basis_is_verified(app):
    with app.extensions["besik.db"].writing() as session:
        for rule in DEFAULT_POLICY:
            change_rule(session, rule.name, verified=True, actor_id=None, now=datetime.now(UTC))
    html = login(app.test_client(), ADMIN).get("/admin/policy").get_data(as_text=True)
    assert "data-unverified-warning" not in html
    assert 'data-verified="false"' not in html


def test_a_save_is_one_new_version_audited_with_before_and_after_per_field(app, db):
    browser = login(app.test_client(), ADMIN)
    versions, entries = _state(app)
    response = _post(browser, rule="examine_child", duration="4wd",
                     basis="Marriage and Family Code art. 118, confirmed", verified="on")
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"/admin/policy?saved={versions + 1}")
    assert _state(app) == (versions + 1, entries + 1)  # three fields, one version, one entry
    rule = _rules(app)["examine_child"]
    assert (str(rule.duration), rule.basis, rule.is_basis_verified) == (
        "4wd", "Marriage and Family Code art. 118, confirmed", True)
    entry = db.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
    admin_id = db.scalars(select(User.id).where(User.email == ADMIN)).one()
    assert (entry.tag, entry.actor_id, entry.subject) == (
        "policy:changed", admin_id, f"policy:{versions + 1}")
    assert entry.data == {"rule": "examine_child", "previous_version": versions, "changes": {
        "duration": {"from": "3wd", "to": "4wd"},
        "basis": {"from": "Marriage and Family Code art. 118 (1998 predecessor art. 101: 3 days)",
                  "to": "Marriage and Family Code art. 118, confirmed"},
        "verified": {"from": False, "to": True}}}
    version = db.get(PolicyVersion, versions + 1)
    assert version.created_by_id == admin_id
    # The page says so, and the history names the admin and what changed.
    html = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Saved as policy version {versions + 1}." in html
    row = html.split(f'data-version="{versions + 1}"')[1].split("</tr>")[0]
    assert "Gulnara Admin" in row and "examine_child: duration 3wd -&gt; 4wd" in row


def test_an_unticked_box_unverifies_and_an_unchanged_save_writes_nothing(app):
    browser = login(app.test_client(), ADMIN)
    rule = _rules(app)["inform_police"]
    assert rule.is_basis_verified
    fields = {"rule": rule.name, "duration": str(rule.duration), "basis": rule.basis}
    assert _post(browser, **fields).status_code == 303  # no "verified": the box was unticked
    assert not _rules(app)["inform_police"].is_basis_verified
    before = _state(app)
    response = _post(browser, **fields)
    assert response.status_code == 303 and "unchanged=1" in response.headers["Location"]
    assert _state(app) == before


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"duration": "soon"}, "duration", "Write a duration such as 90s, 30min, 24h, 3d or 3wd"),
    ({"duration": "0h"}, "duration", "Write a duration such as"),
    ({"duration": "400d"}, "duration", "of at most a year"),
    ({"basis": "x" * 501}, "basis", "At most 500 characters."),
    ({"basis": "   "}, "basis", "This field is required."),
    ({"verified": "maybe"}, "verified", "Must be yes or no."),
])
def test_a_bad_field_is_422_with_its_message_and_nothing_saved(app, fields, field, message):
    browser = login(app.test_client(), ADMIN)
    before, rules = _state(app), _rules(app)
    good = {"rule": "examine_child", "duration": "4wd", "basis": "a basis", "verified": "on"}
    response = _post(browser, **(good | fields))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="{field}-examine_child-error" role="alert">([^<]*)',
                      html)
    assert error is not None and message in error.group(1), html
    assert re.search(rf'<[^>]* id="{field}-examine_child"[^>]* aria-invalid="true"', html)
    assert _state(app) == before and _rules(app) == rules


def test_an_unknown_rule_is_422_and_nothing_saved(app):
    browser = login(app.test_client(), ADMIN)
    before = _state(app)
    response = _post(browser, rule="make_tea", duration="5min", basis="none")
    assert response.status_code == 422
    assert "No such rule." in response.get_data(as_text=True)
    assert _state(app) == before


def test_an_edit_changes_the_deadlines_of_later_reports_only(app, client, nurse, clock):
    clock.freeze(T0)

    def file() -> dict:
        body = report_body(discovered_at=(T0 - timedelta(minutes=10)).isoformat())
        response = client.post("/api/v1/reports", json=body, headers=nurse)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def due(report: dict, rule: str) -> datetime:
        shown = client.get(f"/api/v1/reports/{report['id']}", headers=nurse).get_json()
        (deadline,) = [d for d in shown["deadlines"] if d["rule"] == rule]
        return datetime.fromisoformat(deadline["due_at"])

    before = file()
    browser = login(app.test_client(), ADMIN)
    rule = _rules(app)["report_to_guardianship"]
    assert _post(browser, rule=rule.name, duration="2h", basis=rule.basis).status_code == 303
    after = file()
    discovered = T0 - timedelta(minutes=10)
    assert due(before, rule.name) == discovered + timedelta(hours=1)  # judged as filed
    assert due(after, rule.name) == discovered + timedelta(hours=2)
    with app.extensions["besik.db"].reading() as session:
        versions = {r.id: r.policy_version_id for r in session.scalars(select(Report))}
    assert versions[after["id"]] == versions[before["id"]] + 1


def test_reporters_and_officers_get_403(app):
    for email in ("nurse@besik.example", "officer@besik.example", "police@besik.example"):
        browser, token = login(app.test_client(), email), bearer(app, email)
        assert browser.get("/admin/policy").status_code == 403, email
        before = _state(app)
        response = _post(browser, rule="examine_child", duration="1wd", basis="x")
        assert response.status_code == 403, email
        assert app.test_client().post("/admin/policy", headers=token, data={
            "rule": "examine_child", "duration": "1wd", "basis": "x"}).status_code == 403
        assert _state(app) == before


def test_a_region_admin_reads_the_national_policy_but_cannot_change_it(app):
    add_user(app, REGION_ADMIN, "admin", region="AST")
    browser = login(app.test_client(), REGION_ADMIN)
    page = browser.get("/admin/policy")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-rule="examine_child"' in html and "data-read-only" in html
    assert 'action="/admin/policy"' not in html  # no forms to change it
    before, rules = _state(app), _rules(app)
    response = _post(browser, rule="examine_child", duration="1wd", basis="regional wish")
    assert response.status_code == 403
    assert _state(app) == before and _rules(app) == rules


def test_the_command_line_and_the_page_share_one_operation(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["policy", "set", "examine_child", "5wd"])
    assert result.exit_code == 0, result.output
    assert "examine_child = 5wd (policy version 2)" in result.output
    again = runner.invoke(args=["policy", "set", "examine_child", "5wd"])
    assert "unchanged" in again.output and again.exit_code == 0
    html = login(app.test_client(), ADMIN).get("/admin/policy").get_data(as_text=True)
    row = html.split('data-version="2"')[1].split("</tr>")[0]
    assert "command line" in row and "examine_child: duration 3wd -&gt; 5wd" in row
    with app.extensions["besik.db"].reading() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.tag == "policy:changed")
                                .order_by(AuditEntry.seq.desc()).limit(1)).one()
    assert entry.data["changes"] == {"duration": {"from": "3wd", "to": "5wd"}}
    assert entry.actor_id is None


def test_two_saves_at_once_keep_both_changes(app):
    """Each version copies the whole policy: two saves built on the same version would lose
    one of the changes. They take turns (PostgreSQL: an advisory lock; SQLite: its write
    lock)."""
    database = app.extensions["besik.db"]

    def save(rule: str, duration: str):
        def run() -> None:
            with database.writing() as session:
                change_rule(session, rule, duration=Duration.parse(duration), actor_id=None,
                            now=datetime.now(UTC))
        return run

    for attempt in range(5):
        at_once(save("examine_child", f"{attempt + 4}wd"),
                save("register_in_data_bank", f"{attempt + 2}wd"))
        rules = _rules(app)
        assert str(rules["examine_child"].duration) == f"{attempt + 4}wd"
        assert str(rules["register_in_data_bank"].duration) == f"{attempt + 2}wd"
