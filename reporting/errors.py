"""Refusals: the domain's <What>Errors, and the one table that turns each into HTTP.

Operations raise the errors below and know nothing of HTTP. The table maps each to
(status, code, message); the handlers answer the API with {"error": {"code", "message",
"fields"}} and pages with the error page. Nothing else builds an error body.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from flask import (
    Flask,
    Request,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

Fields = dict[str, Any]
log = logging.getLogger("besik.errors")

# What the database driver raises while the server is down, restarting or out of
# connections (refused, reset, "terminating connection due to administrator command", pool
# timeout): nothing was stored, and the same request will work once it is back.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
# A phone's outbox waits at least this long before sending again.
DATABASE_RETRY_AFTER_SECONDS = 5


class BesikError(Exception):
    """A refusal the caller can act on; `fields` names what to correct."""

    def __init__(self, fields: Fields | None = None) -> None:
        super().__init__(", ".join(fields or {}))
        self.fields: Fields = fields or {}


class ValidationError(BesikError):
    """Input that breaks a rule: per-field messages."""


class ReportInvalidError(ValidationError):
    """A report that breaks a rule of the report schema or of time."""


class AmendmentInvalidError(ValidationError):
    """A correction that breaks a rule: a fixed fact, a bad value, or nothing that changes."""


class ReferenceTakenError(ReportInvalidError):
    """A reserved reference that is not this facility's, lapsed, or was used (by a twin
    request of the same report, when two arrive at once)."""


class MalformedJSONError(BesikError):
    """A body that is not JSON, or nested too deep to read."""


class NotJSONError(BesikError):
    """A body sent without Content-Type: application/json."""


class NotFoundError(BesikError):
    """Absent, or outside the caller's scope (never told apart: no existence leaks)."""


class ForbiddenError(BesikError):
    """The caller's role may not do this."""


class PasswordChangeRequiredError(BesikError):
    """Signed in with a one-time password: choose one's own first (/me)."""


class NoFacilityError(BesikError):
    """A reporter account that belongs to no facility cannot file or reserve."""


class ReportIdConflictError(BesikError):
    """The id was already used by a different report."""


class NoticeNotAcknowledgedError(BesikError):
    """An officer acts on a notice before acknowledging it."""


class ReportClosedError(BesikError):
    """The report is closed: nothing more is recorded on it."""


class SubscriptionTakenError(BesikError):
    """The push endpoint is registered to another user."""


