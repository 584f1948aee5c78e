"""Besik's vocabulary: every coded choice, once, with its translatable label.

Schemas, the OpenAPI document, labels on pages, the HTML form and the phone's script all read
these enums. Adding a value is one line here plus its translations in the catalogues.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l


class Term(StrEnum):
    """A stored code (never changes) with its label (translated when shown)."""

    label: Any

    # `label` has a default only so that Term("code") type-checks as the lookup it is.
    def __new__(cls, value: str, label: Any = None) -> Term:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every code, in declaration order."""
        return tuple(member.value for member in cls)

    @classmethod
    def labels(cls) -> dict[str, Any]:
        """code -> lazy label."""
        return {member.value: member.label for member in cls}


class Circumstance(Term):
    WRITTEN_REFUSAL = "written_refusal", _l("Mother signed a refusal statement")
    LEFT_WITHOUT_NOTICE = "left_without_notice", _l("Mother left the facility without notice")
    NOT_RETURNED_AFTER_LEAVE = "not_returned_after_leave", _l("Mother did not return after leave")
    FOUND_ABANDONED = "found_abandoned", _l("Child found or brought in")
    OTHER = "other", _l("Other")


class Sex(Term):
    FEMALE = "female", _l("Girl")
    MALE = "male", _l("Boy")
    UNKNOWN = "unknown", _l("Unknown")


class RiskFlag(Term):
    PAYMENT_SUSPECTED = "payment_suspected", _l("Payment for the child suspected")
    THIRD_PARTY_CLAIM = "third_party_claim", _l("A third party claims the child")
    SURROGACY_SUSPECTED = "surrogacy_suspected", _l("Surrogacy suspected")
    MOTHER_MINOR = "mother_minor", _l("Mother is a minor")
    FOREIGN_INVOLVEMENT = "foreign_involvement", _l("Foreign involvement")
    IDENTITY_UNKNOWN = "identity_unknown", _l("Mother's identity unknown")


class OfficerAction(Term):
    """What an officer records; each belongs to one kind of agency (actions.ACTIONS_OF)."""

    EXAMINED = "examined", _l("Child examined")
    PLACED = "placed", _l("Child placed")
    REGISTERED = "registered", _l("Registered in the data bank")
    POLICE_INFORMED = "police_informed", _l("Police informed")
    CLOSED = "closed", _l("Case closed")
    INVESTIGATION_OPENED = "investigation_opened", _l("Investigation opened")
    NO_OFFENCE_FOUND = "no_offence_found", _l("No offence found")


class AckChannel(Term):
    INBOX = "inbox", _l("Inbox")
    REPORT_PAGE = "report_page", _l("Report page")
    NOTIFICATION = "notification", _l("Notification")
    ACK_PAGE = "ack_page", _l("Acknowledgement page")
    API = "api", _l("API")


class DeliveryKind(Term):
    NOTICE = "notice", _l("New report")
    REMINDER = "reminder", _l("Reminder")
    ESCALATION = "escalation", _l("Escalation")
    TEST = "test", _l("Test message")
    COVERAGE = "coverage", _l("Coverage gap")


class DeliveryStatus(Term):
    PENDING = "pending", _l("Waiting to be sent")
    SENT = "sent", _l("Sent")
    FAILED = "failed", _l("Failed")
    GONE = "gone", _l("Device unsubscribed")
    CANCELLED = "cancelled", _l("Cancelled")


class ReportFilter(Term):
    """The states a list of reports can be filtered by."""

    PENDING = "pending", _l("Waiting for acknowledgement")
    OVERDUE = "overdue", _l("Overdue")
    ACKNOWLEDGED = "acknowledged", _l("Acknowledged")
    CLOSED = "closed", _l("Closed")


class Role(Term):
    REPORTER = "reporter", _l("Reporter (medical staff)")
    OFFICER = "officer", _l("Officer")
    ADMIN = "admin", _l("Administrator")


class AgencyKind(Term):
    GUARDIANSHIP = "guardianship", _l("Guardianship authority")
    POLICE = "police", _l("Police")


class FacilityKind(Term):
    MATERNITY = "maternity", _l("Maternity hospital")
    PERINATAL = "perinatal", _l("Perinatal centre")
    POLYCLINIC = "polyclinic", _l("Polyclinic")
    EMERGENCY = "emergency", _l("Emergency hospital")
    PRIVATE = "private", _l("Private clinic")


class ExportFormat(Term):
    CSV = "csv", _l("CSV (comma-separated text)")
    XLSX = "xlsx", _l("Excel workbook (XLSX)")


class Language(Term):
    KK = "kk", _l("Kazakh")
    RU = "ru", _l("Russian")
    EN = "en", _l("English")


VOCABULARIES: tuple[type[Term], ...] = (Circumstance, Sex, RiskFlag, OfficerAction, AckChannel,
                                        DeliveryKind, DeliveryStatus, ReportFilter,
                                        Role, AgencyKind, FacilityKind, ExportFormat, Language)
