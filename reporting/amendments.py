"""Correcting a report: an amendment keeps who, when, why and each field's value before and
after, and the report holds the corrected values. A report is never deleted, and never
changed without one (PRODUCT §3). The first risk flag routes the report to the police then."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from . import alerts, audit
from .bodies import AMENDMENT
from .errors import AmendmentInvalidError
from .models import AgencyKind, Notice, Report, ReportAmendment, Role, User
from .policy import current_rules, load_calendar
from .present import iso
from .reports import soft_warnings, start_report_deadlines
from .routing import notice_audit_entries, open_notices, routes_for
from .vocabulary import DeliveryKind

Changes = dict[str, dict[str, Any]]  # "child.iin" -> {"from": ..., "to": ...}
# Who may correct a report in their scope: its facility's reporters, and admins.
AMENDING_ROLES = (Role.REPORTER, Role.ADMIN)


def clean_amendment(data: Any) -> dict[str, Any]:
    """Validate an amendment body (AmendmentInvalidError names each bad field)."""
    cleaned, errors = AMENDMENT.validate(data)
    if "changes" in cleaned and not flatten(cleaned["changes"]):
        errors["changes"] = _l("Nothing to correct: change at least one field.")
    if cleaned.get("reason") == "":  # only spaces: the record would say nothing
        errors["reason"] = _l("This field is required.")
    if errors:
        raise AmendmentInvalidError(errors)
    return cleaned


def flatten(changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested fields by dotted path: {"child": {"iin": x}} -> {"child.iin": x}."""
    flat: dict[str, Any] = {}
    for name, value in changes.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{name}.")
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def column_of(path: str) -> str:
    """The Report attribute a report field is stored in ("child.iin" -> "child_iin")."""
    return path.replace(".", "_")


def as_json(value: Any) -> Any:
    """A stored or cleaned value as the API shows it."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def _normal(old: Any, new: Any) -> Any:
    if isinstance(old, list):  # risk flags: cleared is empty, never null
        return [str(v) for v in new or []]
    return None if new == "" else new


def _is_same(old: Any, new: Any) -> bool:
    if isinstance(old, list):  # the order of risk flags means nothing
        return sorted(map(str, old)) == sorted(new)
    return bool(old == new)


def differences(report: Report, changes: dict[str, Any]) -> Changes:
    """Each field whose value the changes would alter: its value before and after."""
    found: Changes = {}
    for path, value in flatten(changes).items():
        old = getattr(report, column_of(path))
        new = _normal(old, value)
        if not _is_same(old, new):
            found[path] = {"from": as_json(old), "to": as_json(new)}
    return found


def amend_report(session: Session, report_id: str, author: User, changes: dict[str, Any],
                 reason: str, now: datetime) -> ReportAmendment:
    """Correct a report, keeping each field's value before and after; routes it to the police
    when it now needs them. Loads the report inside the caller's write transaction (locked,
    so two corrections cannot both start from the same values); flushes and audits, never
    commits."""
    report = session.get_one(Report, report_id, with_for_update=True)
    found = differences(report, changes)
    if not found:
        raise AmendmentInvalidError({"changes": _l("Nothing would change: these are the "
                                                   "values the report already has.")})
    for path, value in flatten(changes).items():
        if path in found:
            setattr(report, column_of(path), _normal(getattr(report, column_of(path)), value))
    report.warnings = soft_warnings(_facts(report))
    # content_hash stays the filed request's: the phone that filed it may still resend that
    # very request (its answer lost), and must get 200 and this report, not a conflict.
    amendment = ReportAmendment(report=report, report_id=report.id, author_id=author.id,
                                created_at=now, changes=found, reason=reason)
    session.add(amendment)
    notices = _route_to_police_if_needed(session, report, now)
    session.flush()
    audit.record_all(session, [*notice_audit_entries(notices), audit.Entry(
        "report:amended", actor_id=author.id, subject=f"report:{report.id}",
        data={"amendment": amendment.id, "reason": reason, "changes": found,
              "police_notified": [n.agency.code for n in notices]})], now=now)
    return amendment


def _facts(report: Report) -> dict[str, Any]:
    """The report's identifying facts in the shape soft_warnings reads (absent ones left out)."""
    child = {"sex": report.child_sex, "iin": report.child_iin, "born_at": report.child_born_at}
    mother = {"iin": report.mother_iin, "birth_date": report.mother_birth_date}
    return {"child": {k: v for k, v in child.items() if v is not None},
            "mother": {k: v for k, v in mother.items() if v is not None}}


def _route_to_police_if_needed(session: Session, report: Report, now: datetime
                               ) -> list[Notice]:
    """A report that has risk flags but was never routed to the police is, now: the notice,
    its deadlines and its alerts exactly as at filing, and inform_police met. Returns the
    notices opened (none when the police already know, or no police agency serves here)."""
    if not report.risk_flags:
        return []
    # Everything read first: the new rows below are not in the session until added.
    known = [n for n in report.notices if n.agency.kind is AgencyKind.POLICE]
    started = {d.rule for d in report.deadlines if d.notice_id is None}
    _, rules = current_rules(session)  # the policy in force applies to what starts now
    calendar = load_calendar(session)
    routes = []
    if not known:
        district = report.facility.district
        routes = [(agency, is_fallback) for agency, is_fallback in routes_for(
            session, district.id, district.region_id, has_risk=True)
            if agency.kind is AgencyKind.POLICE]
    devices = alerts.officer_devices(session, (agency.id for agency, _ in routes))
    opened = open_notices(report, routes, rules, calendar, now)
    notified_at = min((n.sent_at for n in known + opened), default=None)
    risk_rules = {name: rule for name, rule in rules.items() if rule.needs_risk_flag}
    start_report_deadlines(report, {name: rule for name, rule in risk_rules.items()
                                    if name not in started}, calendar,
                           guardianship_notified_at=None, police_notified_at=notified_at)
    if opened:  # an inform_police left unmet at filing (no police agency then) is met now
        for deadline in report.deadlines:
            if deadline.rule in risk_rules and deadline.notice_id is None \
                    and deadline.met_at is None:
                deadline.met_at = now
    session.add_all([*opened, *(d for d in report.deadlines if d not in session)])
    for notice in opened:
        alerts.queue(session, devices[notice.agency_id], notice, DeliveryKind.NOTICE, now)
    return opened
