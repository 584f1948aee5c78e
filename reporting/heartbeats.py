"""Phones' heartbeats: how many reports each phone holds unsent, and since when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .models import Device, User


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
