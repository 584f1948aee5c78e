"""The request body of every operation: one schema each, read by the API, the HTML forms and
the OpenAPI document alike."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from .deadlines import BASIS_LENGTH
from .schema import (
    EARLIEST,
    LATEST,
    Choice,
    DateField,
    DateTimeField,
    DurationField,
    Field,
    Flag,
    IINField,
    IntField,
    ListOf,
    Obj,
    Str,
    UUIDField,
)
from .vocabulary import (
    AgencyKind,
    Circumstance,
    ExportFormat,
    FacilityKind,
    Language,
    OfficerAction,
    ReportFilter,
    RiskFlag,
    Role,
    Sex,
)

REFERENCE_PATTERN = r"[A-Z]{2,8}-[0-9]{4}-[0-9]{6,}"
CODE_PATTERN = r"[A-Z0-9-]{2,32}"  # regions, districts, facilities, agencies
MAX_RESERVE = 10
NOTE_LENGTH = 2000

REPORT = Obj({
    "id": UUIDField(required=True, description="Client-generated UUID; the idempotency key."),
    "circumstance": Choice(Circumstance, required=True),
    "discovered_at": DateTimeField(required=True, description="When staff learned of it."),
    "filed_at": DateTimeField(description="The phone's clock at Send; defaults to receipt."),
    "reference": Str(max_length=32, pattern=REFERENCE_PATTERN,
                     description="A reference reserved for this facility."),
    "child": Obj({
        "sex": Choice(Sex, required=True),
        "iin": IINField(),
        "born_at": DateTimeField(),
        "weight_g": IntField(minimum=200, maximum=8000),
        "condition": Str(max_length=200),
    }, required=True),
    "mother": Obj({
        "iin": IINField(),
        "full_name": Str(max_length=200),
        "birth_date": DateField(),
        "citizenship": Str(max_length=2, pattern="[A-Z]{2}"),
        "phone": Str(max_length=32, pattern=r"\+?[0-9 ()-]{5,31}"),
        "address": Str(max_length=500),
    }),
    "risk_flags": ListOf(Choice(RiskFlag), max_items=len(RiskFlag)),
    "notes": Str(max_length=4000),
}, name="ReportIn")

# What a report was filed with and can never be corrected: its identity, what happened and
# when it was discovered and filed (the reporting deadlines are judged on them), the child's
# sex. Everything else is corrected by an amendment, which keeps the value before.
FIXED_FACTS = frozenset({"id", "circumstance", "discovered_at", "filed_at", "reference",
                         "child.sex"})
REASON_LENGTH = 500


def _correctable(schema: Obj, prefix: str = "", **kwargs: Any) -> Obj:
    """`schema`'s optional fields (nested objects field by field), each clearable; the
    required and fixed ones refused by name."""
    fields: dict[str, Field] = {}
    refused = {}
    for name, field in schema.fields.items():
        path = f"{prefix}{name}"
        if isinstance(field, Obj):
            fields[name] = _correctable(field, f"{path}.")
        elif field.required or path in FIXED_FACTS:
            refused[name] = _l("This cannot be corrected after filing.")
        else:
            fields[name] = field
    return Obj(fields, refused=refused, is_clearable=True, **kwargs)


NOTE = Obj({"note": Str(max_length=NOTE_LENGTH)}, name="AcknowledgementIn")
ACTION = Obj({"action": Choice(OfficerAction, required=True),
              "note": Str(max_length=NOTE_LENGTH)}, name="ActionIn")
ACK_TOKEN = Obj({"token": Str(max_length=100, required=True)}, name="AckTokenIn")
RESERVE = Obj({"count": IntField(minimum=1, maximum=MAX_RESERVE, required=True)},
              name="ReserveIn")
HEARTBEAT = Obj({
    "device_id": Str(max_length=64, pattern=r"[A-Za-z0-9._-]{8,64}", required=True),
    "outbox_depth": IntField(minimum=0, maximum=100_000, required=True),
    "oldest_unsent_at": DateTimeField(),
}, name="HeartbeatIn")
SUBSCRIPTION = Obj({
    "endpoint": Str(max_length=1000, required=True),
    "expirationTime": IntField(minimum=0, maximum=2**53),
    "keys": Obj({"p256dh": Str(max_length=200, pattern=r"[A-Za-z0-9_=-]{40,200}",
                               required=True),
                 "auth": Str(max_length=100, pattern=r"[A-Za-z0-9_=-]{8,100}",
                             required=True)}, required=True),
}, name="SubscriptionIn")
ENDPOINT = Obj({"endpoint": Str(max_length=1000, required=True)}, name="EndpointIn")
ME = Obj({"locale": Choice(Language, required=True,
                          description="The caller's own language: pages, pushes, exports.")},
         name="MeIn")

# Query strings (validated by the same fields; every value arrives as text).
REPORT_LIST_QUERY = Obj({
    "state": Choice(ReportFilter),
    "limit": IntField(minimum=1, maximum=100, from_text=True, description="Default 50."),
    "cursor": Str(max_length=200, description="next_cursor of the previous page."),
}, name="ReportListQuery")

CORRECTABLE = _correctable(REPORT, required=True,
                           description="The fields to correct, as in a report; null clears "
                                       "one.")
AMENDMENT = Obj({
    "changes": CORRECTABLE,
    "reason": Str(max_length=REASON_LENGTH, required=True, description="Why, for the record."),
}, name="AmendmentIn")

BODIES = (REPORT, NOTE, ACTION, ACK_TOKEN, RESERVE, HEARTBEAT, SUBSCRIPTION, ENDPOINT, ME,
          AMENDMENT)

AUDIT_QUERY = Obj({
    "from": DateField(description="First Almaty day, YYYY-MM-DD."),
    "to": DateField(description="Last Almaty day, YYYY-MM-DD."),
    "event": Str(max_length=64, pattern=r"[a-z_]+(:[a-z_]+)?",
                 description="A tag (report:filed) or a prefix (report)."),
    "limit": IntField(minimum=1, maximum=500, from_text=True, description="Default 100."),
    "cursor": IntField(minimum=1, maximum=2**62, from_text=True,
                       description="next_cursor of the previous page."),
}, name="AuditQuery")
DIGEST_QUERY = Obj({"date": DateField(description="An Almaty day (default: today so far).")},
                   name="DigestQuery")
COMPLIANCE_QUERY = Obj({
    "from": DateField(description="First Almaty day (default: 29 days before today)."),
    "to": DateField(description="Last Almaty day (default: today)."),
    "region": Str(max_length=32, pattern=CODE_PATTERN,
                  description="A region within the admin's scope."),
}, name="ComplianceQuery")
EXPORT_QUERY = Obj({
    "format": Choice(ExportFormat, required=True),
    "from": DateField(description="First Almaty day of receipt, YYYY-MM-DD."),
    "to": DateField(description="Last Almaty day of receipt, YYYY-MM-DD."),
    "region": Str(max_length=32, pattern=CODE_PATTERN,
                  description="A region in the admin's scope."),
    "facility": Str(max_length=32, pattern=CODE_PATTERN, description="A facility's code."),
    "agency": Str(max_length=32, pattern=CODE_PATTERN,
                  description="Only reports notified to this agency."),
    "lang": Choice(Language, description="Headers and labels (default: the admin's)."),
}, name="ExportQuery")

# Places (the admin's forms and the CLI).
_CODE_FIELD = Str(max_length=32, pattern=CODE_PATTERN, required=True,
                  description="Capital letters, digits and hyphens.")
_NAME_FIELD = Str(max_length=200, required=True)
_PLACE_CODE = Str(max_length=32, pattern=CODE_PATTERN)
_PHONE = Str(max_length=32, pattern=r"\+?[0-9 ()-]{2,31}")
DISTRICT_NEW = Obj({"code": _CODE_FIELD, "name": _NAME_FIELD,
                    "region": Str(max_length=32, pattern=CODE_PATTERN, required=True)},
                   name="DistrictNew")
DISTRICT_CHANGE = Obj({"name": _NAME_FIELD, "is_active": Flag(required=True)},
                      name="DistrictChange")
FACILITY_NEW = Obj({"code": _CODE_FIELD, "name": _NAME_FIELD,
                    "kind": Choice(FacilityKind, required=True),
                    "district": Str(max_length=32, pattern=CODE_PATTERN, required=True)},
                   name="FacilityNew")
FACILITY_CHANGE = Obj({"name": _NAME_FIELD, "kind": Choice(FacilityKind, required=True),
                       "district": Str(max_length=32, pattern=CODE_PATTERN, required=True),
                       "is_active": Flag(required=True)}, name="FacilityChange")
AGENCY_NEW = Obj({"code": _CODE_FIELD, "name": _NAME_FIELD,
                  "kind": Choice(AgencyKind, required=True), "district": _PLACE_CODE,
                  "region": _PLACE_CODE, "phone": _PHONE}, name="AgencyNew")
AGENCY_CHANGE = Obj({"name": _NAME_FIELD, "kind": Choice(AgencyKind, required=True),
                     "district": _PLACE_CODE, "region": _PLACE_CODE, "phone": _PHONE,
                     "is_active": Flag(required=True)}, name="AgencyChange")

# People (the admin's forms).
_USER_FIELDS = {
    "name": _NAME_FIELD,
    "role": Choice(Role, required=True),
    "facility": _PLACE_CODE,
    "agency": _PLACE_CODE,
    "region": _PLACE_CODE,
    "is_head": Flag(),
}
USER_NEW = Obj({"email": Str(max_length=254, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+",
                             required=True), **_USER_FIELDS}, name="UserNew")
USER_CHANGE = Obj(_USER_FIELDS, name="UserChange")

# The administrators' settings pages (HTML forms) and their commands. The page posts a whole
# rule; `flask policy set` changes the duration only (CONTRACT §3).
RULE_NAME = Str(max_length=64, pattern=r"[a-z_]+", required=True)
POLICY_RULE = Obj({
    "rule": RULE_NAME,
    "duration": DurationField(required=True),
    "basis": Str(max_length=BASIS_LENGTH, required=True),
    "verified": Flag(description="An unticked checkbox sends nothing: not verified."),
}, name="PolicyRuleForm")
POLICY_SET = Obj({"rule": RULE_NAME, "duration": POLICY_RULE.fields["duration"]})
# The day kinds of CONTRACT §3's `calendar set`, as the form's radio buttons send them too.
DAY_KIND_PATTERN = r"working|day-off"
REASON_LENGTH = 255  # calendar_overrides.note
CALENDAR_DAY = Obj({
    "day": DateField(required=True),
    "kind": Str(max_length=8, pattern=DAY_KIND_PATTERN, required=True),
    "reason": Str(max_length=REASON_LENGTH, required=True),
}, name="CalendarDayForm")
# `flask calendar set ... [--reason TEXT]`: the reason is optional there (CONTRACT §3).
CALENDAR_DAY_CLI = Obj(CALENDAR_DAY.fields | {"reason": Str(max_length=REASON_LENGTH)})
CALENDAR_UNSET = Obj({"day": DateField(required=True)}, name="CalendarUnsetForm")
CALENDAR_QUERY = Obj({
    "year": IntField(minimum=EARLIEST.year, maximum=LATEST.year, from_text=True,
                     description="Default: this year."),
}, name="CalendarQuery")
