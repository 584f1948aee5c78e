"""Languages: every wrapped string is translated and compiled, and the language sticks.

The catalogue tests extract the messages in-process exactly as `pybabel extract -F babel.cfg
-k _l` does (same mapping file, same keywords), so a string wrapped in the code but missing
from reporting/translations fails here. Expected page texts are read from the .po files, not
written out, so rewording a translation does not break these tests.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from markupsafe import escape

from reporting import LOCALES
from tests.conftest import login, report_body

REPO = Path(__file__).resolve().parents[1]
TRANSLATIONS = REPO / "reporting" / "translations"
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None}  # `-k _l`: lazy_gettext is imported as _l
TRANSLATED = ("kk", "ru")  # English is the source language: its msgstr may stay empty
# A %-conversion as Python's % operator reads it (Jinja applies % to every translated string).
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[a-zA-Z%]")

Key = tuple[str, str | None]  # (msgid, msgctxt), as a Catalog keys its messages


@functools.cache
def extracted() -> dict[Key, tuple[str, ...]]:
    """Every wrapped string of the code and templates, with where it occurs."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, "babel.cfg")
    found: dict[Key, list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
            REPO, method_map, options_map, keywords=KEYWORDS):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault((msgid, context), []).append(f"{filename}:{lineno}")
    return {key: tuple(places) for key, places in found.items()}


def po_path(locale: str) -> Path:
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def read_catalogue(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale)


def messages(catalogue: Catalog) -> dict[Key, object]:
    """The catalogue's messages by key, without the header entry (and obsolete ones)."""
    return {(m.id[0] if isinstance(m.id, tuple) else m.id, m.context): m
            for m in catalogue if m.id}


def translated(catalogue: Catalog) -> dict[Key, object]:
    """What gettext would actually use: non-empty, non-fuzzy translations."""
    return {(m.id, m.context): m.string for m in catalogue
            if m.id and m.string and not m.fuzzy}


def translation(locale: str, msgid: str) -> str:
    """The translation of `msgid` in the `locale` catalogue, which must really translate it."""
    message = read_catalogue(po_path(locale), locale).get(msgid)
    assert message is not None and message.string, f"{msgid!r} is not translated into {locale}"
    assert message.string != msgid, f"{msgid!r} is left in English in {locale}"
    return str(message.string)


def html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]*)">', page)
    assert found is not None, "no <html lang> on the page"
    return found.group(1)


def login_labels(locale: str) -> list[str]:
    """The sign-in form's visible labels as the page renders them in `locale`."""
    return [f'<label for="email">{escape(translation(locale, "Email"))}</label>',
            f'<label for="password">{escape(translation(locale, "Password"))}</label>',
            f'<button type="submit" class="primary">{escape(translation(locale, "Sign in"))}'
            "</button>"]


def assert_login_page_in(locale: str, page: str) -> None:
    assert html_lang(page) == locale
    missing = [label for label in login_labels(locale) if label not in page]
    assert missing == [], f"not in {locale}: {missing}"


# --- the catalogues -------------------------------------------------------------------------


def test_extraction_finds_strings_in_python_code_and_in_templates():
    places = {place for found in extracted().values() for place in found}
    # `_l` from reporting/, `_` in templates/: a babel.cfg that matched nothing would make
    # every completeness test below pass vacuously.
    assert ("Sign in to continue.", None) in extracted()
    assert ("Send report", None) in extracted()
    assert any(place.startswith("reporting/") for place in places)
    assert any(place.startswith("templates/") for place in places)


def test_message_template_lists_exactly_the_wrapped_strings():
    template = set(messages(read_catalogue(TRANSLATIONS / "messages.pot")))
    assert sorted(set(extracted()) - template) == [], "run pybabel extract (README: Languages)"
    assert sorted(template - set(extracted())) == [], "run pybabel extract (README: Languages)"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_every_wrapped_string_is_translated(locale):
    catalogue = read_catalogue(po_path(locale), locale)
    found = messages(catalogue)
    untranslated = {key: extracted()[key] for key in extracted()
                    if key not in found or not found[key].string}
    fuzzy = sorted(key for key, message in found.items() if message.fuzzy)
    stale = sorted(set(found) - set(extracted()))
    assert untranslated == {}
    assert fuzzy == []
    assert stale == [], "run pybabel update (README: Languages)"
    # A fuzzy header makes pybabel compile skip the whole catalogue.
    assert not catalogue.fuzzy


