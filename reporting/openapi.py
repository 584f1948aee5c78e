"""The OpenAPI 3.1 document, built from the same schema objects that validate requests."""

from __future__ import annotations

from typing import Any

from .reports import REPORT_SCHEMA

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}},
        "required": ["code", "message"]}},
}
REPORT_OUT = {"type": "object", "description": "The report as sent, plus reference, facility, "
              "reporter, received_at, state, warnings, notices and deadlines."}


def _responses(*codes: int, ok: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        schema = ok if code < 300 else {"$ref": "#/components/schemas/Error"}
        out[str(code)] = {"description": str(code),
                          "content": {"application/json": {"schema": schema or {}}}}
    return out


def openapi_document() -> dict[str, Any]:
    """The whole document."""
    report_ref = {"$ref": "#/components/schemas/ReportOut"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Besik API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": {"ReportIn": REPORT_SCHEMA.json_schema(), "ReportOut": REPORT_OUT,
                        "Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "besik_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/reports": {
                "post": {
                    "summary": "File a report (idempotent on id)",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ReportIn"}}}},
                    "responses": _responses(200, 201, 400, 401, 403, 409, 413, 415, 422,
                                            ok=report_ref),
                },
                "get": {
                    "summary": "Reports in the caller's scope, newest first",
                    "parameters": [
                        {"name": "state", "in": "query", "schema": {
                            "enum": ["pending", "overdue", "acknowledged", "closed"]}},
                        {"name": "limit", "in": "query", "schema": {
                            "type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": _responses(200, 401, 422, ok={"type": "object", "properties": {
                        "items": {"type": "array", "items": report_ref},
                        "next_cursor": {"type": ["string", "null"]}}}),
                },
            },
            "/reports/{id}": {"get": {
                "summary": "One report",
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "responses": _responses(200, 401, 404, ok=report_ref)}},
            "/csrf": {"get": {"summary": "A fresh CSRF token",
                              "responses": _responses(200, 401, ok={
                                  "type": "object",
                                  "properties": {"csrf_token": {"type": "string"}}})}},
            "/audit/verify": {"get": {"summary": "Verify the audit hash chain",
                                      "responses": _responses(200, 401, 403, ok={
                                          "type": "object", "properties": {
                                              "ok": {"type": "boolean"},
                                              "entries": {"type": "integer"},
                                              "head": {"type": "string"}}})}},
        },
    }
