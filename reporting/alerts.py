"""Who must hear about a notice, and when: alerts, reminders and escalation (PRODUCT §6)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from . import audit
from .models import (
    CoverageGap,
    Deadline,
    Notice,
    PushDelivery,
    PushSubscription,
    Role,
    User,
)
from .vocabulary import DeliveryKind, DeliveryStatus

# Reminders for an acknowledged notice come this long before examine_child falls due.
EXAMINE_REMINDER_LEAD = timedelta(hours=4)


def agency_officers(session: Session, agency_id: int) -> list[User]:
    """Active officers of an agency."""
    return list(session.scalars(select(User).where(
        User.agency_id == agency_id, User.role == Role.OFFICER, User.is_active.is_(True))))


def region_admins(session: Session, region_id: int) -> list[User]:
    """Active admins whose scope covers the region (the region's, or the whole country)."""
    return list(session.scalars(select(User).where(
        User.role == Role.ADMIN, User.is_active.is_(True),
        or_(User.region_id == region_id, User.region_id.is_(None)))))


def subscriptions_of(session: Session, user_ids: Iterable[int]) -> list[PushSubscription]:
    """Every device of these users that accepts push."""
    ids = list(set(user_ids))
    if not ids:
        return []
    return list(session.scalars(select(PushSubscription)
                                .where(PushSubscription.user_id.in_(ids))))


# Every device of the active officers of some agencies (built once; run per filing).
_OFFICER_DEVICES = (
    select(User.agency_id, PushSubscription).join(User, User.id == PushSubscription.user_id)
    .where(User.agency_id.in_(bindparam("agency_ids", expanding=True)),
           User.role == Role.OFFICER, User.is_active.is_(True))
    .order_by(PushSubscription.id))


def officer_devices(session: Session, agency_ids: Iterable[int]
                    ) -> dict[int, list[PushSubscription]]:
    """Each agency's officers' devices, by agency id (an agency without any maps to [])."""
    devices: dict[int, list[PushSubscription]] = {agency_id: [] for agency_id in agency_ids}
    if devices:
        for agency_id, subscription in session.execute(
                _OFFICER_DEVICES, {"agency_ids": list(devices)}):
            devices[cast(int, agency_id)].append(subscription)  # the WHERE admits no None
    return devices


def deliveries_for(subscriptions: Iterable[PushSubscription], notice: Notice | None,
                   kind: DeliveryKind, now: datetime) -> list[PushDelivery]:
    """One delivery per subscription (not yet added to any session)."""
    return [PushDelivery(subscription_id=s.id, user_id=s.user_id, notice=notice,
                         notice_id=notice.id if notice else None, kind=kind.value,
                         status=DeliveryStatus.PENDING.value,
                         attempts=0, next_attempt_at=now, created_at=now)
            for s in subscriptions]


def queue(session: Session, subscriptions: Iterable[PushSubscription], notice: Notice | None,
          kind: DeliveryKind, now: datetime) -> list[PushDelivery]:
    """One delivery row per subscription, in the caller's transaction (the worker sends)."""
    rows = deliveries_for(subscriptions, notice, kind, now)
    session.add_all(rows)
    return rows


def queue_for_users(session: Session, users: Iterable[User], notice: Notice | None,
                    kind: DeliveryKind, now: datetime) -> list[PushDelivery]:
    """Queue a message to every device of these users."""
    return queue(session, subscriptions_of(session, (u.id for u in users)), notice, kind, now)


def _claim_level(session: Session, notice_id: str, level: int) -> bool:
    # One conditional UPDATE per level: with several workers, exactly one wins it.
    result = session.execute(
        update(Notice).where(Notice.id == notice_id, Notice.escalation_level == level - 1,
                             Notice.acknowledged_at.is_(None))
        .values(escalation_level=level).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def escalate_due(session: Session, now: datetime) -> int:
    """Raise every unacknowledged notice whose time is up by one level; returns how many."""
    raised = 0
    candidates = session.scalars(select(Notice).where(
        Notice.acknowledged_at.is_(None), Notice.escalation_level < 2,
        Notice.ack_due_at <= now)).all()
    for notice in candidates:
        interval = notice.ack_due_at - notice.sent_at
        level = notice.escalation_level + 1
        # Level 1 when acknowledge_notice passes; level 2 one more interval later.
        if now < notice.ack_due_at + interval * (level - 1):
            continue
        if not _claim_level(session, notice.id, level):
            continue
        officers = agency_officers(session, notice.agency_id)
        if level == 1:
            alerted = [u for u in officers if u.is_head]
        else:
            alerted = region_admins(session, notice.agency.region_id)
        queue_for_users(session, alerted, notice, DeliveryKind.ESCALATION, now)
        queue_for_users(session, [u for u in officers if u not in alerted], notice,
                        DeliveryKind.REMINDER, now)
        audit.record(session, "notice:escalated", actor_id=None,
                     subject=f"notice:{notice.id}",
                     data={"level": level, "alerted": sorted(u.id for u in alerted)}, now=now)
        raised += 1
    session.flush()
    return raised


def remind_examination(session: Session, now: datetime) -> int:
    """Remind an acknowledged notice's officers before examine_child falls due (once)."""
    due = session.execute(select(Notice, Deadline).join(
        Deadline, Deadline.notice_id == Notice.id).where(
        Notice.acknowledged_at.is_not(None), Notice.examine_reminded_at.is_(None),
        Deadline.rule == "examine_child", Deadline.met_at.is_(None),
        Deadline.due_at <= now + EXAMINE_REMINDER_LEAD)).all()
    reminded = 0
    for notice, _deadline in due:
        claimed = session.execute(
            update(Notice).where(Notice.id == notice.id, Notice.examine_reminded_at.is_(None))
            .values(examine_reminded_at=now).execution_options(synchronize_session=False))
        if not claimed.rowcount:  # type: ignore[attr-defined]
            continue
        queue_for_users(session, agency_officers(session, notice.agency_id), notice,
                        DeliveryKind.REMINDER, now)
        audit.record(session, "notice:reminded", actor_id=None, subject=f"notice:{notice.id}",
                     data={"rule": "examine_child"}, now=now)
        reminded += 1
    session.flush()
    return reminded


def alert_coverage_gaps(session: Session, gaps: Iterable[CoverageGap], now: datetime) -> int:
    """Queue each newly opened gap to the admins of its region (and the country's)."""
    queued = 0
    for gap in gaps:
        admins = (region_admins(session, gap.region_id) if gap.region_id is not None
                  else country_admins(session))
        rows = deliveries_for(subscriptions_of(session, (a.id for a in admins)), None,
                              DeliveryKind.COVERAGE, now)
        for row in rows:
            row.gap_id = gap.id
        session.add_all(rows)
        queued += len(rows)
    session.flush()
    return queued


def country_admins(session: Session) -> list[User]:
    """Active admins whose scope is the whole country."""
    return list(session.scalars(select(User).where(
        User.role == Role.ADMIN, User.is_active.is_(True), User.region_id.is_(None))))