def test_english_catalogue_lists_every_wrapped_string():
    catalogue = read_catalogue(po_path("en"), "en")
    found = messages(catalogue)
    assert sorted(set(extracted()) ^ set(found)) == [], "run pybabel update (README: Languages)"
    assert [key for key, message in found.items() if message.fuzzy] == []
    assert not catalogue.fuzzy


@pytest.mark.parametrize("locale", TRANSLATED)
def test_translations_keep_their_placeholders(locale):
    wrong = []
    for message in read_catalogue(po_path(locale), locale):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = sorted(PLACEHOLDER.findall(ids[-1]))
        for string in strings:
            # Same named placeholders, and no stray % (Jinja formats every string with %).
            if sorted(PLACEHOLDER.findall(string)) != expected \
                    or string.count("%") != ids[-1].count("%"):
                wrong.append((ids[0], string))
    assert wrong == []


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogue_matches_its_source(locale):
    mo_path = po_path(locale).with_suffix(".mo")
    assert mo_path.is_file(), "run pybabel compile (README: Languages)"
    with mo_path.open("rb") as compiled_file:
        compiled = read_mo(compiled_file)
    source = read_catalogue(po_path(locale), locale)
    assert translated(compiled) == translated(source), "run pybabel compile (README: Languages)"


# --- choosing the language ------------------------------------------------------------------


def test_language_choice_is_remembered(client):
    assert_login_page_in("ru", client.get("/login?lang=ru").get_data(as_text=True))
    assert_login_page_in("ru", client.get("/login").get_data(as_text=True))
    assert_login_page_in("kk", client.get("/login?lang=kk").get_data(as_text=True))
    assert_login_page_in("kk", client.get("/login").get_data(as_text=True))


def test_browser_language_is_used_when_nothing_was_chosen(client):
    page = client.get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert_login_page_in("ru", page)
    regional = client.get("/login", headers={"Accept-Language": "kk-KZ,kk;q=0.9,ru;q=0.8"})
    assert_login_page_in("kk", regional.get_data(as_text=True))


def test_english_is_the_default_without_choice_or_browser_language(client):
    page = client.get("/login").get_data(as_text=True)
    assert html_lang(page) == "en"
    assert '<label for="password">Password</label>' in page


def test_chosen_language_beats_the_browser_language(client):
    client.get("/login?lang=kk")
    page = client.get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert_login_page_in("kk", page)


def test_unknown_language_choice_keeps_the_remembered_one(client):
    client.get("/login?lang=ru")
    assert_login_page_in("ru", client.get("/login?lang=de").get_data(as_text=True))
    assert_login_page_in("ru", client.get("/login").get_data(as_text=True))


def test_language_choice_survives_signing_in(client):
    client.get("/login?lang=ru")
    login(client, "nurse@besik.example")
    page = client.get("/reports/new").get_data(as_text=True)
    assert html_lang(page) == "ru"


# --- the API speaks the same language -------------------------------------------------------


def test_api_errors_follow_the_browser_language(client):
    response = client.get("/api/v1/reports", headers={"Accept-Language": "kk"})
    assert response.status_code == 401
    assert response.get_json()["error"] == {
        "code": "unauthorized", "message": translation("kk", "Sign in to continue.")}


def test_api_errors_follow_the_chosen_language(client):
    client.get("/login?lang=kk")
    response = client.get("/api/v1/reports", headers={"Accept-Language": "ru"})
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == translation("kk", "Sign in to continue.")


def test_api_validation_errors_follow_the_language(client, nurse):
    body = report_body(child={"sex": "female", "iin": "000000000001"})
    response = client.post("/api/v1/reports", json=body,
                           headers=nurse | {"Accept-Language": "ru"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["message"] == translation("ru", "The report has errors.")
    assert error["fields"] == {"child.iin": translation(
        "ru", "This IIN's check digit is wrong: please re-check the number.")}
