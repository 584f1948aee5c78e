"""Human labels for stored codes, translatable (the codes themselves never change)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

CIRCUMSTANCES: dict[str, Any] = {
    "written_refusal": _l("Mother signed a refusal statement"),
    "left_without_notice": _l("Mother left the facility without notice"),
    "not_returned_after_leave": _l("Mother did not return after leave"),
    "found_abandoned": _l("Child found or brought in"),
    "other": _l("Other"),
}
SEXES: dict[str, Any] = {"female": _l("Girl"), "male": _l("Boy"), "unknown": _l("Unknown")}
RISK_FLAGS: dict[str, Any] = {
    "payment_suspected": _l("Payment for the child suspected"),
    "third_party_claim": _l("A third party claims the child"),
    "surrogacy_suspected": _l("Surrogacy suspected"),
    "mother_minor": _l("Mother is a minor"),
    "foreign_involvement": _l("Foreign involvement"),
    "identity_unknown": _l("Mother's identity unknown"),
}
RULES: dict[str, Any] = {
    "report_to_guardianship": _l("Report to guardianship"),
    "acknowledge_notice": _l("Acknowledge the notice"),
    "examine_child": _l("Examine the child"),
    "inform_police": _l("Inform the police"),
    "register_in_data_bank": _l("Register in the data bank"),
}
STATES: dict[str, Any] = {
    "pending": _l("pending"), "met": _l("met"), "met_late": _l("met late"),
    "overdue": _l("overdue"), "acknowledged": _l("acknowledged"), "open": _l("open"),
    "closed": _l("closed"),
}
WARNINGS: dict[str, Any] = {
    "child.iin_birth_date_mismatch": _l("The child's IIN does not match the time of birth."),
    "child.iin_sex_mismatch": _l("The child's IIN does not match the sex."),
    "mother.iin_birth_date_mismatch": _l("The mother's IIN does not match her date of birth."),
    "mother.iin_sex_mismatch": _l("The mother's IIN is coded as male."),
}


AUDIT_REASONS: dict[str, Any] = {
    "gap in sequence": _l("an entry is missing"),
    "broken link": _l("an entry does not follow the one before it"),
    "content changed": _l("an entry was changed after it was written"),
    "entries missing at the end": _l("the newest entries were removed"),
}


def label(table: dict[str, Any], code: str) -> str:
    """The label of `code`, or the code itself when it has none."""
    return str(table.get(code, code))
