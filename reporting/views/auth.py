"""Sign in and out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .. import audit, clock, throttle
from ..access import PUBLIC, SIGNED_IN, allow
from ..accounts import end_sessions, find_user
from ..auth import fresh_session, start_session
from ..db import reading, writing
from ..passwords import authenticate

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would hand a phishing page a trusted link; and
    # no control characters, which no redirect header may carry.
    if target and target.startswith("/") and not target.startswith("//") \
            and target.isprintable() and not urlsplit(target).netloc:
        return target
    return url_for("home.index")


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login() -> Any:
    """The sign-in form, limited per account and per address (the right password too)."""
    form = LoginForm()
    if request.method != "POST" or not form.validate():
        return render_template("auth/login.html", form=form, error=None)
    email, now = form.email.data or "", clock.now()
    keys = (throttle.account_key(email), throttle.address_key(request.remote_addr))
    with reading() as db:
        wait = throttle.seconds_to_wait(db, keys, now)
        user = None if wait else authenticate(db, email, form.password.data or "")
    if wait:
        page = render_template("auth/login.html", form=form, error=_l(
            "Too many failed sign-ins. Try again in %(minutes)s min.",
            minutes=max(1, -(-wait // 60))))
        return page, 429, {"Retry-After": str(wait)}
    if user is None:
        with writing() as db:
            throttle.record_failure(db, keys, now)
            known = find_user(db, email)
            audit.record(db, "user:sign_in_failed", actor_id=None,
                         subject=f"user:{known.id}" if known else None,
                         data={"email": email.strip().lower()[:254],
                               "address": request.remote_addr}, now=now)
        return render_template("auth/login.html", form=form,
                               error=_l("Wrong email or password.")), 401
    start_session(user)
    with writing() as db:
        audit.record(db, "user:signed_in", actor_id=user.id, subject=f"user:{user.id}",
                     now=now)
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
@allow(SIGNED_IN)
def logout() -> Any:
    """Sign out (POST, CSRF-protected, so no link can sign a user out): this session and any
    copy of its cookie end on the server."""
    user_id = current_user.id
    logout_user()
    fresh_session()
    with writing() as db:
        end_sessions(db, user_id)
        audit.record(db, "user:signed_out", actor_id=user_id, subject=f"user:{user_id}",
                     now=clock.now())
    return redirect(url_for("auth.login"))
