"""Passwords: argon2id hashes, the password policy, and signing in with an email and a
password."""

from __future__ import annotations

import functools
import secrets
from datetime import datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, throttle
from .models import User

MIN_LENGTH = 12
# The sign-in form takes no longer password: a longer one could never be typed in again.
MAX_LENGTH = 200
# The 10,000 most common passwords, lowercased (provenance: reporting/data/README.md).
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt"


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, memory-hard, library defaults (RFC 9106 low-memory)


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher().hash(password)


def check_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; never raises for a wrong or malformed hash."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against a throwaway hash keeps unknown-email sign-ins as slow as real ones.
@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with these credentials, else None (same cost either way)."""
    user = _user_by_email(session, email)
    if user is None or not user.is_active:
        check_password(_decoy_hash(), password)
        return None
    return user if check_password(user.password_hash, password) else None


@functools.cache
def common_passwords() -> frozenset[str]:
    """The list of common passwords, read once per process."""
    with COMMON_PASSWORDS.open(encoding="utf-8") as lines:
        return frozenset(line.rstrip("\n") for line in lines if line.strip())


def password_problems(password: str, email: str) -> list[str]:
    """Why `password` may not be chosen for the account `email`, in the current language
    (empty: it may). The one policy of every place a password is set."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(_("At least %(n)d characters.", n=MIN_LENGTH))
    if len(password) > MAX_LENGTH:
        problems.append(_("At most %(n)d characters.", n=MAX_LENGTH))
    # The list is lowercased: "Password1234" is as guessable as "password1234".
    if password.strip().lower() in common_passwords():
        problems.append(_("This is one of the most common passwords: choose another."))
    if email and password.strip().lower() == email.strip().lower():
        problems.append(_("Must not be your email address."))
    return problems


def record_failed_sign_in(session: Session, email: str, address: str | None,
                          now: datetime) -> None:
    """A wrong password (at sign-in, or the current one when changing it): counted against
    the account and the address for throttling, and audited (never the password)."""
    throttle.record_failure(session, throttle.sign_in_keys(email, address), now)
    known = _user_by_email(session, email)
    audit.record(session, "user:sign_in_failed", actor_id=None,
                 subject=f"user:{known.id}" if known else None,
                 data={"email": email.strip().lower()[:254], "address": address}, now=now)
