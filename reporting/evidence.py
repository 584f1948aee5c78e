"""A report's evidence record: everything that happened to it, in order, with the audit entries
and their chain hashes, so that a court can check the record against a published digest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import AuditEntry, AuditHead, PushAttempt, PushDelivery, Report, User
from .vocabulary import DeliveryStatus


@dataclass(frozen=True)
class Event:
    """One line of the timeline: what happened (a code the page words), when, by whom."""

    at: datetime
    event: str
    actor: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Escalation:
    notice_id: str
    at: datetime
    level: int


@dataclass(frozen=True)
class History:
    """What a report's timeline needs beyond the report's own rows: its notices' escalations
    (the audit log holds when) and each notice's first successful push."""

    escalations: tuple[Escalation, ...] = ()
    delivered_at: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """What the evidence page shows."""

    report: Report
    history: History
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
    history = histories(session, [report])[report.id]
    return Record(report=report, history=history, timeline=timeline(report, history),
                  deliveries=[(d, attempts[d.id]) for d in deliveries], entries=entries,
                  head_seq=head.seq if head else 0, head_hash=head.hash if head else "",
                  names=names)


def histories(session: Session, reports: Iterable[Report]) -> dict[str, History]:
    """Each report's History by report id, read in two statements whatever the count (a list
    of reports shows every timeline)."""
    reports = list(reports)
    report_of = {notice.id: report.id for report in reports for notice in report.notices}
    escalations: dict[str, list[Escalation]] = {report.id: [] for report in reports}
    delivered: dict[str, dict[str, datetime]] = {report.id: {} for report in reports}
    if report_of:
        for subject, at, data in session.execute(
                select(AuditEntry.subject, AuditEntry.at, AuditEntry.data)
                .where(AuditEntry.tag == "notice:escalated",
                       AuditEntry.subject.in_([f"notice:{n}" for n in report_of]))
                .order_by(AuditEntry.seq)):
            notice_id = str(subject).removeprefix("notice:")
            escalations[report_of[notice_id]].append(
                Escalation(notice_id, at, int(data.get("level") or 0)))
        for delivered_notice, first_at in session.execute(
                select(PushDelivery.notice_id, func.min(PushDelivery.sent_at))
                .where(PushDelivery.notice_id.in_(list(report_of)),
                       PushDelivery.status == DeliveryStatus.SENT.value)
                .group_by(PushDelivery.notice_id)):
            if delivered_notice is not None and first_at is not None:
                delivered[report_of[delivered_notice]][delivered_notice] = first_at
    return {report.id: History(tuple(escalations[report.id]), delivered[report.id])
            for report in reports}


def timeline(report: Report, history: History) -> list[Event]:
    """Discovered, filed (the phone's clock, with the server's and the gap) and received
    (the server's), each notice sent, first delivered to a device of its agency,
    acknowledged and escalated, each action and each amendment: oldest first (events at the
    same moment in the order they happen)."""
    gap_seconds = round((report.received_at - report.filed_at).total_seconds())
    events = [
        Event(report.discovered_at, "discovered", None, {}),
        Event(report.filed_at, "filed", report.reporter.name, {
            "filed_at": report.filed_at, "received_at": report.received_at,
            "gap_seconds": gap_seconds}),
        Event(report.received_at, "received", None, {
            "reference": report.reference, "gap_seconds": gap_seconds}),
    ]
    agencies = {notice.id: notice.agency.name for notice in report.notices}
    for notice in report.notices:
        events.append(Event(notice.sent_at, "notice_sent", None, {
            "agency": notice.agency.name, "due_at": notice.ack_due_at}))
        delivered_at = history.delivered_at.get(notice.id)
        if delivered_at is not None:
            events.append(Event(delivered_at, "delivered", None,
                                {"agency": notice.agency.name}))
        if notice.acknowledged_at is not None:
            events.append(Event(
                notice.acknowledged_at, "acknowledged",
                notice.acknowledged_by.name if notice.acknowledged_by else None,
                {"agency": notice.agency.name, "channel": notice.ack_channel or ""}))
    for escalation in history.escalations:
        events.append(Event(escalation.at, "escalated", None, {
            "level": escalation.level, "agency": agencies.get(escalation.notice_id)}))
    for action in report.actions:
        events.append(Event(action.created_at, "action", action.user.name,
                            {"action": action.action, "note": action.note or ""}))
    for amendment in report.amendments:
        events.append(Event(amendment.created_at, "amended", amendment.author.name,
                            {"reason": amendment.reason or "", "changes": amendment.changes}))
    return sorted(events, key=lambda e: e.at)
