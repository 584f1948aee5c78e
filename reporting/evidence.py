"""A report's evidence record: everything that happened to it, in order, with the audit entries
and their chain hashes, so that a court can check the record against a published digest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, AuditHead, PushAttempt, PushDelivery, Report, User


@dataclass(frozen=True)
class Event:
    """One line of the timeline: what happened (a code the page words), when, by whom."""

    at: datetime
    event: str
    actor: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """What the evidence page shows."""

    report: Report
    timeline: list[Event]
    deliveries: list[tuple[PushDelivery, list[PushAttempt]]]
    entries: list[AuditEntry]
    head_seq: int
    head_hash: str
    names: dict[int, str]


def subjects_of(report: Report) -> list[str]:
    """The audit subjects that are about this report: itself and its notices."""
    return [f"report:{report.id}", *(f"notice:{notice.id}" for notice in report.notices)]


def gather(session: Session, report: Report) -> Record:
    """The whole record of one report, read in one session."""
    notice_ids = [notice.id for notice in report.notices]
    entries = list(session.scalars(select(AuditEntry).where(
        AuditEntry.subject.in_(subjects_of(report))).order_by(AuditEntry.seq)))
    deliveries = list(session.scalars(select(PushDelivery).where(
        PushDelivery.notice_id.in_(notice_ids)).order_by(PushDelivery.id))) if notice_ids else []
    attempts: dict[int, list[PushAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.scalars(select(PushAttempt).where(
                PushAttempt.delivery_id.in_(list(attempts))).order_by(PushAttempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    user_ids = {e.actor_id for e in entries if e.actor_id is not None} | {
        d.user_id for d in deliveries}
    names = {row.id: row.name for row in session.execute(
        select(User.id, User.name).where(User.id.in_(user_ids)))} if user_ids else {}
    head = session.get(AuditHead, 1)
    return Record(report=report, timeline=timeline(report, entries),
                  deliveries=[(d, attempts[d.id]) for d in deliveries], entries=entries,
                  head_seq=head.seq if head else 0, head_hash=head.hash if head else "",
                  names=names)


def timeline(report: Report, entries: list[AuditEntry]) -> list[Event]:
    """Discovered, filed (the phone's clock) and received (the server's, with the gap), each
    notice sent, acknowledged and escalated, each action: oldest first."""
    events = [
        Event(report.discovered_at, "discovered", None, {}),
        Event(report.filed_at, "filed", report.reporter.name, {}),
        Event(report.received_at, "received", None, {
            "reference": report.reference,
            "gap_seconds": round((report.received_at - report.filed_at).total_seconds())}),
    ]
    for notice in report.notices:
        events.append(Event(notice.sent_at, "notice_sent", None, {
            "agency": notice.agency.name, "due_at": notice.ack_due_at}))
        if notice.acknowledged_at is not None:
            events.append(Event(
                notice.acknowledged_at, "acknowledged",
                notice.acknowledged_by.name if notice.acknowledged_by else None,
                {"agency": notice.agency.name, "channel": notice.ack_channel or ""}))
    agencies = {f"notice:{n.id}": n.agency.name for n in report.notices}
    for entry in entries:
        if entry.tag == "notice:escalated":
            events.append(Event(entry.at, "escalated", None, {
                "level": entry.data.get("level"), "agency": agencies.get(entry.subject or "")}))
    for action in report.actions:
        events.append(Event(action.created_at, "action", action.user.name,
                            {"action": action.action, "note": action.note or ""}))
    return sorted(events, key=lambda e: e.at)
