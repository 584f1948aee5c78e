"""People's accounts: ending their sessions, revoking their tokens, deactivating them."""

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
