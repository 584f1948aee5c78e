"""Sign in and out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .. import audit, clock
from ..access import PUBLIC, SIGNED_IN, allow
from ..auth import fresh_session
from ..db import reading, writing
from ..passwords import authenticate

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would hand a phishing page a trusted link.
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc:
        return target
    return url_for("home.index")


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login() -> Any:
    """The sign-in form."""
    form = LoginForm()
    error = None
    if request.method == "POST" and form.validate():
        with reading() as db:
            user = authenticate(db, form.email.data or "", form.password.data or "")
        if user is not None:
            fresh_session()  # no fixation
            login_user(user)
            session.permanent = True
            with writing() as db:
                audit.record(db, "user:signed_in", actor_id=user.id,
                             subject=f"user:{user.id}", now=clock.now())
            return redirect(_safe_next(request.args.get("next")))
        error = _l("Wrong email or password.")
    status = 401 if error else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
@allow(SIGNED_IN)
def logout() -> Any:
    """Sign out (POST, CSRF-protected, so no link can sign a user out)."""
    user_id = current_user.id
    logout_user()
    fresh_session()
    with writing() as db:
        audit.record(db, "user:signed_out", actor_id=user_id, subject=f"user:{user_id}",
                     now=clock.now())
    return redirect(url_for("auth.login"))
