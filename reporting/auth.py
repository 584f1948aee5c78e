"""Who is calling: flask-login wiring for browser sessions and bearer tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, Request, current_app, redirect, request, session, url_for
from flask_login import LoginManager

from . import clock
from .db import reading
from .errors import HTTP_REFUSALS, error_response, wants_json
from .models import User
from .tokens import bearer_token, user_for_token


def init_login(app: Flask) -> None:
    """Sessions for browsers, bearer tokens for scripts, 401 JSON for the API."""
    manager = LoginManager(app)
    manager.session_protection = "basic"
    app.before_request(end_idle_session)

    @manager.user_loader
    def _load_user(user_id: str) -> User | None:
        # A request that presents a bearer token is judged on that token alone: otherwise a
        # cookie riding along would authenticate it without the CSRF check.
        if bearer_token(request) is not None or not user_id.isdigit():
            return None
        with reading() as session:
            user = session.get(User, int(user_id))
        return user if user is not None and user.is_active else None

    @manager.request_loader
    def _load_from_token(req: Request) -> User | None:
        token = bearer_token(req)
        if token is None:
            return None
        with reading() as session:
            return user_for_token(session, token)

    @manager.unauthorized_handler
    def _unauthorized() -> Any:
        if wants_json(request):
            return error_response(HTTP_REFUSALS[401])
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


SEEN_AT = "seen_at"


def end_idle_session() -> None:
    """before_request: a signed-in session idle for longer than allowed is over.

    Judged on the server's clock: the cookie's own expiry is the browser's business.
    """
    if "_user_id" not in session:
        return
    now = clock.now()
    idle = current_app.config["BESIK"].session_idle_seconds
    seen_at = session.get(SEEN_AT)
    if isinstance(seen_at, str) and (
            now - datetime.fromisoformat(seen_at)).total_seconds() > idle:
        fresh_session()
        return
    session[SEEN_AT] = now.isoformat()


def fresh_session() -> None:
    """Start the cookie session over (sign-in, sign-out, idle), keeping the chosen language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
