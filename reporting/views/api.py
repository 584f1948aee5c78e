"""The JSON API (/api/v1). Errors always come back as JSON, never as a redirect."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy import and_, exists, select

from .. import (
    accounts,
    alerts,
    audit,
    clock,
    compliance,
    coverage,
    digests,
    exports,
    heartbeats,
    listing,
    push,
    references,
    subscriptions,
    viewing,
    xlsx,
)
from ..access import (
    PUBLIC,
    SIGNED_IN,
    allow,
    token_authenticated,
    visible_audit,
)
from ..acknowledgements import acknowledge, acknowledge_with_token
from ..actions import record_action
from ..amendments import AMENDING_ROLES, amend_report, clean_amendment
from ..auth import viewing_session
from ..bodies import (
    ACK_TOKEN,
    ACTION,
    AMENDMENT,
    AUDIT_QUERY,
    COMPLIANCE_QUERY,
    DIGEST_QUERY,
    ENDPOINT,
    EXPORT_QUERY,
    HEARTBEAT,
    ME,
    NOTE,
    REPORT,
    REPORT_LIST_QUERY,
    RESERVE,
    SUBSCRIPTION,
)
from ..config import Settings
from ..db import reading, writing
from ..deadlines import to_local
from ..errors import (
    DigestKeyMissingError,
    NoFacilityError,
    NotFoundError,
    PushUnavailableError,
    ValidationError,
)
from ..evidence import History
from ..models import Notice, PushSubscription, Report, ReportState, Role
from ..openapi import openapi_document, operation
from ..present import action_json, amendment_json, iso, me_json, notice_json, report_json
from ..reports import clean_report
from ..vocabulary import AckChannel, DeliveryKind, ReportFilter
from . import (
    compliance_scope,
    file_and_commit,
    json_body,
    officers_report_and_notice,
    report_in_scope,
    reports_as_json,
    streamed_export,
    validated,
    validated_query,
)

bp = Blueprint("api", __name__)

DEFAULT_PAGE = 50


@bp.get("/csrf")
@allow(SIGNED_IN)
@operation("A fresh CSRF token for cookie callers, and whose session it is", returns="CsrfOut")
def csrf_token() -> Response:
    """A fresh CSRF token for fetch() calls made with the session cookie, and whose it is."""
    user = current_user
    return jsonify(csrf_token=generate_csrf(),
                   user={"id": user.id, "name": user.name, "role": str(user.role)})


@bp.get("/me")
@allow(SIGNED_IN)
@operation("The caller's account and own language", returns="MeOut")
def me() -> Response:
    """Who the caller is, and their own language (null until they choose one)."""
    return jsonify(me_json(current_user))


@bp.patch("/me")
@allow(SIGNED_IN)
@operation("Choose the caller's own language (pages, pushes, exports)", body=ME,
           returns="MeOut")
def update_me() -> Response:
    """Save the caller's language; audited when it changes."""
    locale = validated(ME)["locale"]
    with writing() as session:
        user = accounts.set_locale(session, current_user.id, locale.value, now=clock.now())
        return jsonify(me_json(user))


@bp.get("/openapi.json")
@allow(PUBLIC)
@operation("This document", returns="OpenAPI")
def openapi() -> Response:
    """The OpenAPI 3.1 document, generated from the validating schemas."""
    return jsonify(openapi_document(current_app))


@bp.post("/reports")
@allow(Role.REPORTER)
@operation("File a report (idempotent on its id)", body=REPORT, status=201,
           returns="ReportOut", errors=(409,))
def file() -> Any:
    """File a report; idempotent on its id."""
    now = clock.now()
    filed = file_and_commit(current_user, clean_report(json_body(), now), now)
    if not filed.is_new:
        (body,) = reports_as_json([filed.report], now)
        return jsonify(body), 200
    # Answered from what was just written, all still in memory, without reading it back: at
    # its commit a new report has no history yet (its notices were neither escalated nor
    # delivered), and reading afresh would reload every object filing used (six statements).
    return jsonify(report_json(filed.report, now, History())), 201


@bp.get("/reports")
@allow(SIGNED_IN)
@operation("Reports in the caller's scope, newest first", query=REPORT_LIST_QUERY,
           returns="ReportPage")
