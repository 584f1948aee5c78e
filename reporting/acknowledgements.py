"""Acknowledging a notice: by the officer's own hand, or with a single-use token from a push."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit
from .deadlines import Event, due_at
from .errors import AckTokenError
from .models import (
    AckToken,
    AgencyKind,
    Deadline,
    Notice,
    PolicyVersion,
    PushDelivery,
    Report,
    ReportState,
    User,
)
from .policy import load_calendar, rules_of
from .tokens import token_digest
from .vocabulary import AckChannel, DeliveryKind, DeliveryStatus

ACK_TOKEN_TTL = timedelta(hours=24)


def notice_for_officer(session: Session, report: Report, user: User) -> Notice | None:
    """The report's notice to the officer's own agency."""
    return session.scalars(select(Notice).where(Notice.report_id == report.id,
                                                Notice.agency_id == user.agency_id)).first()


def acknowledge(session: Session, notice_id: str, user: User, *, channel: AckChannel,
                now: datetime, note: str | None = None) -> Notice:
    """Record the first acknowledgement (who, when, how); a repeat changes nothing.

    Loads the notice inside the caller's write transaction; flushes and audits, never commits.
    """
    # One conditional UPDATE: two officers tapping at once cannot both be first.
    claimed = session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=user.id, ack_channel=channel.value)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    notice = session.get_one(Notice, notice_id)
    if not claimed:
        return notice
    for deadline in notice.report.deadlines:
        if deadline.notice_id == notice.id and deadline.rule == "acknowledge_notice":
            deadline.met_at = now
    _start_acknowledged_deadlines(session, notice, now)
    if notice.report.state is ReportState.OPEN:
        notice.report.state = ReportState.ACKNOWLEDGED
    # Escalation stops at acknowledgement: reminders not yet sent are no longer true.
    session.execute(update(PushDelivery).where(
        PushDelivery.notice_id == notice.id, PushDelivery.status == DeliveryStatus.PENDING,
        PushDelivery.kind.in_((DeliveryKind.REMINDER, DeliveryKind.ESCALATION)))
        .values(status=DeliveryStatus.CANCELLED).execution_options(synchronize_session=False))
    session.flush()
    audit.record(session, "notice:acknowledged", actor_id=user.id,
                 subject=f"notice:{notice.id}",
                 data={"report": notice.report_id, "channel": channel.value, "note": note,
                       "is_late": now > notice.ack_due_at,
                       "escalation_level": notice.escalation_level}, now=now)
    return notice


def _start_acknowledged_deadlines(session: Session, notice: Notice, now: datetime) -> None:
    if notice.agency.kind is not AgencyKind.GUARDIANSHIP:
        return
    version = session.get(PolicyVersion, notice.report.policy_version_id)
    if version is None:
        return
    calendar = load_calendar(session)
    for rule in rules_of(version).values():
        if rule.starts_on is Event.NOTICE_ACKNOWLEDGED:
            session.add(Deadline(report=notice.report, notice=notice, rule=rule.name,
                                 due_at=due_at(now, rule.duration, calendar),
                                 basis=rule.basis, is_basis_verified=rule.is_basis_verified))


def issue_ack_token(session: Session, notice_id: str, user_id: int, now: datetime) -> str:
    """A single-use token for one notice and one officer; only its hash is stored."""
    token = secrets.token_urlsafe(24)
    session.add(AckToken(notice_id=notice_id, user_id=user_id, token_hash=token_digest(token),
                         created_at=now, expires_at=now + ACK_TOKEN_TTL))
    session.flush()
    return token


def acknowledge_with_token(session: Session, notice_id: str, token: str, *,
                           channel: AckChannel, now: datetime) -> Notice:
    """Acknowledge as the officer the token was issued to; the token works once."""
    used = session.execute(
        update(AckToken).where(AckToken.token_hash == token_digest(token),
                               AckToken.notice_id == notice_id, AckToken.used_at.is_(None),
                               AckToken.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not used:
        raise AckTokenError()
    row = session.scalars(select(AckToken).where(
        AckToken.token_hash == token_digest(token))).one()
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise AckTokenError()
    return acknowledge(session, notice_id, user, channel=channel, now=now)