class TooManyAttemptsError(BesikError):
    """Too many failed sign-ins or tokens from this account or address: wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class DatabaseUnavailableError(BesikError):
    """The database does not answer (down, restarting, out of connections): nothing was
    stored; the same request can be sent again."""

    def __init__(self, retry_after: int = DATABASE_RETRY_AFTER_SECONDS) -> None:
        super().__init__()
        self.retry_after = retry_after


class AckTokenError(BesikError):
    """An acknowledgement token that is unknown, used, expired or for another notice."""


class PushUnavailableError(BesikError):
    """The server has no VAPID key yet: nobody can subscribe."""


class DigestKeyMissingError(BesikError):
    """The audit digest key file is missing: init-db creates it."""


class PolicyError(ValidationError):
    """A change the deadline policy cannot take: an unknown rule, an empty legal basis."""


class CalendarError(ValidationError):
    """A change the working-day calendar cannot take: removing an override that is not there."""


class Refusal(NamedTuple):
    status: int
    code: str
    message: Any


REFUSALS: dict[type[BesikError], Refusal] = {
    ValidationError: Refusal(422, "validation_failed", _l("The request has errors.")),
    ReportInvalidError: Refusal(422, "validation_failed", _l("The report has errors.")),
    AmendmentInvalidError: Refusal(422, "validation_failed", _l("The correction has errors.")),
    MalformedJSONError: Refusal(400, "bad_request", _l("The request could not be read.")),
    NotJSONError: Refusal(415, "unsupported_media_type",
                          _l("Send JSON (Content-Type: application/json).")),
    NotFoundError: Refusal(404, "not_found", _l("Not found.")),
    ForbiddenError: Refusal(403, "forbidden", _l("You are not allowed to do this.")),
    NoFacilityError: Refusal(403, "no_facility", _l("Your account belongs to no facility.")),
    PasswordChangeRequiredError: Refusal(403, "password_change_required", _l(
        "Choose your own password first, on your account page.")),
    ReportIdConflictError: Refusal(409, "id_conflict",
                                   _l("A different report was already filed with this id.")),
    NoticeNotAcknowledgedError: Refusal(409, "not_acknowledged",
                                        _l("Acknowledge the notice before recording actions.")),
    ReportClosedError: Refusal(409, "report_closed", _l("This report is closed.")),
    SubscriptionTakenError: Refusal(409, "subscription_taken",
                                    _l("This device is registered to another account.")),
    TooManyAttemptsError: Refusal(429, "rate_limited",
                                  _l("Too many failed attempts: try again later.")),
    AckTokenError: Refusal(403, "forbidden",
                           _l("This acknowledgement link is used, expired or not valid.")),
    PolicyError: Refusal(422, "validation_failed", _l("The policy change has errors.")),
    CalendarError: Refusal(422, "validation_failed", _l("The calendar change has errors.")),
    DigestKeyMissingError: Refusal(503, "digest_unavailable",
                                   _l("Audit digests are not set up on this server yet.")),
    PushUnavailableError: Refusal(503, "push_unavailable",
                                  _l("Notifications are not set up on this server yet.")),
    DatabaseUnavailableError: Refusal(503, "unavailable",
                                      _l("The service is unavailable: try again shortly.")),
}
# What the framework itself refuses (routing, body size, the access gate).
HTTP_REFUSALS: dict[int, Refusal] = {
    400: Refusal(400, "bad_request", _l("The request could not be read.")),
    401: Refusal(401, "unauthorized", _l("Sign in to continue.")),
    403: Refusal(403, "forbidden", _l("You are not allowed to do this.")),
    404: Refusal(404, "not_found", _l("Not found.")),
    405: Refusal(405, "method_not_allowed", _l("This method is not allowed here.")),
    409: Refusal(409, "conflict", _l("This conflicts with what is already stored.")),
    413: Refusal(413, "too_large", _l("The request is too large.")),
    415: Refusal(415, "unsupported_media_type",
                 _l("Send JSON (Content-Type: application/json).")),
    422: Refusal(422, "validation_failed", _l("The request has errors.")),
    429: Refusal(429, "rate_limited", _l("Too many requests: try again shortly.")),
    500: Refusal(500, "server_error", _l("Something went wrong on our side; nothing was saved.")),
    503: Refusal(503, "unavailable", _l("The service is unavailable: try again shortly.")),
}
CSRF_REFUSAL = Refusal(400, "csrf_invalid",
                       _l("The security token is missing or expired: fetch a new one."))


def refusal_of(exc: BesikError) -> Refusal:
    """The table's row for an error (its nearest listed class)."""
    for cls in type(exc).__mro__:
        if cls in REFUSALS:
            return REFUSALS[cls]
    raise LookupError(f"{type(exc).__name__} is missing from REFUSALS")


def wants_json(req: Request) -> bool:
    """API and fetch() callers get JSON errors, never an HTML page or a redirect."""
    return (req.path.startswith("/api/") or req.is_json
            or req.accept_mimetypes.best == "application/json")


def error_response(refusal: Refusal, fields: Fields | None = None) -> tuple[Response, int]:
    """The API's error body and status."""
    body: dict[str, Any] = {"code": refusal.code, "message": str(refusal.message)}
    if fields:
        body["fields"] = {k: str(v) for k, v in fields.items()}
    return jsonify(error=body), refusal.status


def _answer(refusal: Refusal, fields: Fields | None = None, page_message: Any = None) -> Any:
    if wants_json(request):
        return error_response(refusal, fields)
    return render_template("error.html", status=refusal.status,
                           message=page_message or refusal.message), refusal.status


def _handle_besik(exc: BesikError) -> Any:
    body, status = _answer(refusal_of(exc), exc.fields)
    response = make_response(body, status)
    if isinstance(exc, TooManyAttemptsError | DatabaseUnavailableError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _handle_database_down(exc: Exception) -> Any:
    # The driver's message only: the statement and its parameters could carry a child's or
    # a mother's details.
    orig = getattr(exc, "orig", None) or exc
    log.warning("database unavailable: %s: %s", type(orig).__name__,
                str(orig).strip().splitlines()[0][:200] if str(orig).strip() else "")
    # Who is signed in, and their language, live in the database that just failed: loading
    # them again to word the answer would fail too (a bare 500). Answer as to someone not
    # known; the session itself is left as it is. (flask-login keeps the user in g.)
    g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    return _handle_besik(DatabaseUnavailableError())


def _handle_http(exc: HTTPException) -> Any:
    status = exc.code or 500
    refusal = HTTP_REFUSALS.get(status, Refusal(status, "error", exc.name))
    return _answer(refusal)


def _handle_csrf(_exc: CSRFError) -> Any:
    return _answer(CSRF_REFUSAL,
                   page_message=_l("This page expired. Go back, reload and try again."))


def init_errors(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(BesikError, _handle_besik)
    app.register_error_handler(CSRFError, _handle_csrf)
    app.register_error_handler(HTTPException, _handle_http)
    for error in DATABASE_DOWN:
        app.register_error_handler(error, _handle_database_down)
