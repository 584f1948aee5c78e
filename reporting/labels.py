"""Labels for the codes that are not vocabularies (rules, states, warnings), and the
vocabularies' labels by code for templates."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from .vocabulary import (
    AckChannel,
    Circumstance,
    DeliveryKind,
    DeliveryStatus,
    OfficerAction,
    RiskFlag,
    Sex,
)

CIRCUMSTANCES = Circumstance.labels()
SEXES = Sex.labels()
RISK_FLAGS = RiskFlag.labels()
ACTIONS = OfficerAction.labels()
RULES: dict[str, Any] = {
    "report_to_guardianship": _l("Report to guardianship"),
    "report_to_guardianship_statutory": _l("Report to guardianship (statutory bound)"),
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


# A report's correctable fields by dotted path, worded as on the form.
FIELDS: dict[str, Any] = {
    "child.iin": _l("Child's IIN"),
    "child.born_at": _l("Time of birth"),
    "child.weight_g": _l("Weight, grams"),
    "child.condition": _l("Child's condition"),
    "mother.iin": _l("Mother's IIN"),
    "mother.full_name": _l("Mother's full name"),
    "mother.birth_date": _l("Mother's date of birth"),
    "mother.citizenship": _l("Mother's citizenship (country code)"),
    "mother.phone": _l("Mother's phone"),
    "mother.address": _l("Mother's address"),
    "risk_flags": _l("Risk signs"),
    "notes": _l("Notes"),
}


AUDIT_REASONS: dict[str, Any] = {
    "gap in sequence": _l("an entry is missing"),
    "broken link": _l("an entry does not follow the one before it"),
    "content changed": _l("an entry was changed after it was written"),
    "entries missing at the end": _l("the newest entries were removed"),
}


DELIVERY_KINDS = DeliveryKind.labels()
DELIVERY_STATUSES = DeliveryStatus.labels()
CHANNELS = AckChannel.labels()
GAP_KINDS: dict[str, Any] = {
    "district_unreachable": _l("Nobody would hear a report from this district"),
    "facility_unrouted": _l("Reports from this facility reach no guardianship agency"),
    "facility_fallback": _l("Reports from this facility go only to the region's agency"),
    "subscription_stale": _l("This device has received no alert for a week"),
    "phone_stuck": _l("A phone has held a report unsent for over 15 minutes"),
}


def countdown_strings() -> dict[str, str]:
    """What countdown.js needs, translated for the page."""
    from flask_babel import gettext as _

    return {"minutes": _("%(n)s min"), "hours": _("%(h)s h %(m)s min")}


def label(table: dict[str, Any], code: str) -> str:
    """The label of `code`, or the code itself when it has none."""
    return str(table.get(code, code))


def outbox_strings() -> dict[str, str]:
    """The phone's outbox texts, translated for the page (the script has no catalogue)."""
    from flask_babel import gettext as _

    return {
        "saved": _("Saved on this phone — not yet sent"),
        "sending": _("Sending…"),
        "delivered": _("Delivered — reference %(ref)s at %(time)s"),
        "acknowledged": _("Acknowledged by %(agency)s at %(time)s"),
        "deadline_left": _("Reporting deadline in %(left)s"),
        "deadline_passed": _("Reporting deadline passed %(left)s ago"),
        "fallback": _("If it cannot be sent, call %(agency)s: %(phone)s"),
        "sign_in": _("Sign in to send"),
        "session_ended": _("Your session ended. The report is safe on this phone."),
        "other_author": _("Waiting for %(name)s to sign in on this phone"),
        "invalid": _("Not accepted — correct the marked fields"),
        "correct": _("Correct"),
        "conflict": _("Refused: another report already has this id"),
        "forbidden": _("Refused: this account may not file reports"),
        "too_large": _("Refused: the report is too large. Shorten the notes and send it again."),
        "unreadable": _("Refused: the server could not read this report. Reload the page and "
                        "send it again."),
        "discard": _("Discard"),
        "discard_confirm": _("Delete this report from the phone? It was not delivered: the "
                             "guardianship authority does not have it."),
        "send_now": _("Send now"),
        "reference": _("Reference %(ref)s"),
        "no_reference": _("The reference is assigned when it is sent"),
        "logout_confirm": _("%(n)s reports are saved on this phone and not yet sent. They "
                            "stay saved and are sent after you sign in again. Sign out?"),
        "required": _("This field is required."),
        "minutes": _("%(n)s min"),
        "hours": _("%(h)s h %(m)s min"),
        "offline": _("No network: reports are saved on this phone and sent later."),
        "state_open": _("Waiting for acknowledgement"),
        "state_acknowledged": _("Acknowledged"),
        "state_closed": _("Closed"),
        "retry": _("Will retry at %(time)s"),
        "not_saved": _("This phone could not save the report: send it again or call."),
        "no_author": _("Waiting for sign-in: it is sent in the name of whoever signs in next "
                       "on this phone."),
        "purge_soon_correct_or_call": _("This refused report will be deleted from this phone "
                                        "on %(date)s: correct it or call %(agency)s: "
                                        "%(phone)s"),
        "purge_soon_call": _("This refused report will be deleted from this phone on "
                             "%(date)s: call %(agency)s: %(phone)s"),
        "purge_soon": _("This refused report will be deleted from this phone on %(date)s."),
    }
