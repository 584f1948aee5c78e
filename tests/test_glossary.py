"""The glossary (reporting/translations/GLOSSARY.md) is what the catalogues say: for each
term, every Russian and Kazakh message whose English contains the term (a whole word, any
letter case, placeholders aside) uses the glossary's translation or one of its listed stems.
Known inconsistencies are listed in the glossary's own "Exceptions" table, each with its
reason; an exception that no longer applies fails too, so the list never outlives its cause.

The translations waiting in i18n-new.json (new strings not yet merged into the catalogues)
are held to the same terms when that file exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "reporting" / "translations" / "GLOSSARY.md"
PENDING = REPO / "i18n-new.json"
LOCALES = ("ru", "kk")
PLACEHOLDER = re.compile(r"%\([^)]*\)[a-z]")

Exception_ = tuple[str, str, str]  # (msgid, locale, term)


@dataclass(frozen=True)
class Term:
    name: str
    forms: tuple[str, ...]  # English, each matched as a whole word or phrase
    preferred: dict[str, str]
    stems: dict[str, tuple[str, ...]]

    def is_in(self, english: str) -> bool:
        text = PLACEHOLDER.sub(" ", english)
        return any(re.search(rf"(?<![\w-]){re.escape(form)}(?![\w-])", text, re.IGNORECASE)
                   for form in self.forms)

    def is_used_in(self, locale: str, translated: str) -> bool:
        text = normal(translated)
        return any(normal(stem) in text for stem in self.stems[locale])


def normal(text: str) -> str:
    # ё is optional in Russian print; the glossary's stems need not care.
    return text.lower().replace("\N{CYRILLIC SMALL LETTER IO}", "\N{CYRILLIC SMALL LETTER IE}")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_rows(section: str) -> list[list[str]]:
    """The rows of the first table under the `## section` heading of the glossary."""
    text = GLOSSARY.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found is not None, f"GLOSSARY.md has no '## {section}' section"
    lines = [line for line in found.group(1).splitlines() if line.startswith("|")]
    assert len(lines) >= 2 and set(lines[1]) <= set("|-: "), f"no table under {section}"
    return [cells(line) for line in lines[2:]]


def split(cell: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in cell.split(",") if part.strip())


def terms() -> list[Term]:
    found = []
    for row in table_rows("Terms"):
        assert len(row) == 7, row
        name, forms, ru, ru_stems, kk, kk_stems, _notes = row
        found.append(Term(name, split(forms), {"ru": ru, "kk": kk},
                          {"ru": split(ru_stems), "kk": split(kk_stems)}))
    return found


def exceptions() -> set[Exception_]:
    listed = set()
    for row in table_rows("Exceptions"):
        assert len(row) == 4, row
        msgid, locale, term, why = row
        assert why, f"an exception needs its reason: {row}"
        listed.add((msgid.replace("\\|", "|"), locale, term))
    return listed


def catalogue(locale: str) -> dict[str, str]:
    path = REPO / "reporting" / "translations" / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        return {m.id: m.string for m in read_po(source, locale=locale)
                if m.id and isinstance(m.id, str) and m.string}


def pending(locale: str) -> dict[str, str]:
    if not PENDING.exists():
        return {}
    return {msgid: strings[locale]
            for msgid, strings in json.loads(PENDING.read_text(encoding="utf-8")).items()}


def departures(messages: dict[str, str], locale: str) -> set[Exception_]:
    """Every (msgid, locale, term) where a message's English has the term and its
    translation uses none of the term's stems."""
    return {(msgid, locale, term.name) for term in terms() for msgid, translated in
            messages.items() if term.is_in(msgid) and not term.is_used_in(locale, translated)}


def test_the_glossary_has_the_domain_terms_each_using_its_own_stems():
    names = {term.name for term in terms()}
    assert {"guardianship authority", "maternity ward", "written refusal", "acknowledgement",
            "working day", "report", "notice", "deadline", "escalation", "reference",
            "risk flag", "facility", "district", "region", "police", "officer", "nurse",
            "audit log"} <= names
    for term in terms():
        assert term.forms, term.name
        for locale in LOCALES:
            assert term.stems[locale], (term.name, locale)
            assert term.is_used_in(locale, term.preferred[locale]), (
                f"{term.name}: the preferred {locale} term uses none of its own stems")


def test_whole_words_only():
    report = next(term for term in terms() if term.name == "report")
    assert report.is_in("Send report") and report.is_in("REPORTS")
    assert not report.is_in("Reported by") and not report.is_in("%(report)s filed")
    notice = next(term for term in terms() if term.name == "notice")
    assert not notice.is_in("Notification")


@pytest.mark.parametrize("locale", LOCALES)
def test_the_catalogues_use_the_glossarys_terms(locale):
    listed = {e for e in exceptions() if e[1] == locale}
    found = departures(catalogue(locale), locale)
    assert sorted(found - listed) == [], "use the glossary's term, or list an exception"
    stale = {e for e in listed if e[0] in catalogue(locale)} - found
    assert sorted(stale) == [], "this exception no longer applies: remove it from GLOSSARY.md"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_exception_names_a_message_and_a_term(locale):
    names, known = {term.name for term in terms()}, set(catalogue(locale))
    for msgid, where, term in exceptions():
        if where == locale:
            assert term in names, term
            assert msgid in known, f"no such message in the {locale} catalogue: {msgid!r}"


@pytest.mark.parametrize("locale", LOCALES)
def test_new_translations_waiting_to_be_merged_use_the_glossarys_terms(locale):
    assert sorted(departures(pending(locale), locale)) == []
