"""Each user's own language (GET/PATCH /api/v1/me, ?lang= while signed in), the /me page and
the password policy."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from reporting.demo import DEMO_PASSWORD
from reporting.models import AuditEntry, FailedAttempt, User
from reporting.passwords import (
    COMMON_PASSWORDS,
    MIN_LENGTH,
    check_password,
    common_passwords,
    password_problems,
)
from tests.conftest import bearer, csrf_token, login

NURSE = "nurse@besik.example"
NEW_PASSWORD = "cradle-watch-Astana-7"
ROLES = ("nurse@besik.example", "officer@besik.example", "admin@besik.example")
TOO_SHORT = "At least 12 characters."
COMMON = "This is one of the most common passwords: choose another."
IS_EMAIL = "Must not be your email address."


def user(db, email: str = NURSE) -> User:
    db.rollback()  # see what the requests committed
    return db.scalars(select(User).where(User.email == email)).one()


def audited(db, tag: str) -> list[AuditEntry]:
    db.rollback()
    return list(db.scalars(select(AuditEntry).where(AuditEntry.tag == tag)
                           .order_by(AuditEntry.seq)))


def html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]*)">', page)
    assert found is not None
    return found.group(1)


def page_token(client, url: str = "/me") -> str:
    page = client.get(url).get_data(as_text=True)
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def change_password(client, current: str, new: str, again: str | None = None,
                    address: str = "10.0.0.1"):
    return client.post("/me/password", data={
        "csrf_token": page_token(client), "current_password": current, "new_password": new,
        "new_password_again": new if again is None else again},
        environ_base={"REMOTE_ADDR": address})


def field_error(page: str, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', page)
    return found.group(1) if found else None


# --- GET and PATCH /api/v1/me ---------------------------------------------------------------


def test_me_is_the_callers_account_with_no_language_until_one_is_chosen(client, app):
    response = client.get("/api/v1/me", headers=bearer(app, "officer@besik.example"))
    assert response.status_code == 200
    assert response.get_json() == {"email": "officer@besik.example", "name": "Dana Serikovna",
                                   "role": "officer", "locale": None}


def test_patch_me_saves_the_language_audited_once_with_before_and_after(client, app, db):
    headers = bearer(app, NURSE)
    response = client.patch("/api/v1/me", json={"locale": "ru"}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["locale"] == "ru"
    assert client.get("/api/v1/me", headers=headers).get_json()["locale"] == "ru"
    assert client.patch("/api/v1/me", json={"locale": "ru"}, headers=headers).status_code == 200
    assert client.patch("/api/v1/me", json={"locale": "kk"}, headers=headers).status_code == 200
    changes = audited(db, "user:locale_changed")
    assert [entry.data for entry in changes] == [{"before": None, "after": "ru"},
                                                 {"before": "ru", "after": "kk"}]
    assert {entry.actor_id for entry in changes} == {user(db).id}
    assert user(db).locale == "kk"


@pytest.mark.parametrize(("body", "field"), [
    ({"locale": "de"}, "locale"),
    ({"locale": "RU"}, "locale"),
    ({"locale": 1}, "locale"),
    ({}, "locale"),
    ({"locale": None}, "locale"),
    ({"locale": "ru", "name": "Someone Else"}, "name"),
])
def test_patch_me_refuses_anything_but_a_known_language(client, app, db, body, field):
    response = client.patch("/api/v1/me", json=body, headers=bearer(app, NURSE))
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert user(db).locale is None
    assert user(db).name == "Aigerim Nurlanovna"
    assert audited(db, "user:locale_changed") == []


def test_patch_me_from_a_browser_session_needs_the_csrf_token(client, db):
    login(client, NURSE)
    assert client.patch("/api/v1/me", json={"locale": "kk"}).status_code == 400
    assert user(db).locale is None
    token = csrf_token(client)
    response = client.patch("/api/v1/me", json={"locale": "kk"},
                            headers={"X-CSRFToken": token})
    assert response.status_code == 200
    assert user(db).locale == "kk"


# --- whose language a page is in -----------------------------------------------------------


def test_the_users_own_language_beats_the_browsers(client, app):
    client.patch("/api/v1/me", json={"locale": "kk"}, headers=bearer(app, NURSE))
    login(client, NURSE)
    page = client.get("/reports/new", headers={"Accept-Language": "ru"})
    assert html_lang(page.get_data(as_text=True)) == "kk"


def test_the_users_own_language_beats_a_choice_left_on_the_phone(client, app):
    client.patch("/api/v1/me", json={"locale": "kk"}, headers=bearer(app, NURSE))
    client.get("/login?lang=ru")  # a colleague's choice, before this nurse signs in
    assert html_lang(client.get("/login").get_data(as_text=True)) == "ru"
    login(client, NURSE)
    assert html_lang(client.get("/reports/new").get_data(as_text=True)) == "kk"


def test_lang_chosen_on_a_page_while_signed_in_becomes_the_users_own(client, app, db):
    login(client, NURSE)
    assert html_lang(client.get("/reports/new?lang=ru").get_data(as_text=True)) == "ru"
    assert user(db).locale == "ru"
    client.get("/reports/new?lang=ru")  # the same again: nothing to record
    assert [e.data for e in audited(db, "user:locale_changed")] == [
        {"before": None, "after": "ru"}]
    # Another device, a browser set to English: her language follows her.
    other = app.test_client()
    login(other, NURSE)
    page = other.get("/reports/new", headers={"Accept-Language": "en"})
    assert html_lang(page.get_data(as_text=True)) == "ru"
    assert other.get("/api/v1/me").get_json()["locale"] == "ru"


def test_lang_on_a_page_that_redirects_is_saved_too(client, db):
    login(client, "officer@besik.example")
    response = client.get("/?lang=kk")
    assert response.status_code == 302
    assert user(db, "officer@besik.example").locale == "kk"
    assert html_lang(client.get(response.headers["Location"]).get_data(as_text=True)) == "kk"


def test_lang_chosen_while_anonymous_is_not_saved_even_by_signing_in(client, db):
    client.get("/login?lang=ru")
    token = page_token(client, "/login?lang=ru")
    response = client.post("/login?lang=ru", data={"email": NURSE, "password": DEMO_PASSWORD,
                                                   "csrf_token": token})
    assert response.status_code == 302
    assert user(db).locale is None
    assert audited(db, "user:locale_changed") == []
    # Still remembered for this browser (README: Languages).
    assert html_lang(client.get("/reports/new").get_data(as_text=True)) == "ru"


def test_lang_of_an_export_or_an_api_call_is_not_the_users_own(client, app, db):
    login(client, "admin@besik.example")
    download = client.get("/admin/export?format=csv&lang=ru")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    download.close()
    api = client.get("/api/v1/export?format=csv&lang=kk")
    assert api.status_code == 200
    api.close()
    assert client.get("/api/v1/me?lang=kk").status_code == 200
    assert user(db, "admin@besik.example").locale is None


# --- the /me page ----------------------------------------------------------------------------


@pytest.mark.parametrize("email", ROLES)
def test_every_role_has_the_me_page_with_both_forms(client, email):
    login(client, email)
    response = client.get("/me")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'action="/me/language"' in page and 'action="/me/password"' in page
    assert 'name="locale" value="kk"' in page
    for field in ("current_password", "new_password", "new_password_again"):
        assert f'id="{field}" name="{field}" type="password"' in page
    assert 'href="/me"' in page  # the header links to it from every page


def test_the_me_page_is_for_signed_in_users_only(client):
    response = client.get("/me")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/me")


def test_the_language_form_saves_the_users_language(client, db):
    login(client, NURSE)
    response = client.post("/me/language", data={"csrf_token": page_token(client),
                                                  "locale": "kk"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/me?done=language"
    assert user(db).locale == "kk"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert html_lang(page) == "kk"
    assert 'value="kk" required checked' in page
    assert [e.data for e in audited(db, "user:locale_changed")] == [
        {"before": None, "after": "kk"}]


@pytest.mark.parametrize("locale", ["de", ""])
def test_the_language_form_refuses_an_unknown_language(client, db, locale):
    login(client, NURSE)
    response = client.post("/me/language", data={"csrf_token": page_token(client),
                                                  "locale": locale})
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "locale")
    assert user(db).locale is None


def test_the_language_form_needs_the_csrf_token(client, db):
    login(client, NURSE)
    assert client.post("/me/language", data={"locale": "kk"}).status_code == 400
    assert user(db).locale is None


@pytest.mark.parametrize(("new", "again", "field", "message"), [
    ("short-pass1", None, "new_password", TOO_SHORT),
    ("password1234", None, "new_password", COMMON),
    ("Q1W2E3R4T5Y6", None, "new_password", COMMON),
    ("Nurse@Besik.Example", None, "new_password", IS_EMAIL),
    ("", None, "new_password", "This field is required."),
    (NEW_PASSWORD, NEW_PASSWORD + "!", "new_password_again",
     "The two new passwords are not the same."),
])
def test_a_new_password_that_breaks_the_policy_is_refused_on_its_field(client, db, new, again,
                                                                       field, message):
    login(client, NURSE)
    before = user(db).password_hash
    response = change_password(client, DEMO_PASSWORD, new, again)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, field) == message
    assert f'id="{field}" name="{field}" type="password"' in page
    assert 'aria-invalid="true"' in page
    assert field_error(page, "current_password") is None
    assert user(db).password_hash == before
    assert audited(db, "user:password_changed") == []


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failed_sign_in(client, db):
    login(client, NURSE)
    before = user(db).password_hash
    response = change_password(client, "not-my-password-at-all", NEW_PASSWORD)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_error(page, "current_password") == "The current password is wrong."
    assert field_error(page, "new_password") is None
    assert user(db).password_hash == before
    assert db.scalar(select(func.count()).select_from(FailedAttempt)) == 2  # account, address
    (failure,) = audited(db, "user:sign_in_failed")
    assert failure.data == {"email": NURSE, "address": "10.0.0.1"}
    assert "not-my-password-at-all" not in str(failure.data)
    assert client.get("/api/v1/reports").status_code == 200  # still signed in


def test_wrong_current_passwords_are_limited_like_sign_ins(client, db):
    login(client, NURSE)
    for _ in range(10):
        assert change_password(client, "not-my-password-at-all",
                               NEW_PASSWORD).status_code == 422
    refused = change_password(client, DEMO_PASSWORD, NEW_PASSWORD)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
    assert field_error(refused.get_data(as_text=True), "current_password")
    assert check_password(user(db).password_hash, DEMO_PASSWORD)
    # The same counters as the sign-in form: it is refused there too.
    other = client.application.test_client()
    page = other.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert other.post("/login", data={"email": NURSE, "password": DEMO_PASSWORD,
                                      "csrf_token": token},
                      environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 429


def test_a_new_password_ends_every_other_session_but_this_one(client, app, db):
    login(client, NURSE)
    elsewhere = login(app.test_client(), NURSE)
    assert elsewhere.get("/api/v1/reports").status_code == 200
    response = change_password(client, DEMO_PASSWORD, NEW_PASSWORD)
    assert response.status_code == 303
    assert response.headers["Location"] == "/me?done=password"
    assert client.get("/api/v1/reports").status_code == 200
    page = client.get("/me?done=password").get_data(as_text=True)
    assert "Password changed. You were signed out on every other device." in page
    assert elsewhere.get("/api/v1/reports").status_code == 401
    assert check_password(user(db).password_hash, NEW_PASSWORD)
    assert not check_password(user(db).password_hash, DEMO_PASSWORD)
    (changed,) = audited(db, "user:password_changed")
    assert changed.actor_id == user(db).id and changed.subject == f"user:{user(db).id}"
    assert NEW_PASSWORD not in str(changed.data) and DEMO_PASSWORD not in str(changed.data)
    login(app.test_client(), NURSE, NEW_PASSWORD)


def test_changing_the_password_needs_the_csrf_token(client, db):
    login(client, NURSE)
    response = client.post("/me/password", data={
        "current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD})
    assert response.status_code == 400
    assert check_password(user(db).password_hash, DEMO_PASSWORD)


# --- the password policy ---------------------------------------------------------------------


def test_the_policy_names_every_problem():
    assert MIN_LENGTH == 12
    assert password_problems("short", "a@b.kz") == [TOO_SHORT]
    assert password_problems("qwerty", "a@b.kz") == [TOO_SHORT, COMMON]
    assert password_problems("Password1234", "a@b.kz") == [COMMON]
    assert password_problems(" 1q2w3e4r5t6y ", "a@b.kz") == [COMMON]
    assert password_problems("A@B.kz", "a@b.kz") == [TOO_SHORT, IS_EMAIL]
    assert password_problems("midwife@example.kz", " Midwife@Example.KZ") == [IS_EMAIL]
    assert password_problems("x" * 201, "a@b.kz") == ["At most 200 characters."]
    for fine in ("besik-demo-2026", "a long password", NEW_PASSWORD, "x" * 200,
                 "бесік-бала-қорғау"):
        assert password_problems(fine, "a@b.kz") == [], fine


def test_the_list_is_the_ten_thousand_most_common_passwords():
    listed = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    assert len(listed) == len(set(listed)) == 10_000
    assert listed[:4] == ["123456", "123456789", "qwerty", "password"]
    assert all(entry == entry.lower() and entry.strip() == entry for entry in listed)
    assert not any("пїѕ" in entry for entry in listed)  # mis-decoded lines were dropped
    assert {"пароль", "йцукен", "password1234"} <= common_passwords()


@pytest.mark.parametrize(("password", "problem"), [
    ("short\n", TOO_SHORT), ("password1234\n", COMMON), ("x@example.kz\n", IS_EMAIL)])
def test_create_user_refuses_what_the_policy_refuses(app, db, password, problem):
    result = app.test_cli_runner().invoke(args=[
        "create-user", "--email", "x@example.kz", "--name", "X", "--role", "admin"],
        input=password)
    assert result.exit_code == 2
    assert problem in result.output
    assert db.scalar(select(User).where(User.email == "x@example.kz")) is None


def test_an_export_without_lang_is_in_the_admins_own_language(client, app):
    from tests.test_i18n import translation

    headers = bearer(app, "admin@besik.example")
    client.patch("/api/v1/me", json={"locale": "ru"}, headers=headers)
    response = client.get("/api/v1/export?format=csv", headers=headers)
    header_row = response.get_data(as_text=True).lstrip("\ufeff").splitlines()[0]
    assert header_row.startswith(translation("ru", "Reference"))
