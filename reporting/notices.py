"""Routing a report to the agencies that must act on it (PRODUCT §4)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from . import audit
from .auth import token_digest
from .deadlines import Calendar, Event, Rule, due_at
from .models import (
    AckToken,
    Agency,
    AgencyKind,
    Deadline,
    Notice,
    PolicyVersion,
    PushDelivery,
    Report,
    ReportAction,
    ReportState,
    User,
    new_uuid,
)
from .policy import load_calendar, rules_of

# The district's agencies of a kind first, then the region's (built once; run per filing).
_AGENCIES_FOR = select(Agency).where(
    Agency.kind == bindparam("kind"),
    or_(Agency.district_id == bindparam("district_id"),
        and_(Agency.district_id.is_(None), Agency.region_id == bindparam("region_id"))),
).order_by(Agency.district_id.is_(None), Agency.id).limit(1)


def _agency_for(session: Session, kind: AgencyKind, district_id: int,
                region_id: int) -> tuple[Agency, bool] | None:
    """The district's agency of this kind, else the region's (a fallback: a config gap)."""
    chosen = session.scalars(_AGENCIES_FOR, {"kind": kind, "district_id": district_id,
                                             "region_id": region_id}).first()
    if chosen is None:
        return None
    # Police commonly serve a whole region: that is their jurisdiction, not a gap.
    is_fallback = kind is AgencyKind.GUARDIANSHIP and chosen.district_id is None
    return chosen, is_fallback


def routes_for(session: Session, district_id: int, region_id: int, *, has_risk: bool
               ) -> list[tuple[Agency, bool]]:
    """The (agency, is_fallback) pairs a report from a facility in this district goes to."""
    kinds = [AgencyKind.GUARDIANSHIP] + ([AgencyKind.POLICE] if has_risk else [])
    found = (_agency_for(session, kind, district_id, region_id) for kind in kinds)
    return [route for route in found if route is not None]


def open_notices(report: Report, routes: list[tuple[Agency, bool]], rules: dict[str, Rule],
                 calendar: Calendar, now: datetime) -> list[Notice]:
    """One notice per route, with its deadlines, attached to `report` (not yet added)."""
    notices = []
    for agency, is_fallback in routes:
        notice = Notice(id=new_uuid(), report=report, report_id=report.id, agency=agency,
                        agency_id=agency.id, is_fallback=is_fallback, sent_at=now,
                        ack_due_at=due_at(now, rules["acknowledge_notice"].duration, calendar),
                        escalation_level=0)
        for rule in rules.values():
            if rule.starts_on is not Event.NOTICE_SENT:
                continue
            if rule.name == "examine_child" and agency.kind is not AgencyKind.GUARDIANSHIP:
                continue
            Deadline(report=report, report_id=report.id, notice=notice, notice_id=notice.id,
                     rule=rule.name, due_at=due_at(now, rule.duration, calendar),
                     basis=rule.basis, is_basis_verified=rule.is_basis_verified)
        notices.append(notice)
    return notices


def notice_audit_entries(notices: list[Notice]) -> list[audit.Entry]:
    """The notice:created entries for freshly opened notices."""
    return [audit.Entry("notice:created", actor_id=None, subject=f"notice:{n.id}",
                        data={"report": n.report_id or n.report.id, "agency": n.agency.code,
                              "is_fallback": n.is_fallback, "ack_due_at": n.ack_due_at})
            for n in notices]


ACK_TOKEN_TTL = timedelta(hours=24)
ACTIONS = ("examined", "placed", "registered", "police_informed", "closed")
# The deadline each action meets.
ACTION_MEETS = {"examined": "examine_child", "registered": "register_in_data_bank",
                "police_informed": "inform_police"}
CHANNELS = ("inbox", "report_page", "notification", "ack_page", "api")


class AckTokenError(Exception):
    """The token is unknown, used, expired or for another notice."""


def notice_for_officer(session: Session, report: Report, user: User) -> Notice | None:
    """The report's notice to the officer's own agency."""
    return session.scalars(select(Notice).where(Notice.report_id == report.id,
                                                Notice.agency_id == user.agency_id)).first()


def acknowledge(session: Session, notice: Notice, user: User, *, channel: str,
                now: datetime, note: str | None = None) -> bool:
    """Record the first acknowledgement (who, when, how); a repeat changes nothing.

    Returns True when this call acknowledged. Flushes and audits, never commits.
    """
    # One conditional UPDATE: two officers tapping at once cannot both be first.
    claimed = session.execute(
        update(Notice).where(Notice.id == notice.id, Notice.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=user.id, ack_channel=channel)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.refresh(notice)
    if not claimed:
        return False
    for deadline in notice.report.deadlines:
        if deadline.notice_id == notice.id and deadline.rule == "acknowledge_notice":
            deadline.met_at = now
    _start_acknowledged_deadlines(session, notice, now)
    if notice.report.state is ReportState.OPEN:
        notice.report.state = ReportState.ACKNOWLEDGED
    # Escalation stops at acknowledgement: reminders not yet sent are no longer true.
    session.execute(update(PushDelivery).where(
        PushDelivery.notice_id == notice.id, PushDelivery.status == "pending",
        PushDelivery.kind.in_(("reminder", "escalation"))).values(status="cancelled")
        .execution_options(synchronize_session=False))
    session.flush()
    audit.record(session, "notice:acknowledged", actor_id=user.id,
                 subject=f"notice:{notice.id}",
                 data={"report": notice.report_id, "channel": channel, "note": note,
                       "is_late": now > notice.ack_due_at,
                       "escalation_level": notice.escalation_level}, now=now)
    return True


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


def acknowledge_with_token(session: Session, notice_id: str, token: str, *, channel: str,
                           now: datetime) -> Notice:
    """Acknowledge as the officer the token was issued to; the token works once."""
    used = session.execute(
        update(AckToken).where(AckToken.token_hash == token_digest(token),
                               AckToken.notice_id == notice_id, AckToken.used_at.is_(None),
                               AckToken.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not used:
        raise AckTokenError(notice_id)
    row = session.scalars(select(AckToken).where(
        AckToken.token_hash == token_digest(token))).one()
    notice = session.get(Notice, notice_id)
    user = session.get(User, row.user_id)
    if notice is None or user is None or not user.is_active:
        raise AckTokenError(notice_id)
    acknowledge(session, notice, user, channel=channel, now=now)
    return notice


def record_action(session: Session, report: Report, notice: Notice | None, user: User,
                  action: str, note: str | None, now: datetime) -> ReportAction:
    """Record what an officer did; it meets the matching deadline. Flushes and audits."""
    row = ReportAction(report_id=report.id, notice_id=notice.id if notice else None,
                       user_id=user.id, action=action, note=note, created_at=now)
    session.add(row)
    rule = ACTION_MEETS.get(action)
    for deadline in report.deadlines:
        if deadline.rule == rule and deadline.met_at is None:
            deadline.met_at = now
    if action == "closed":
        report.state = ReportState.CLOSED
    session.flush()
    audit.record(session, "report:action", actor_id=user.id, subject=f"report:{report.id}",
                 data={"action": action, "note": note, "agency": user.agency_id}, now=now)
    return row
