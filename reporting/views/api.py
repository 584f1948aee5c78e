"""The JSON API (/api/v1). Errors always come back as JSON, never as a redirect."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import and_, exists, or_, select

from .. import alerts, audit, devices, push, references
from ..access import PUBLIC, SIGNED_IN, allow, token_authenticated, visible_reports
from ..config import Settings
from ..db import begin_write, get_session
from ..errors import MESSAGES, ApiError, json_error
from ..models import Notice, PushSubscription, Report, ReportState, Role, utcnow
from ..notices import (
    ACTIONS,
    AckTokenError,
    acknowledge,
    acknowledge_with_token,
    record_action,
)
from ..openapi import openapi_document
from ..present import iso, notice_json, report_json
from ..references import MAX_RESERVE
from ..reports import FilingError, clean_report
from ..schema import Choice, DateTimeField, IntField, Obj, Str
from . import file_and_commit, officers_report_and_notice

bp = Blueprint("api", __name__)

MAX_PAGE = 100
STATES = ("pending", "overdue", "acknowledged", "closed")


@bp.get("/csrf")
@allow(SIGNED_IN)
def csrf_token() -> Response:
    """A fresh CSRF token for fetch() calls made with the session cookie, and whose it is."""
    user = current_user
    return jsonify(csrf_token=generate_csrf(),
                   user={"id": user.id, "name": user.name, "role": str(user.role)})


@bp.get("/openapi.json")
@allow(PUBLIC)
def openapi() -> Response:
    """The OpenAPI 3.1 document, generated from the validating schemas."""
    return jsonify(openapi_document())


def json_body() -> Any:
    """The request's JSON: 415 when not JSON, 400 when malformed, 413 when too large."""
    if not request.is_json:
        abort(415)
    return request.get_json()


@bp.post("/reports")
@allow(Role.REPORTER)
def file() -> Any:
    """File a report; idempotent on its id."""
    data = json_body()
    now = utcnow()
    try:
        filed = file_and_commit(current_user, clean_report(data, now), now)
    except FilingError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.fields)
    return jsonify(report_json(filed.report, now)), 201 if filed.is_new else 200