def list_reports() -> Any:
    """Reports in the caller's scope, newest first, with cursor pagination."""
    now = clock.now()
    query_args = validated_query(REPORT_LIST_QUERY)
    limit = query_args.get("limit", DEFAULT_PAGE)
    conditions = [_state_filter(query_args["state"], now)] if "state" in query_args else []
    after = _decode_cursor(query_args["cursor"]) if "cursor" in query_args else None
    viewer = viewing_session()
    with reading() as session:
        query = listing.newest_first(session, current_user, conditions, after, limit)
        page = listing.list_page(
            session, query, limit, viewer, now, reports_as_json, current_app.json.dumps,
            listing.rendered_reports(current_app))
    next_cursor = _encode_cursor(*page.more_after) if page.more_after else None
    # The bodies come written (kept from earlier polls): the page is put around them.
    body = Response(f'{{"items":[{",".join(page.items)}],'
                    f'"next_cursor":{current_app.json.dumps(next_cursor)}}}\n',
                    mimetype=current_app.json.mimetype)  # type: ignore[attr-defined]
    # Once per report per session: a poll that shows nothing new writes nothing.
    new = [report_id for report_id in page.ids if report_id not in page.seen]
    if new:
        with writing() as session:
            viewing.record_listed(session, current_user.id, viewer, new, now)
    return body


def _state_filter(state: ReportFilter, now: datetime) -> Any:
    if state in (ReportFilter.ACKNOWLEDGED, ReportFilter.CLOSED):
        return Report.state == ReportState(state.value)
    late = exists().where(Notice.report_id == Report.id, Notice.acknowledged_at.is_(None),
                          Notice.ack_due_at < now)
    return and_(Report.state == ReportState.OPEN,
                late if state is ReportFilter.OVERDUE else ~late)


def _encode_cursor(received_at: datetime, report_id: str) -> str:
    raw = f"{received_at.isoformat()}|{report_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    bad = ValidationError({"cursor": _l("Not in the expected format.")})
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, report_id = raw.partition("|")
        parsed = datetime.fromisoformat(moment)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if parsed.tzinfo is None or not report_id:
        raise bad
    return parsed, report_id


@bp.get("/reports/<report_id>")
@allow(SIGNED_IN)
@operation("One report in the caller's scope", returns="ReportOut")
def show_report(report_id: str) -> Any:
    """One report in the caller's scope; outside it, 404 (no existence leak). Audited."""
    now = clock.now()
    (report,) = reports_as_json([report_in_scope(report_id)], now)
    body = jsonify(report)
    with writing() as session:
        viewing.record_view(session, current_user.id, report_id, "api", now)
    return body


@bp.get("/audit/verify")
@allow(Role.ADMIN)
@operation("Walk the audit hash chain", returns="AuditVerification")
def verify_audit() -> Any:
    """Recompute the audit hash chain."""
    with reading() as session:
        result = audit.verify(session)
    body: dict[str, Any] = {"ok": result.is_ok, "entries": result.entries, "head": result.head}
    if not result.is_ok:
        body |= {"bad_entry": result.bad_seq, "reason": result.reason}
    return jsonify(body)


@bp.get("/compliance")
@allow(Role.ADMIN)
@operation("Compliance figures per facility and agency, and what is overdue now",
           query=COMPLIANCE_QUERY, returns="Compliance", errors=(404,))
def compliance_figures() -> Any:
    """The dashboard's figures, in the admin's scope (CONTRACT §5)."""
    now = clock.now()
    scope = compliance_scope(validated_query(COMPLIANCE_QUERY), now)
    with reading() as session:
        figures = compliance.figures(session, scope, now)
    return jsonify(figures | {"overdue": [item | {"due_at": iso(item["due_at"])}
                                          for item in figures["overdue"]]})


@bp.get("/coverage")
@allow(Role.ADMIN)
@operation("Every gap through which a report could fall, in the admin's scope",
           returns="Coverage")
def coverage_gaps() -> Any:
    """Districts nobody would hear, facilities routed nowhere or to a fallback, silent
    devices, phones holding reports unsent."""
    with reading() as session:
        found = coverage.gaps(session, current_user.region_id, clock.now())
    return jsonify(gaps=[gap.as_json() for gap in found])


