"""API bearer tokens: shown once, stored as sha256, read from the Authorization header."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from flask import Request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import audit, throttle
from .models import ApiToken, User

TOKEN_PREFIX = "bsk_"  # noqa: S105 - a label, not a secret


def token_digest(token: str) -> str:
    """What is stored for a token (API and acknowledgement tokens alike)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str, now: datetime) -> str:
    """A new bearer token for `user`; the clear token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=token_digest(token), created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, "token:created", actor_id=user.id, subject=f"token:{row.id}",
                 data={"name": name}, now=now)
    return token


def bearer_token(req: Request) -> str | None:
    """The token of an `Authorization: Bearer` header, if any."""
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


# Built once: every API request runs it, and building a statement costs more than running it.
_TOKEN_USER = (select(User).join(ApiToken, ApiToken.user_id == User.id)
               .where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None),
                      ApiToken.created_at > bindparam("issued_after"),
                      User.is_active.is_(True)))


# The same lookup with the caller's failures in the throttle's window (one statement where
# two would run on every bearer request).
_TOKEN_USER_AND_FAILURES = _TOKEN_USER.add_columns(
    throttle.FAILURES_IN_WINDOW.label("failures"), throttle.OLDEST_IN_WINDOW.label("oldest"))


def user_and_wait(session: Session, token: str, issued_after: datetime, key: str,
                  now: datetime) -> tuple[User | None, int | None]:
    """The live token's user and how long `key` must wait (None: not over the limit), read
    together; the caller refuses on a wait before it looks at the user."""
    found = session.execute(_TOKEN_USER_AND_FAILURES, {
        "digest": token_digest(token), "issued_after": issued_after, "key": key,
        "since": now - throttle.WINDOW}).first()
    if found is None:  # an unknown, expired or revoked token: its key's count, on its own
        return None, throttle.seconds_to_wait(session, (key,), now)
    return found.User, throttle.wait_for(found.failures, found.oldest, now)


def user_for_token(session: Session, token: str, issued_after: datetime) -> User | None:
    """The active user a live token belongs to (a token issued before `issued_after` has
    expired)."""
    return session.scalars(_TOKEN_USER, {"digest": token_digest(token),
                                         "issued_after": issued_after}).first()
