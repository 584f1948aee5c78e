"""People's accounts: their language and password, ending their sessions, revoking their
tokens, deactivating them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit
from .models import ApiToken, User


def find_user(session: Session, email: str) -> User | None:
    """The user with this email (any letter case)."""
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def end_sessions(session: Session, user_id: int) -> None:
    """Every browser session of the user stops at its next request (sign-out, password
    change, deactivation); flushes, the caller audits."""
    session.execute(update(User).where(User.id == user_id)
                    .values(session_generation=User.session_generation + 1)
                    .execution_options(synchronize_session=False))


def revoke_tokens(session: Session, user: User, *, actor_id: int | None, now: datetime) -> int:
    """Every live API token of the user stops working; audited. Returns how many."""
    revoked = session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    audit.record(session, "token:revoked", actor_id=actor_id, subject=f"user:{user.id}",
                 data={"count": revoked}, now=now)
    return int(revoked)


def deactivate(session: Session, user: User, *, actor_id: int | None, now: datetime) -> None:
    """The user can no longer sign in; sessions and tokens stop at once. Audited."""
    user.is_active = False
    session.flush()
    end_sessions(session, user.id)
    audit.record(session, "user:deactivated", actor_id=actor_id, subject=f"user:{user.id}",
                 now=now)


def set_locale(session: Session, user_id: int, locale: str, *, now: datetime) -> User:
    """The user's own language (pages, pushes and exports use it); audited with before and
    after, only when it changes. Flushes; returns the user."""
    user = session.get_one(User, user_id)
    if user.locale != locale:
        before, user.locale = user.locale, locale
        session.flush()
        audit.record(session, "user:locale_changed", actor_id=user.id,
                     subject=f"user:{user.id}", data={"before": before, "after": locale},
                     now=now)
    return user


def change_password(session: Session, user_id: int, password_hash: str, *,
                    now: datetime) -> int:
    """Set a new password, hashed by the caller before the write transaction (argon2 is slow
    on purpose: not while holding the write lock) and checked against the policy and the
    current one: every session of the user ends, audited (never the password). Returns the
    new session generation, for the one session that should go on."""
    user = session.get_one(User, user_id)
    user.password_hash, user.must_change_password = password_hash, False
    session.flush()
    end_sessions(session, user.id)
    audit.record(session, "user:password_changed", actor_id=user.id, subject=f"user:{user.id}",
                 now=now)
    return int(session.scalar(select(User.session_generation).where(User.id == user.id)) or 0)