@bp.get("/export")
@allow(Role.ADMIN)
@operation("The compliance log (one row per report) as CSV or XLSX, streamed",
           query=EXPORT_QUERY, files=(exports.CSV_MIME, xlsx.MIME), errors=(404,))
def export_log() -> Any:
    """The compliance log within the admin's scope; the export is audited."""
    return streamed_export(validated_query(EXPORT_QUERY))


@bp.get("/audit")
@allow(Role.ADMIN)
@operation("Audit entries, newest first", query=AUDIT_QUERY, returns="AuditPage")
def list_audit() -> Any:
    """The audit log, filtered by Almaty days and event, with cursor pagination."""
    args = validated_query(AUDIT_QUERY)
    limit = args.get("limit", 100)
    with reading() as session:
        entries, next_cursor = audit.page(
            session, first_day=args.get("from"), last_day=args.get("to"),
            event=args.get("event"), before_seq=args.get("cursor"), limit=limit,
            scope=visible_audit(current_user))
        names = audit.actor_names(session, entries)
    return jsonify(items=[{"seq": e.seq, "at": iso(e.at), "event": e.tag,
                           "actor": ({"id": e.actor_id, "name": names.get(e.actor_id, "")}
                                     if e.actor_id is not None else None),
                           "subject": e.subject, "hash": e.hash} for e in entries],
                   next_cursor=next_cursor)


@bp.get("/audit/digest")
@allow(Role.ADMIN)
@operation("The signed head of the audit chain at the end of a day", query=DIGEST_QUERY,
           returns="AuditDigest", errors=(503,))
def audit_digest() -> Any:
    """As `flask audit-digest`: the chain's head at the end of an Almaty day, signed."""
    day = validated_query(DIGEST_QUERY).get("date") or to_local(clock.now()).date()
    try:
        key = digests.load_key(_settings().audit_key_file)
    except digests.DigestError:
        raise DigestKeyMissingError() from None
    with reading() as session:
        digest = digests.digest_of(session, key, day)
    return jsonify(date=digest.day.isoformat(), entries=digest.entries, head=digest.head,
                   hmac=digest.hmac)


@bp.post("/references/reserve")
@allow(Role.REPORTER)
@operation("Reserve references for reports filed offline", body=RESERVE, status=201,
           returns="ReservedReferences")
def reserve_references() -> Any:
    """References held by a phone for reports filed offline."""
    count = validated(RESERVE)["count"]
    facility = current_user.facility
    if facility is None:
        raise NoFacilityError()
    with writing() as session:
        rows = references.reserve(session, current_user, facility, count, clock.now())
    return jsonify(references=[r.reference for r in rows], facility=facility.code,
                   expires_at=iso(rows[0].expires_at)), 201


@bp.post("/devices/heartbeat")
@allow(Role.REPORTER)
@operation("A phone's outbox depth", body=HEARTBEAT, status=204)
def heartbeat() -> Any:
    """A phone says how many reports it holds unsent, and since when."""
    data = validated(HEARTBEAT)
    with writing() as session:
        heartbeats.heartbeat(session, current_user, data["device_id"], data["outbox_depth"],
                             data.get("oldest_unsent_at"), clock.now())
    return "", 204


# --- push subscriptions ------------------------------------------------------------------


def _settings() -> Settings:
    settings: Settings = current_app.config["BESIK"]
    return settings


@bp.get("/push/vapid-public-key")
@allow(SIGNED_IN)
@operation("The VAPID key to subscribe with", returns="VapidPublicKey", errors=(503,))
def vapid_public_key() -> Any:
    """The application server key to subscribe with."""
    try:
        key = push.public_key_b64(str(_settings().vapid_private_key_file))
    except FileNotFoundError:
        raise PushUnavailableError() from None
    return jsonify(publicKey=key)


@bp.get("/push/subscriptions")
@allow(SIGNED_IN)
@operation("The caller's devices", returns="Subscriptions")
def list_subscriptions() -> Any:
    """The caller's devices and when each last received a message."""
    with reading() as session:
        rows = session.scalars(select(PushSubscription).where(
            PushSubscription.user_id == current_user.id).order_by(PushSubscription.id)).all()
    return jsonify(items=[{"id": s.id, "endpoint_host": push.endpoint_host(s.endpoint),
                           "user_agent": s.user_agent, "created_at": iso(s.created_at),
                           "last_success_at": iso(s.last_success_at),
                           "last_failure_at": iso(s.last_failure_at)} for s in rows])


