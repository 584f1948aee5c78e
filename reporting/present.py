"""How records look from outside: the API's JSON and the pages' view of a report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .deadlines import DeadlineState, deadline_state
from .evidence import Event, History, timeline
from .models import Deadline, Notice, Report, ReportAction, ReportAmendment, User
from .vocabulary import Language


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the API answers."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def me_json(user: User) -> dict[str, Any]:
    """The caller's own account (GET/PATCH /me): locale null until they choose one."""
    return {"email": user.email, "name": user.name, "role": str(user.role),
            "locale": user.locale if user.locale in Language.values() else None}


def notice_state(notice: Notice, now: datetime) -> str:
    """pending | acknowledged | overdue."""
    if notice.acknowledged_at is not None:
        return "acknowledged"
    return "overdue" if now > notice.ack_due_at else "pending"


def notice_json(notice: Notice, now: datetime) -> dict[str, Any]:
    """A notice as the API shows it."""
    agency = notice.agency
    return {
        "id": notice.id,
        "agency": {"code": agency.code, "name": agency.name, "kind": str(agency.kind)},
        "is_fallback": notice.is_fallback,
        "sent_at": iso(notice.sent_at),
        "ack_due_at": iso(notice.ack_due_at),
        "acknowledged_at": iso(notice.acknowledged_at),
        "acknowledged_by": ({"name": notice.acknowledged_by.name}
                            if notice.acknowledged_by else None),
        "state": notice_state(notice, now),
        "is_late": (notice.acknowledged_at or now) > notice.ack_due_at,
        "ack_channel": notice.ack_channel,
        "escalation_level": notice.escalation_level,
    }


def deadline_json(deadline: Deadline, now: datetime) -> dict[str, Any]:
    """A deadline with its state at `now`."""
    state: DeadlineState = deadline_state(deadline.due_at, deadline.met_at, now)
    return {"rule": deadline.rule, "notice_id": deadline.notice_id,
            "due_at": iso(deadline.due_at), "met_at": iso(deadline.met_at),
            "state": str(state), "basis": deadline.basis,
            "basis_verified": deadline.is_basis_verified}


def report_json(report: Report, now: datetime, history: History) -> dict[str, Any]:
    """Everything sent, plus what the server knows (CONTRACT §5); `history` from
    evidence.histories."""
    child = _compact({"sex": report.child_sex, "iin": report.child_iin,
                      "born_at": iso(report.child_born_at), "weight_g": report.child_weight_g,
                      "condition": report.child_condition})
    mother = _compact({"iin": report.mother_iin, "full_name": report.mother_full_name,
                       "birth_date": (report.mother_birth_date.isoformat()
                                      if report.mother_birth_date else None),
                       "citizenship": report.mother_citizenship, "phone": report.mother_phone,
                       "address": report.mother_address})
    return {
        "id": report.id,
        "reference": report.reference,
        "circumstance": report.circumstance,
        "discovered_at": iso(report.discovered_at),
        "filed_at": iso(report.filed_at),
        "received_at": iso(report.received_at),
        "reported_at": iso(report.reported_at),
        "child": child,
        "mother": mother,
        "risk_flags": list(report.risk_flags),
        "notes": report.notes,
        "facility": {"code": report.facility.code, "name": report.facility.name},
        "reporter": {"name": report.reporter.name},
        "state": str(report.state),
        "warnings": list(report.warnings),
        "notices": [notice_json(n, now) for n in report.notices],
        "deadlines": [deadline_json(d, now)
                      for d in sorted(report.deadlines, key=lambda d: (d.due_at, d.rule))],
        "clock_gap_seconds": round((report.received_at - report.filed_at).total_seconds()),
        "amendments": [amendment_json(a) for a in report.amendments],
        "timeline": [event_json(e) for e in timeline(report, history)],
    }


def amendment_json(amendment: ReportAmendment) -> dict[str, Any]:
    """A correction: who, when, why, and each field's value before and after."""
    return {"id": amendment.id, "at": iso(amendment.created_at),
            "by": {"name": amendment.author.name}, "reason": amendment.reason,
            "changes": amendment.changes}


def event_json(event: Event) -> dict[str, Any]:
    """One line of a report's timeline."""
    return {"at": iso(event.at), "event": event.event,
            "actor": {"name": event.actor} if event.actor is not None else None,
            "detail": {k: iso(v) if isinstance(v, datetime) else v
                       for k, v in event.data.items()}}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def action_json(action: ReportAction) -> dict[str, Any]:
    """A recorded action as the API shows it."""
    return {"id": action.id, "action": action.action, "note": action.note,
            "created_at": iso(action.created_at), "by": {"name": action.user.name}}
