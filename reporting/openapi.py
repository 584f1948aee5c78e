"""The OpenAPI 3.1 document, walked from the URL map: each API view declares its operation
(`@operation`), request schemas come from `bodies`, answers from the schemas below."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask

from .access import PUBLIC, SIGNED_IN, declared_access
from .bodies import BODIES
from .errors import HTTP_REFUSALS, REFUSALS
from .schema import Obj
from .vocabulary import AckChannel, Circumstance, Language, OfficerAction, RiskFlag, Sex

API_PREFIX = "/api/v1"
OPERATION_ATTR = "besik_operation"
F = TypeVar("F", bound=Callable[..., Any])
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True)
class Operation:
    """What an API view accepts and answers."""

    summary: str
    body: Obj | None
    query: Obj | None
    status: int
    returns: str | None  # a component schema's name; None: no content
    errors: tuple[int, ...]
    is_body_optional: bool
    files: tuple[str, ...]  # media types of a file answer (instead of JSON)


def operation(summary: str, *, body: Obj | None = None, query: Obj | None = None,
              status: int = 200, returns: str | None = None, errors: tuple[int, ...] = (),
              is_body_optional: bool = False, files: tuple[str, ...] = ()
              ) -> Callable[[F], F]:
    """Declare a view's operation for the OpenAPI document (a test fails for any API view
    without one). Refusals every operation of its kind can give are added by themselves."""

    def mark(view: F) -> F:
        setattr(view, OPERATION_ATTR, Operation(summary, body, query, status, returns, errors,
                                                is_body_optional, files))
        return view

    return mark


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
NAMED = {"type": "object", "properties": {"name": STRING}, "required": ["name"]}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    return schema


def _enum(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


NOTICE_STATES = ("pending", "acknowledged", "overdue")
DEADLINE_STATES = ("pending", "met", "met_late", "overdue")
REPORT_STATES = ("open", "acknowledged", "closed")

NOTICE_OUT = _object({
    "id": STRING,
    "agency": _object({"code": STRING, "name": STRING, "kind": _enum(("guardianship",
                                                                      "police"))}),
    "is_fallback": BOOLEAN, "sent_at": TIME, "ack_due_at": TIME,
    "acknowledged_at": _nullable(TIME), "acknowledged_by": _nullable(NAMED),
    "state": _enum(NOTICE_STATES), "is_late": BOOLEAN,
    "ack_channel": _nullable(_enum(AckChannel.values())), "escalation_level": INTEGER,
})
DEADLINE_OUT = _object({
    "rule": STRING, "notice_id": _nullable(STRING), "due_at": TIME, "met_at": _nullable(TIME),
    "state": _enum(DEADLINE_STATES), "basis": STRING, "basis_verified": BOOLEAN,
})
TIMELINE_EVENTS = ("discovered", "filed", "received", "notice_sent", "delivered",
                   "acknowledged", "escalated", "action", "amended")
ANY: dict[str, Any] = {}  # any JSON value: a field's value before or after a correction
AMENDMENT_OUT = _object({
    "id": INTEGER, "at": TIME, "by": NAMED, "reason": _nullable(STRING),
    "changes": {"type": "object", "description": "By dotted field path (child.iin).",
                "additionalProperties": _object({"from": ANY, "to": ANY})},
})
TIMELINE_EVENT = _object({
    "at": TIME, "event": _enum(TIMELINE_EVENTS), "actor": _nullable(NAMED),
    "detail": {"type": "object", "description": "What the event needs to be told: e.g. filed: "
               "filed_at, received_at, gap_seconds; amended: reason, changes."},
})
REPORT_OUT = _object({
    "id": STRING, "reference": STRING, "circumstance": _enum(Circumstance.values()),
    "discovered_at": TIME, "filed_at": TIME, "received_at": TIME, "reported_at": TIME,
    "child": _object({"sex": _enum(Sex.values()), "iin": STRING, "born_at": TIME,
                      "weight_g": INTEGER, "condition": STRING}, required=["sex"]),
    "mother": _object({"iin": STRING, "full_name": STRING,
                       "birth_date": {"type": "string", "format": "date"},
                       "citizenship": STRING, "phone": STRING, "address": STRING},
                      required=[]),
    "risk_flags": {"type": "array", "items": _enum(RiskFlag.values())},
    "notes": _nullable(STRING),
    "facility": _object({"code": STRING, "name": STRING}),
    "reporter": NAMED,
    "state": _enum(REPORT_STATES),
    "warnings": {"type": "array", "items": STRING},
    "notices": {"type": "array", "items": {"$ref": "#/components/schemas/NoticeOut"}},
    "deadlines": {"type": "array", "items": {"$ref": "#/components/schemas/DeadlineOut"}},
    "clock_gap_seconds": INTEGER,
    "amendments": {"type": "array", "items": {"$ref": "#/components/schemas/AmendmentOut"}},
    "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineEvent"}},
})
RESPONSES: dict[str, dict[str, Any]] = {
    "ReportOut": REPORT_OUT,
    "AmendmentOut": AMENDMENT_OUT,
    "TimelineEvent": TIMELINE_EVENT,
    "NoticeOut": NOTICE_OUT,
    "DeadlineOut": DEADLINE_OUT,
    "ReportPage": _object({
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ReportOut"}},
        "next_cursor": _nullable(STRING)}),
    "ActionOut": _object({"id": INTEGER, "action": _enum(OfficerAction.values()),
                          "note": _nullable(STRING), "created_at": TIME, "by": NAMED}),
    "CsrfOut": _object({"csrf_token": STRING, "user": _object({
        "id": INTEGER, "name": STRING, "role": _enum(("reporter", "officer", "admin"))})}),
    "MeOut": _object({"email": STRING, "name": STRING,
                      "role": _enum(("reporter", "officer", "admin")),
                      "locale": _nullable(_enum(Language.values()))}),
    "AuditVerification": _object({"ok": BOOLEAN, "entries": INTEGER, "head": STRING,
                                  "bad_entry": INTEGER, "reason": STRING},
                                 required=["ok", "entries", "head"]),
    "ReservedReferences": _object({"references": {"type": "array", "items": STRING},
                                   "facility": STRING, "expires_at": TIME}),
    "VapidPublicKey": _object({"publicKey": STRING}),
    "Subscriptions": _object({"items": {"type": "array", "items": _object({
        "id": INTEGER, "endpoint_host": STRING, "user_agent": _nullable(STRING),
        "created_at": TIME, "last_success_at": _nullable(TIME),
        "last_failure_at": _nullable(TIME)})}}),
    "SubscriptionCreated": _object({"id": INTEGER}),
    "Queued": _object({"queued": INTEGER}),
    "OpenAPI": {"type": "object"},
    "AuditPage": _object({"items": {"type": "array", "items": _object({
        "seq": INTEGER, "at": TIME, "event": STRING,
        "actor": _nullable(_object({"id": INTEGER, "name": STRING})),
        "subject": _nullable(STRING), "hash": STRING})}, "next_cursor": _nullable(INTEGER)}),
    "Compliance": _object({
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "facilities": {"type": "array", "items": _object({
            "code": STRING, "name": STRING, "reports": INTEGER, "on_time": INTEGER,
            "late": INTEGER, "on_time_rate": _nullable({"type": "number"}),
            "on_time_statutory": INTEGER, "late_statutory": INTEGER,
            "median_minutes_to_file": _nullable({"type": "number"})})},
        "agencies": {"type": "array", "items": _object({
            "code": STRING, "name": STRING, "kind": STRING, "notices": INTEGER,
            "acknowledged": INTEGER, "median_minutes_to_ack": _nullable({"type": "number"}),
            "p90_minutes_to_ack": _nullable({"type": "number"}), "overdue_now": INTEGER,
            "escalations": INTEGER})},
        "overdue": {"type": "array", "items": _object({
            "report_id": STRING, "reference": STRING, "rule": STRING, "due_at": TIME,
            "agency": _nullable(STRING)})}}),
    "Coverage": _object({"gaps": {"type": "array", "items": _object({
        "kind": _enum(("district_unreachable", "facility_unrouted", "facility_fallback",
                       "subscription_stale", "phone_stuck")),
        "code": STRING, "detail": STRING})}}),
    "AuditDigest": _object({"date": {"type": "string", "format": "date"}, "entries": INTEGER,
                            "head": STRING, "hmac": STRING}),
}
ERROR = _object({"error": _object({
    "code": STRING, "message": STRING,
    "fields": {"type": "object", "additionalProperties": STRING}}, required=["code", "message"])})
# What an operation can answer without declaring it, by what it takes.
BODY_REFUSALS = (400, 413, 415, 422)


def openapi_document(app: Flask) -> dict[str, Any]:
    """The whole document: every operation declared under /api/v1 in the URL map."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        view = app.view_functions[rule.endpoint]
        declared = getattr(view, OPERATION_ATTR, None)
        if declared is None:
            continue  # tests/test_openapi.py fails for it
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule[len(API_PREFIX):])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation_object(
                declared, sorted(rule.arguments), declared_access(app, rule.endpoint))
    schemas: dict[str, Any] = {body.name: body.json_schema() for body in BODIES if body.name}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Besik API", "version": "1"},
        "servers": [{"url": API_PREFIX}],
        "components": {
            "schemas": schemas | RESPONSES | {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "besik_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }


def _operation_object(op: Operation, path_args: list[str],
                      access: frozenset[str] | None) -> dict[str, Any]:
    is_public = access is not None and PUBLIC in access
    document: dict[str, Any] = {"summary": op.summary, "responses": _responses(
        op, has_path_args=bool(path_args), is_public=is_public,
        is_any_role=access is not None and SIGNED_IN in access)}
    if is_public:
        document["security"] = []
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": UUID_PATTERN}} for name in path_args]
    if op.query is not None:
        parameters += [{"name": name, "in": "query", "required": field.required,
                        "schema": field.json_schema()} for name, field in op.query.fields.items()]
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {"required": not op.is_body_optional, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.name}"}}}}
    return document


def _responses(op: Operation, *, has_path_args: bool, is_public: bool,
               is_any_role: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if op.returns is not None:
        ok["content"] = {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{op.returns}"}}}
    if op.files:
        ok["content"] = {media: {"schema": {"type": "string", "format": "binary"}}
                         for media in op.files}
    responses = {str(op.status): ok}
    if op.status == 201 and op.returns == "ReportOut":
        responses["200"] = ok  # the same report filed again
    codes = set(op.errors)
    codes |= set() if is_public else {401}
    codes |= set() if is_public or is_any_role else {403}
    codes |= {404} if has_path_args else set()
    codes |= set(BODY_REFUSALS) if op.body is not None else set()
    codes |= {422} if op.query is not None else set()
    for code in sorted(codes):
        responses[str(code)] = {"description": _describe(code), "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return responses


def _describe(code: int) -> str:
    for refusal in (*REFUSALS.values(), *HTTP_REFUSALS.values()):
        if refusal.status == code:
            return refusal.code
    return str(code)
