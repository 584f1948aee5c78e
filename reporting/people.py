"""People: administrators create accounts (with a one-time password to change at the first
sign-in), change their role and where they belong, reset passwords, deactivate them and
revoke their API tokens. A region's admin manages only that region's people.

Operations flush and audit with before and after values (never a password); the caller
commits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import audit
from .accounts import end_sessions, find_user, revoke_tokens
from .errors import NotFoundError, ValidationError
from .models import Agency, ApiToken, District, Facility, Region, Role, User
from .passwords import hash_password
from .places import Actor, scoped

# Four groups of five letters and digits without look-alikes (0/O, 1/l/I): ~100 bits, read
# aloud or typed from a note once.
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def one_time_password() -> str:
    """A random password for a new account or a reset, to be replaced at first sign-in."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(4))


def region_of(user: User) -> int | None:
    """The region a user belongs to (None: a country-wide admin)."""
    if user.facility is not None:
        return user.facility.district.region_id
    if user.agency is not None:
        return user.agency.region_id
    return user.region_id


def in_scope(user: User, scope_region_id: int | None) -> User:
    """`user` if an admin of `scope_region_id` (None: the country) may manage them."""
    if scope_region_id is not None and region_of(user) != scope_region_id:
        raise NotFoundError()
    return user


def find(session: Session, email: str, scope_region_id: int | None) -> User:
    """A user by email within scope, else NotFoundError."""
    user = find_user(session, email)
    if user is None:
        raise NotFoundError()
    return in_scope(user, scope_region_id)


def listing(session: Session, scope_region_id: int | None) -> list[User]:
    """The people an admin manages, active first, by email."""
    query = select(User).order_by(User.is_active.desc(), User.email)
    if scope_region_id is not None:
        in_region_facilities = (select(Facility.id).join(District)
                                .where(District.region_id == scope_region_id))
        in_region_agencies = select(Agency.id).where(Agency.region_id == scope_region_id)
        query = query.where(or_(User.facility_id.in_(in_region_facilities),
                                User.agency_id.in_(in_region_agencies),
                                User.region_id == scope_region_id))
    return list(session.scalars(query))


@dataclass(frozen=True)
class Belonging:
    """Where a person works, checked against their role and the admin's scope."""

    role: Role
    facility: Facility | None
    agency: Agency | None
    region: Region | None
    is_head: bool


def _belonging(session: Session, data: dict[str, Any], actor: Actor) -> Belonging:
    role = Role(str(data["role"]))
    facility = scoped(session, Facility, data.get("facility"), "facility", actor.region_id)
    agency = scoped(session, Agency, data.get("agency"), "agency", actor.region_id)
    region = scoped(session, Region, data.get("region"), "region", actor.region_id)
    errors: dict[str, Any] = {}
    if role is Role.REPORTER and facility is None:
        errors["facility"] = _l("A reporter belongs to a facility.")
    if role is Role.OFFICER and agency is None:
        errors["agency"] = _l("An officer belongs to an agency.")
    if role is Role.ADMIN and region is None and actor.region_id is not None:
        errors["region"] = _l("You can only add administrators of your own region.")
    if errors:
        raise ValidationError(errors)
    return Belonging(role, facility if role is Role.REPORTER else None,
                     agency if role is Role.OFFICER else None,
                     region if role is Role.ADMIN else None,
                     bool(data.get("is_head")) and role is Role.OFFICER)


def _snapshot(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role.value,
            "facility": user.facility.code if user.facility else None,
            "agency": user.agency.code if user.agency else None,
            "region": user.region.code if user.region else None,
            "is_head": user.is_head, "is_active": user.is_active}


def create(session: Session, data: dict[str, Any], actor: Actor, now: datetime
           ) -> tuple[User, str]:
    """A new account and its one-time password (shown once, stored only as a hash)."""
    email = data["email"].strip().lower()
    if find_user(session, email) is not None:
        raise ValidationError({"email": _l("A user with this email already exists.")})
    belonging = _belonging(session, data, actor)
    password = one_time_password()
    user = User(email=email, name=data["name"], role=belonging.role,
                facility=belonging.facility, agency=belonging.agency,
                region=belonging.region, is_head=belonging.is_head,
                password_hash=hash_password(password), must_change_password=True,
                created_at=now)
    session.add(user)
    session.flush()
    audit.record(session, "user:created", actor_id=actor.user_id, subject=f"user:{user.id}",
                 data={"email": email, "changes": audit.changes({}, _snapshot(user))}, now=now)
    return user, password


def change(session: Session, user: User, data: dict[str, Any], actor: Actor,
           now: datetime) -> User:
    """A new name, role, facility, agency, region or head flag."""
    before = _snapshot(user)
    belonging = _belonging(session, data, actor)
    user.name, user.role, user.is_head = data["name"], belonging.role, belonging.is_head
    user.facility, user.agency, user.region = (belonging.facility, belonging.agency,
                                               belonging.region)
    session.flush()
    changes = audit.changes(before, _snapshot(user))
    if changes:
        if "role" in changes or "facility" in changes or "agency" in changes:
            end_sessions(session, user.id)  # what they may see changed: sign in again
        audit.record(session, "user:changed", actor_id=actor.user_id,
                     subject=f"user:{user.id}", data={"changes": changes}, now=now)
    return user


def reset_password(session: Session, user: User, actor: Actor, now: datetime) -> str:
    """A new one-time password; the user's sessions end and the old password stops."""
    password = one_time_password()
    user.password_hash, user.must_change_password = hash_password(password), True
    session.flush()
    end_sessions(session, user.id)
    audit.record(session, "user:password_reset", actor_id=actor.user_id,
                 subject=f"user:{user.id}", now=now)
    return password


def set_active(session: Session, user: User, is_active: bool, actor: Actor,
               now: datetime) -> None:
    """Deactivate (sessions and tokens stop at the next request) or reactivate."""
    if user.is_active == is_active:
        return
    user.is_active = is_active
    session.flush()
    end_sessions(session, user.id)
    audit.record(session, "user:deactivated" if not is_active else "user:reactivated",
                 actor_id=actor.user_id, subject=f"user:{user.id}", now=now)


def tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's API tokens, newest first."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                .order_by(ApiToken.id.desc())))


def revoke_token(session: Session, user: User, token_id: int, actor: Actor,
                 now: datetime) -> None:
    """One of the user's tokens stops working; another user's token id is NotFoundError."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFoundError()
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
        audit.record(session, "token:revoked", actor_id=actor.user_id,
                     subject=f"user:{user.id}", data={"token": token.id, "name": token.name},
                     now=now)


def revoke_all_tokens(session: Session, user: User, actor: Actor, now: datetime) -> int:
    """Every token of the user stops working."""
    return revoke_tokens(session, user, actor_id=actor.user_id, now=now)