@bp.post("/push/subscriptions")
@allow(SIGNED_IN)
@operation("Register a browser's push subscription", body=SUBSCRIPTION, status=201,
           returns="SubscriptionCreated", errors=(409,))
def subscribe() -> Any:
    """Register a browser's PushSubscription; only allow-listed push services (no SSRF)."""
    data = validated(SUBSCRIPTION)
    if not push.is_allowed(data["endpoint"], _settings().push_allowed_hosts):
        raise ValidationError({"endpoint": _l("This push service is not allowed.")})
    with writing() as session:
        row = subscriptions.subscribe(session, current_user, data["endpoint"],
                                      data["keys"]["p256dh"], data["keys"]["auth"],
                                      request.headers.get("User-Agent"), clock.now())
        return jsonify(id=row.id), 201


@bp.delete("/push/subscriptions")
@allow(SIGNED_IN)
@operation("Forget one of the caller's devices", body=ENDPOINT, status=204, errors=(404,))
def unsubscribe() -> Any:
    """Forget one of the caller's devices; someone else's answers 404."""
    endpoint = validated(ENDPOINT)["endpoint"]
    with writing() as session:
        if not subscriptions.unsubscribe(session, current_user, endpoint, clock.now()):
            raise NotFoundError()
    return "", 204


@bp.post("/push/test")
@allow(SIGNED_IN)
@operation("Send the caller a test message on every device", status=202, returns="Queued")
def test_push() -> Any:
    """Send the caller a test message on every device."""
    with writing() as session:
        queued = alerts.queue_for_users(session, [current_user], None, DeliveryKind.TEST,
                                        clock.now())
    return jsonify(queued=len(queued)), 202


# --- acknowledgement and actions ---------------------------------------------------------


@bp.post("/reports/<report_id>/acknowledge")
@allow(Role.OFFICER)
@operation("Acknowledge the agency's notice", body=NOTE, is_body_optional=True,
           returns="NoticeOut")
def acknowledge_report(report_id: str) -> Any:
    """Acknowledge the agency's notice; a repeat returns the first acknowledgement."""
    note = validated(NOTE).get("note") if request.content_length else None
    _, notice = officers_report_and_notice(report_id)
    now = clock.now()
    with writing() as session:
        acknowledged = acknowledge(session, notice.id, current_user, channel=AckChannel.API,
                                   now=now, note=note)
        return jsonify(notice_json(acknowledged, now))


@bp.post("/reports/<report_id>/actions")
@allow(Role.OFFICER)
@operation("Record what the officer did", body=ACTION, status=201, returns="ActionOut",
           errors=(409,))
def record_report_action(report_id: str) -> Any:
    """Record what the officer did; it meets the matching deadline."""
    data = validated(ACTION)
    _, notice = officers_report_and_notice(report_id)
    with writing() as session:
        row = record_action(session, notice.id, current_user, data["action"],
                            data.get("note"), clock.now())
        return jsonify(action_json(row)), 201


@bp.post("/reports/<report_id>/amendments")
@allow(*AMENDING_ROLES)
@operation("Correct a report; each field's value before and after is kept", body=AMENDMENT,
           status=201, returns="AmendmentOut")
def amend(report_id: str) -> Any:
    """Correct a report of the caller's facility (an admin: in their scope); adding the first
    risk flag routes it to the police."""
    report = report_in_scope(report_id)
    data = clean_amendment(json_body())
    with writing() as session:
        amendment = amend_report(session, report.id, current_user, data["changes"],
                                 data["reason"], clock.now())
        return jsonify(amendment_json(amendment)), 201


@bp.post("/notices/<notice_id>/ack")
@allow(PUBLIC)
@operation("Acknowledge with a push message's single-use token", body=ACK_TOKEN,
           returns="NoticeOut", errors=(403,))
@token_authenticated
def acknowledge_with_ack_token(notice_id: str) -> Any:
    """Acknowledge with the single-use token from a push message (no session needed)."""
    token = validated(ACK_TOKEN)["token"]
    now = clock.now()
    with writing() as session:
        notice = acknowledge_with_token(session, notice_id, token,
                                        channel=AckChannel.NOTIFICATION, now=now)
        return jsonify(notice_json(notice, now))
