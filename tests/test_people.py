"""People administered from the browser: accounts with a one-time password, role and place,
deactivation, password resets, API tokens; a region's admin manages only that region."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from reporting.models import ApiToken, AuditEntry, User
from tests.conftest import (
    OTHER_FACILITY,
    OTHER_REGION,
    add_other_region,
    add_user,
    bearer,
    csrf_token,
    login,
)


def _post(client: Any, url: str, **form: str) -> Any:
    return client.post(url, data={"csrf_token": csrf_token(client), **form})


def _password_of(response: Any) -> str:
    found = re.search(r"data-one-time-password>([^<]+)<", response.data.decode())
    assert found, response.data.decode()
    return found.group(1)


def _sign_in(app: Any, email: str, password: str) -> Any:
    client = app.test_client()
    page = client.get("/login")
    token = page.data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    return client, client.post("/login", data={"email": email, "password": password,
                                               "csrf_token": token})


def test_a_new_officer_gets_a_one_time_password_shown_once(app, client, db):
    login(client, "admin@besik.example")
    response = _post(client, "/admin/users", email="New.Officer@besik.example",
                     name="New Officer", role="officer", agency="GRD-AST-SAR")
    assert response.status_code == 201
    password = _password_of(response)
    user = db.scalars(select(User).where(User.email == "new.officer@besik.example")).one()
    assert (user.role.value, user.agency.code, user.must_change_password) == (
        "officer", "GRD-AST-SAR", True)
    assert password not in user.password_hash
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "user:created")).one()
    assert entry.data["changes"]["agency"] == {"from": None, "to": "GRD-AST-SAR"}
    assert password not in str(entry.data)
    assert password not in client.get("/admin/users/edit?email=new.officer@besik.example"
                                      ).data.decode()
    _, signed_in = _sign_in(app, "new.officer@besik.example", password)
    assert signed_in.status_code == 302


@pytest.mark.parametrize("form, field", [
    ({"role": "reporter"}, "facility"),
    ({"role": "officer"}, "agency"),
    ({"role": "officer", "agency": "NOPE"}, "agency"),
    ({"role": "pilot"}, "role"),
    ({"role": "reporter", "facility": "PC1", "email": "nurse@besik.example"}, "email"),
    ({"role": "reporter", "facility": "PC1", "email": "not an email"}, "email"),
])
def test_a_bad_person_names_the_field_and_saves_nothing(app, client, db, form, field):
    login(client, "admin@besik.example")
    before = db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    response = _post(client, "/admin/users", **({"email": "x@besik.example", "name": "X"}
                                                | form))
    assert response.status_code == 422
    assert f'id="user-{field}-error"' in response.data.decode()
    assert db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) == before


def test_deactivating_stops_the_session_and_the_token_at_the_next_request(app, client, db):
    officer_browser = login(app.test_client(), "officer@besik.example")
    assert officer_browser.get("/inbox").status_code == 200
    token = bearer(app, "officer@besik.example")
    login(client, "admin@besik.example")
    response = _post(client, "/admin/users/active", email="officer@besik.example", active="0")
    assert response.status_code == 303
    assert officer_browser.get("/inbox").status_code in (302, 401)
    assert client.get("/api/v1/reports", headers=token).status_code == 401
    assert _sign_in(app, "officer@besik.example", "besik-demo-2026")[1].status_code != 302
    _post(client, "/admin/users/active", email="officer@besik.example", active="1")
    assert _sign_in(app, "officer@besik.example", "besik-demo-2026")[1].status_code == 302
    tags = list(db.scalars(select(AuditEntry.tag).where(AuditEntry.tag.in_(
        ["user:deactivated", "user:reactivated"])).order_by(AuditEntry.seq)))
    assert tags == ["user:deactivated", "user:reactivated"]


def test_a_reset_password_replaces_the_old_one_and_ends_sessions(app, client):
    nurse_browser = login(app.test_client(), "nurse@besik.example")
    login(client, "admin@besik.example")
    password = _password_of(_post(client, "/admin/users/password", email="nurse@besik.example"))
    assert nurse_browser.get("/reports/new").status_code == 302
    assert _sign_in(app, "nurse@besik.example", "besik-demo-2026")[1].status_code != 302
    assert _sign_in(app, "nurse@besik.example", password)[1].status_code == 302


def test_changing_role_and_place_is_audited_with_before_and_after(app, client, db):
    login(client, "admin@besik.example")
    response = _post(client, "/admin/users/edit", email="officer2@besik.example",
                     name="Erlan T.", role="officer", agency="GRD-AST-YES", is_head="on")
    assert response.status_code == 303
    user = db.scalars(select(User).where(User.email == "officer2@besik.example")).one()
    assert (user.name, user.agency.code, user.is_head) == ("Erlan T.", "GRD-AST-YES", True)
    entry = db.scalars(select(AuditEntry).where(AuditEntry.tag == "user:changed")).one()
    assert entry.data["changes"] == {
        "name": {"from": "Erlan Tokhtarovich", "to": "Erlan T."},
        "agency": {"from": "GRD-AST-SAR", "to": "GRD-AST-YES"},
        "is_head": {"from": False, "to": True}}


def test_tokens_are_listed_and_revoked_one_or_all(app, client, db):
    first, second = bearer(app, "police@besik.example"), bearer(app, "police@besik.example")
    login(client, "admin@besik.example")
    page = client.get("/admin/users/edit?email=police@besik.example").data.decode()
    ids = sorted(int(i) for i in re.findall(r'data-token="(\d+)"', page))
    assert len(ids) == 2
    assert _post(client, "/admin/users/tokens", email="police@besik.example",
                 token_id=str(ids[0])).status_code == 303
    assert client.get("/api/v1/reports", headers=first).status_code == 401
    assert client.get("/api/v1/reports", headers=second).status_code == 200
    other = db.scalars(select(ApiToken).where(ApiToken.user_id != db.scalars(select(
        User.id).where(User.email == "police@besik.example")).one())).first()
    if other is not None:  # another person's token id answers 404, and stays live
        assert _post(client, "/admin/users/tokens", email="police@besik.example",
                     token_id=str(other.id)).status_code == 404
    _post(client, "/admin/users/tokens", email="police@besik.example", token_id="all")
    assert client.get("/api/v1/reports", headers=second).status_code == 401


def test_a_regions_admin_manages_only_that_region(app, client, db):
    add_other_region(app)
    add_user(app, "admin.ala@besik.example", "admin", region=OTHER_REGION)
    login(client, "admin.ala@besik.example")
    html = client.get("/admin/users").data.decode()
    assert 'data-user="nurse.ala@besik.example"' in html
    assert 'data-user="nurse@besik.example"' not in html
    assert client.get("/admin/users/edit?email=nurse@besik.example").status_code == 404
    assert _post(client, "/admin/users/active", email="nurse@besik.example",
                 active="0").status_code == 404
    assert _post(client, "/admin/users/password",
                 email="nurse@besik.example").status_code == 404
    response = _post(client, "/admin/users", email="x@besik.example", name="X",
                     role="reporter", facility="PC1")
    assert response.status_code == 422  # PC1 is not among this admin's facilities
    response = _post(client, "/admin/users", email="y@besik.example", name="Y",
                     role="admin")
    assert response.status_code == 422  # a country-wide admin is not theirs to make
    assert _post(client, "/admin/users", email="z@besik.example", name="Z", role="reporter",
                 facility=OTHER_FACILITY).status_code == 201


@pytest.mark.parametrize("email", ["nurse@besik.example", "officer@besik.example"])
def test_reporters_and_officers_get_403(app, client, email):
    login(client, email)
    assert client.get("/admin/users").status_code == 403
    assert client.get("/admin/users/edit?email=nurse@besik.example").status_code == 403
    assert _post(client, "/admin/users/active", email="nurse@besik.example",
                 active="0").status_code == 403


def test_the_first_sign_in_forces_a_password_change(app, client, db):
    login(client, "admin@besik.example")
    password = _password_of(_post(client, "/admin/users", email="fresh@besik.example",
                                  name="Fresh Nurse", role="reporter", facility="PC1"))
    nurse, signed_in = _sign_in(app, "fresh@besik.example", password)
    assert signed_in.status_code == 302
    for page in ("/reports/new", "/", "/reports"):
        response = nurse.get(page)
        assert response.status_code == 302 and response.headers["Location"].endswith("/me")
    assert "one-time password" in nurse.get("/me").data.decode()
    refused = nurse.post("/api/v1/reports", json={}, headers={
        "X-CSRFToken": csrf_token(nurse)})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "password_change_required"
    token = csrf_token(nurse)
    changed = nurse.post("/me/password", data={
        "csrf_token": token, "current_password": password,
        "new_password": "a long own passphrase 42", "new_password_again":
        "a long own passphrase 42"})
    assert changed.status_code == 303
    assert nurse.get("/reports/new").status_code == 200
    user = db.scalars(select(User).where(User.email == "fresh@besik.example")).one()
    db.refresh(user)
    assert user.must_change_password is False
