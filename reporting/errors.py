"""One error shape for the API: {"error": {"code", "message", "fields"}}; HTML pages elsewhere."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .auth import wants_json

MESSAGES: dict[int, Any] = {
    400: _l("The request could not be read."),
    401: _l("Sign in to continue."),
    403: _l("You are not allowed to do this."),
    404: _l("Not found."),
    405: _l("This method is not allowed here."),
    409: _l("This conflicts with what is already stored."),
    413: _l("The request is too large."),
    415: _l("Send JSON (Content-Type: application/json)."),
    422: _l("The request has errors."),
    429: _l("Too many requests: try again shortly."),
    500: _l("Something went wrong on our side; nothing was saved."),
}
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited",
         500: "server_error"}


def json_error(status: int, code: str, message: Any,
               fields: dict[str, Any] | None = None) -> tuple[Response, int]:
    """The API's error body."""
    body: dict[str, Any] = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = {k: str(v) for k, v in fields.items()}
    return jsonify(error=body), status


class ApiError(Exception):
    """An API refusal with its status, code and per-field messages."""

    def __init__(self, status: int, code: str, message: Any,
                 fields: dict[str, Any] | None = None) -> None:
        super().__init__(str(message))
        self.status, self.code, self.message, self.fields = status, code, message, fields


def _handle_api_error(exc: ApiError) -> Any:
    return json_error(exc.status, exc.code, exc.message, exc.fields)


def _handle_http(exc: HTTPException) -> Any:
    status = exc.code or 500
    if wants_json(request):
        return json_error(status, CODES.get(status, "error"), MESSAGES.get(status, exc.name))
    return render_template("error.html", status=status,
                           message=MESSAGES.get(status, exc.name)), status


def _handle_csrf(exc: CSRFError) -> Any:
    if wants_json(request):
        return json_error(400, "csrf_invalid",
                          _l("The security token is missing or expired: fetch a new one."))
    return render_template("error.html", status=400,
                           message=_l("This page expired. Go back, reload and try again.")), 400


def init_errors(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(CSRFError, _handle_csrf)
    app.register_error_handler(HTTPException, _handle_http)
