"""One vocabulary: every coded choice has a label in every language, and the API's document
offers exactly its values."""

from __future__ import annotations

from typing import Any

import pytest
from flask_babel import force_locale

from reporting import LOCALES
from reporting.openapi import openapi_document
from reporting.vocabulary import (
    VOCABULARIES,
    AckChannel,
    Circumstance,
    OfficerAction,
    ReportFilter,
    RiskFlag,
    Sex,
    Term,
)

# The vocabularies the API speaks (delivery kinds and statuses stay inside the server).
IN_THE_API = (Circumstance, Sex, RiskFlag, OfficerAction, AckChannel, ReportFilter)
SAME_IN_EVERY_LANGUAGE = {"API"}


def _enums(node: Any) -> list[list[str]]:
    if isinstance(node, dict):
        found = [node["enum"]] if "enum" in node else []
        return found + [e for value in node.values() for e in _enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in _enums(value)]
    return []


@pytest.mark.parametrize("vocabulary", VOCABULARIES, ids=lambda v: v.__name__)
def test_every_value_has_a_label_in_every_language(app, vocabulary: type[Term]):
    with app.test_request_context("/"):
        for member in vocabulary:
            assert member.label is not None, f"{vocabulary.__name__}.{member.name} has no label"
            english = str(member.label)
            for locale in LOCALES:
                with force_locale(locale):
                    shown = str(member.label)
                assert shown.strip(), f"{member} is blank in {locale}"
                if locale != "en" and english not in SAME_IN_EVERY_LANGUAGE:
                    assert shown != english, f"{member} is left in English in {locale}"


@pytest.mark.parametrize("vocabulary", IN_THE_API, ids=lambda v: v.__name__)
def test_the_api_document_offers_exactly_the_vocabulary(app, vocabulary: type[Term]):
    assert list(vocabulary.values()) in _enums(openapi_document(app))


def test_the_report_form_offers_every_choice(client):
    from tests.conftest import login

    login(client, "nurse@besik.example")
    page = client.get("/reports/new").data.decode()
    for vocabulary in (Circumstance, Sex, RiskFlag):
        for member in vocabulary:
            assert f'value="{member.value}"' in page, member