@bp.get("/reports")
@allow(SIGNED_IN)
def list_reports() -> Any:
    """Reports in the caller's scope, newest first, with cursor pagination."""
    now = utcnow()
    try:
        limit = min(max(int(request.args.get("limit", "50")), 1), MAX_PAGE)
    except ValueError:
        return json_error(422, "validation_failed", MESSAGES[422],
                          {"limit": _l("Must be a whole number.")})
    query = visible_reports(current_user)
    state = request.args.get("state")
    if state is not None:
        if state not in STATES:
            return json_error(422, "validation_failed", MESSAGES[422], {
                "state": _l("Must be one of: %(choices)s.", choices=", ".join(STATES))})
        query = query.where(_state_filter(state, now))
    cursor = request.args.get("cursor")
    if cursor:
        try:
            received_at, report_id = _decode_cursor(cursor)
        except ValueError:
            return json_error(422, "validation_failed", MESSAGES[422],
                              {"cursor": _l("Not in the expected format.")})
        query = query.where(or_(Report.received_at < received_at,
                                and_(Report.received_at == received_at,
                                     Report.id < report_id)))
    rows = get_session().scalars(
        query.order_by(Report.received_at.desc(), Report.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return jsonify(items=[report_json(r, now) for r in page], next_cursor=next_cursor)


def _state_filter(state: str, now: datetime) -> Any:
    if state in ("acknowledged", "closed"):
        return Report.state == ReportState(state)
    late = exists().where(Notice.report_id == Report.id, Notice.acknowledged_at.is_(None),
                          Notice.ack_due_at < now)
    return and_(Report.state == ReportState.OPEN, late if state == "overdue" else ~late)


def _encode_cursor(report: Report) -> str:
    raw = f"{report.received_at.isoformat()}|{report.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("bad cursor") from exc
    moment, _, report_id = raw.partition("|")
    parsed = datetime.fromisoformat(moment)
    if parsed.tzinfo is None or not report_id:
        raise ValueError("bad cursor")
    return parsed, report_id


@bp.get("/reports/<report_id>")
@allow(SIGNED_IN)
def show_report(report_id: str) -> Any:
    """One report in the caller's scope; outside it, 404 (no existence leak)."""
    session = get_session()
    report = session.scalars(visible_reports(current_user)
                             .where(Report.id == report_id)).first()
    if report is None:
        abort(404)
    return jsonify(report_json(report, utcnow()))


@bp.get("/audit/verify")
@allow(Role.ADMIN)
def verify_audit() -> Any:
    """Recompute the audit hash chain."""
    result = audit.verify(get_session())
    body: dict[str, Any] = {"ok": result.is_ok, "entries": result.entries, "head": result.head}
    if not result.is_ok:
        body |= {"bad_entry": result.bad_seq, "reason": result.reason}
    return jsonify(body)




RESERVE_SCHEMA = Obj({"count": IntField(minimum=1, maximum=MAX_RESERVE, required=True)})
HEARTBEAT_SCHEMA = Obj({
    "device_id": Str(max_length=64, pattern=r"[A-Za-z0-9._-]{8,64}", required=True),
    "outbox_depth": IntField(minimum=0, maximum=100_000, required=True),
    "oldest_unsent_at": DateTimeField(),
})


def validated(schema: Obj) -> dict[str, Any]:
    """The request body cleaned by `schema`, or a 422 naming the fields."""
    cleaned, errors = schema.validate(json_body())
    if errors:
        raise ApiError(422, "validation_failed", MESSAGES[422], errors)
    return cleaned


@bp.post("/references/reserve")
@allow(Role.REPORTER)
def reserve_references() -> Any:
    """References held by a phone for reports filed offline."""
    count = validated(RESERVE_SCHEMA)["count"]
    session, now = get_session(), utcnow()
    facility = current_user.facility
    if facility is None:
        abort(403)
    begin_write(session)
    rows = references.reserve(session, current_user, facility, count, now)
    session.commit()
    return jsonify(references=[r.reference for r in rows], facility=facility.code,
                   expires_at=iso(rows[0].expires_at)), 201


@bp.post("/devices/heartbeat")
@allow(Role.REPORTER)
def heartbeat() -> Any:
    """A phone says how many reports it holds unsent, and since when."""
    data = validated(HEARTBEAT_SCHEMA)
    session = get_session()
    begin_write(session)
    devices.heartbeat(session, current_user, data["device_id"], data["outbox_depth"],
                      data.get("oldest_unsent_at"), utcnow())
    session.commit()
    return "", 204


# --- push subscriptions ------------------------------------------------------------------

SUBSCRIPTION_SCHEMA = Obj({
    "endpoint": Str(max_length=1000, required=True),
    "expirationTime": IntField(minimum=0, maximum=2**53),
    "keys": Obj({"p256dh": Str(max_length=200, pattern=r"[A-Za-z0-9_=-]{40,200}",
                               required=True),
                 "auth": Str(max_length=100, pattern=r"[A-Za-z0-9_=-]{8,100}",
                             required=True)}, required=True),
})
ENDPOINT_SCHEMA = Obj({"endpoint": Str(max_length=1000, required=True)})


def _settings() -> Settings:
    settings: Settings = current_app.config["BESIK"]
    return settings


@bp.get("/push/vapid-public-key")
@allow(SIGNED_IN)
def vapid_public_key() -> Any:
    """The application server key to subscribe with."""
    try:
        key = push.public_key_b64(str(_settings().vapid_private_key_file))
    except FileNotFoundError:
        raise ApiError(503, "push_unavailable",
                       _l("Notifications are not set up on this server yet.")) from None
    return jsonify(publicKey=key)


@bp.get("/push/subscriptions")
@allow(SIGNED_IN)
def list_subscriptions() -> Any:
    """The caller's devices and when each last received a message."""
    rows = get_session().scalars(select(PushSubscription).where(
        PushSubscription.user_id == current_user.id).order_by(PushSubscription.id)).all()
    return jsonify(items=[{"id": s.id, "endpoint_host": push.endpoint_host(s.endpoint),
                           "user_agent": s.user_agent, "created_at": iso(s.created_at),
                           "last_success_at": iso(s.last_success_at),
                           "last_failure_at": iso(s.last_failure_at)} for s in rows])


@bp.post("/push/subscriptions")
@allow(SIGNED_IN)
def subscribe() -> Any:
    """Register a browser's PushSubscription; only allow-listed push services (no SSRF)."""
    data = validated(SUBSCRIPTION_SCHEMA)
    if not push.is_allowed(data["endpoint"], _settings().push_allowed_hosts):
        raise ApiError(422, "validation_failed", MESSAGES[422], {
            "endpoint": _l("This push service is not allowed.")})
    session, now = get_session(), utcnow()
    begin_write(session)
    row = devices.subscribe(session, current_user, data["endpoint"], data["keys"]["p256dh"],
                            data["keys"]["auth"], request.headers.get("User-Agent"), now)
    session.commit()
    return jsonify(id=row.id), 201


@bp.delete("/push/subscriptions")
@allow(SIGNED_IN)
def unsubscribe() -> Any:
    """Forget one of the caller's devices; someone else's answers 404."""
    endpoint = validated(ENDPOINT_SCHEMA)["endpoint"]
    session = get_session()
    begin_write(session)
    if not devices.unsubscribe(session, current_user, endpoint, utcnow()):
        abort(404)
    session.commit()
    return "", 204


@bp.post("/push/test")
@allow(SIGNED_IN)
def test_push() -> Any:
    """Send the caller a test message on every device."""
    session = get_session()
    begin_write(session)
    queued = alerts.queue_for_users(session, [current_user], None, "test", utcnow())
    session.commit()
    return jsonify(queued=len(queued)), 202


# --- acknowledgement and actions ---------------------------------------------------------

NOTE_SCHEMA = Obj({"note": Str(max_length=2000)})
ACTION_SCHEMA = Obj({"action": Choice(ACTIONS, required=True), "note": Str(max_length=2000)})
TOKEN_SCHEMA = Obj({"token": Str(max_length=100, required=True)})


@bp.post("/reports/<report_id>/acknowledge")
@allow(Role.OFFICER)
def acknowledge_report(report_id: str) -> Any:
    """Acknowledge the agency's notice; a repeat returns the first acknowledgement."""
    note = validated(NOTE_SCHEMA).get("note") if request.content_length else None
    _, notice = officers_report_and_notice(report_id)
    session, now = get_session(), utcnow()
    begin_write(session)
    acknowledge(session, notice, current_user, channel="api", now=now, note=note)
    session.commit()
    return jsonify(notice_json(notice, now))


@bp.post("/reports/<report_id>/actions")
@allow(Role.OFFICER)
def record_report_action(report_id: str) -> Any:
    """Record what the officer did; it meets the matching deadline."""
    data = validated(ACTION_SCHEMA)
    report, notice = officers_report_and_notice(report_id)
    session, now = get_session(), utcnow()
    begin_write(session)
    row = record_action(session, report, notice, current_user, data["action"],
                        data.get("note"), now)
    session.commit()
    return jsonify(id=row.id, action=row.action, note=row.note,
                   created_at=iso(row.created_at), by={"name": current_user.name}), 201


@bp.post("/notices/<notice_id>/ack")
@allow(PUBLIC)
@token_authenticated
def acknowledge_with_ack_token(notice_id: str) -> Any:
    """Acknowledge with the single-use token from a push message (no session needed)."""
    token = validated(TOKEN_SCHEMA)["token"]
    session, now = get_session(), utcnow()
    begin_write(session)
    try:
        notice = acknowledge_with_token(session, notice_id, token, channel="notification",
                                        now=now)
    except AckTokenError:
        session.rollback()
        raise ApiError(403, "forbidden", _l("This acknowledgement link is used, expired or "
                                            "not valid.")) from None
    session.commit()
    return jsonify(notice_json(notice, now))
