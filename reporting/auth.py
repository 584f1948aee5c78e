"""Passwords (argon2id), API bearer tokens (stored as sha256) and flask-login wiring."""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Request, redirect, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import audit
from .db import get_session
from .models import ApiToken, User

TOKEN_PREFIX = "bsk_"  # noqa: S105 - a label, not a secret


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


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with these credentials, else None (same cost either way)."""
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None or not user.is_active:
        check_password(_decoy_hash(), password)
        return None
    return user if check_password(user.password_hash, password) else None


def token_digest(token: str) -> str:
    """What is stored for a token."""
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


def wants_json(req: Request) -> bool:
    """API and fetch() callers get JSON errors, never an HTML redirect."""
    return (req.path.startswith("/api/") or req.is_json
            or req.accept_mimetypes.best == "application/json")


# Built once: every API request runs it, and building a statement costs more than running it.
_TOKEN_USER = (select(User).join(ApiToken, ApiToken.user_id == User.id)
               .where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None),
                      User.is_active.is_(True)))


def init_login(app: Flask) -> None:
    """Sessions for browsers, bearer tokens for scripts, 401 JSON for the API."""
    manager = LoginManager(app)
    manager.session_protection = "basic"

    @manager.user_loader
    def _load_user(user_id: str) -> User | None:
        # A request that presents a bearer token is judged on that token alone: otherwise a
        # cookie riding along would authenticate it without the CSRF check.
        if bearer_token(request) is not None:
            return None
        user = get_session().get(User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.is_active else None

    @manager.request_loader
    def _load_from_token(req: Request) -> User | None:
        token = bearer_token(req)
        if token is None:
            return None
        return get_session().scalars(_TOKEN_USER, {"digest": token_digest(token)}).first()

    @manager.unauthorized_handler
    def _unauthorized() -> Any:
        from .errors import json_error

        if wants_json(request):
            return json_error(401, "unauthorized", _l("Sign in to continue."))
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
