"""Browsers' push subscriptions: registering and forgetting the devices that get alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit
from .errors import SubscriptionTakenError
from .models import PushDelivery, PushSubscription, User
from .push import endpoint_host
from .vocabulary import DeliveryStatus


def subscribe(session: Session, user: User, endpoint: str, p256dh: str, auth: str,
              user_agent: str | None, now: datetime) -> PushSubscription:
    """Register a browser's push subscription, or renew its keys; flushes and audits.

    An endpoint registered to someone else is refused: taking it over would send that
    person's alerts, encrypted to the caller's keys, to the caller."""
    row = session.scalars(select(PushSubscription)
                          .where(PushSubscription.endpoint == endpoint)).first()
    if row is None:
        row = PushSubscription(endpoint=endpoint, created_at=now, user_id=user.id,
                               p256dh=p256dh, auth=auth)
        session.add(row)
    elif row.user_id != user.id:
        raise SubscriptionTakenError()
    row.p256dh, row.auth = p256dh, auth
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
                                               PushDelivery.status == DeliveryStatus.PENDING)
                    .values(status=DeliveryStatus.GONE.value))
    session.delete(row)
    session.flush()
    audit.record(session, "push:unsubscribed", actor_id=user.id,
                 subject=f"subscription:{row.id}", now=now)
    return True
