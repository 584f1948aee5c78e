"""Devices: phones' heartbeats (reports stuck on a phone) and browsers' push subscriptions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit
from .models import Device, PushDelivery, PushSubscription, User
from .push import endpoint_host


def heartbeat(session: Session, user: User, device_id: str, outbox_depth: int,
              oldest_unsent_at: datetime | None, now: datetime) -> Device:
    """Record a phone's outbox depth; flushes. Not audited: it changes no report's state."""
    device = session.get(Device, device_id)
    if device is None:
        device = Device(id=device_id, user_id=user.id, last_seen_at=now)
        session.add(device)
    device.user_id, device.facility_id = user.id, user.facility_id
    device.outbox_depth = outbox_depth
    device.oldest_unsent_at = oldest_unsent_at if outbox_depth else None
    device.last_seen_at = now
    session.flush()
    return device


def subscribe(session: Session, user: User, endpoint: str, p256dh: str, auth: str,
              user_agent: str | None, now: datetime) -> PushSubscription:
    """Register (or move to this user) a browser's push subscription; flushes and audits."""
    row = session.scalars(select(PushSubscription)
                          .where(PushSubscription.endpoint == endpoint)).first()
    if row is None:
        row = PushSubscription(endpoint=endpoint, created_at=now, user_id=user.id,
                               p256dh=p256dh, auth=auth)
        session.add(row)
    row.user_id, row.p256dh, row.auth = user.id, p256dh, auth
    row.user_agent = (user_agent or "")[:300] or None
    session.flush()
    audit.record(session, "push:subscribed", actor_id=user.id,
                 subject=f"subscription:{row.id}", data={"host": endpoint_host(endpoint)},
                 now=now)
    return row


def unsubscribe(session: Session, user: User, endpoint: str, now: datetime) -> bool:
    """Remove one of the user's own subscriptions; False when it is not theirs."""
    row = session.scalars(select(PushSubscription).where(
        PushSubscription.endpoint == endpoint, PushSubscription.user_id == user.id)).first()
    if row is None:
        return False
    session.execute(update(PushDelivery).where(PushDelivery.subscription_id == row.id,
                                               PushDelivery.status == "pending")
                    .values(status="gone"))
    session.delete(row)
    session.flush()
    audit.record(session, "push:unsubscribed", actor_id=user.id,
                 subject=f"subscription:{row.id}", now=now)
    return True
