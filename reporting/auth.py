"""Who is calling: flask-login wiring for browser sessions and bearer tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, Request, current_app, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user, login_user

from . import clock, throttle
from .db import reading, writing
from .errors import (
    HTTP_REFUSALS,
    PasswordChangeRequiredError,
    TooManyAttemptsError,
    error_response,
    wants_json,
)
from .models import User
from .tokens import bearer_token, token_digest, user_and_wait


def init_login(app: Flask) -> None:
    """Sessions for browsers, bearer tokens for scripts, 401 JSON for the API."""
    manager = LoginManager(app)
    manager.session_protection = "basic"
    app.before_request(end_idle_session)
    app.before_request(require_own_password)

    @manager.user_loader
    def _load_user(user_id: str) -> User | None:
        # A request that presents a bearer token is judged on that token alone: otherwise a
        # cookie riding along would authenticate it without the CSRF check.
        if bearer_token(request) is not None or not user_id.isdigit():
            return None
        with reading() as db:
            user = db.get(User, int(user_id))
        # A session from before the last sign-out (or deactivation) is over.
        if user is None or not user.is_active \
                or session.get(GENERATION) != user.session_generation:
            return None
        return user

    @manager.request_loader
    def _load_from_token(req: Request) -> User | None:
        token = bearer_token(req)
        if token is None:
            return None
        try:
            return user_for_bearer_token(token, req.remote_addr)
        except TooManyAttemptsError as refused:
            # Raised from here, the refusal would come back each time the error page asks
            # who is calling; the caller is anonymous, and _unauthorized answers 429.
            g.refused_attempt = refused
            return None

    @manager.unauthorized_handler
    def _unauthorized() -> Any:
        refused = g.pop("refused_attempt", None)
        if refused is not None:
            raise refused
        if wants_json(request):
            return error_response(HTTP_REFUSALS[401])
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


SEEN_AT, SIGNED_IN_AT, GENERATION = "seen_at", "signed_in_at", "generation"


def user_for_bearer_token(token: str, address: str | None) -> User | None:
    """The token's user; a failure counts against the address, and an address over the
    limit is refused before its token is even looked up (no guessing at full speed)."""
    now, key = clock.now(), throttle.address_key(address, "token")
    with reading() as db:
        # One statement reads both; the count is judged first, so an address over the limit
        # learns nothing about its token.
        user, wait = user_and_wait(db, token,
                                   now - current_app.config["BESIK"].token_lifetime, key, now)
    if wait is not None:
        raise TooManyAttemptsError(wait)
    if user is None:
        with writing() as db:
            throttle.record_failure(db, (key,), now)
    return user


def start_session(user: User) -> None:
    """Sign `user` in on a fresh cookie session (no fixation), tied to their generation."""
    fresh_session()
    login_user(user)
    session.permanent = True
    now = clock.now().isoformat()
    session.update({GENERATION: user.session_generation, SIGNED_IN_AT: now, SEEN_AT: now})


def go_on_after_sessions_ended(generation: int) -> None:
    """This session goes on after its user's other sessions were ended (a password change):
    it takes the user's new generation; every other copy still holds the old one."""
    session[GENERATION] = generation


def end_idle_session() -> None:
    """before_request: a signed-in session idle too long, or older than its absolute
    lifetime, is over. Judged on the server's clock, not the cookie's expiry."""
    if "_user_id" not in session:
        return
    now = clock.now()
    settings = current_app.config["BESIK"]
    if _older_than(session.get(SEEN_AT), settings.session_idle_seconds, now) \
            or _older_than(session.get(SIGNED_IN_AT), settings.session_max_seconds, now):
        fresh_session()
        return
    session[SEEN_AT] = now.isoformat()


def _older_than(stamp: object, seconds: int, now: datetime) -> bool:
    # A session without the stamp predates it: treat it as expired.
    if not isinstance(stamp, str):
        return True
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds() > seconds
    except (ValueError, TypeError):
        return True


def fresh_session() -> None:
    """Start the cookie session over (sign-in, sign-out, idle), keeping the chosen language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def viewing_session() -> str:
    """What "once per session" means for the caller: their sign-in, or their bearer token."""
    token = bearer_token(request)
    if token is not None:
        return f"token:{token_digest(token)[:40]}"
    return f"session:{session.get('_user_id')}:{session.get(SIGNED_IN_AT)}"


# While a password an admin set (a new account, a reset) is in use: only choosing one's own,
# changing the language, signing out, and what every page needs to load.
_OWN_PASSWORD_FIRST = frozenset({"auth.me", "auth.me_password", "auth.me_language",
                                 "auth.logout", "static", "api.csrf_token", "home.healthz"})


def require_own_password() -> Any:
    """before_request: someone signed in with a one-time password goes to /me until they
    chose their own (a page redirects; the API refuses with password_change_required)."""
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    if request.endpoint in _OWN_PASSWORD_FIRST or (request.endpoint or "").startswith("pwa."):
        return None
    if request.path.startswith("/api/"):
        raise PasswordChangeRequiredError()
    return redirect(url_for("auth.me"))
