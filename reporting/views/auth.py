"""Sign in and out, and the signed-in user's own page (/me: language and password)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .. import accounts, audit, clock, throttle
from ..access import PUBLIC, SIGNED_IN, allow
from ..accounts import end_sessions
from ..auth import fresh_session, go_on_after_sessions_ended, start_session
from ..bodies import ME
from ..db import reading, writing
from ..errors import Fields, ValidationError
from ..passwords import (
    MIN_LENGTH,
    authenticate,
    check_password,
    hash_password,
    password_problems,
    record_failed_sign_in,
)

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
    keys = throttle.sign_in_keys(email, request.remote_addr)
    with reading() as db:
        wait = throttle.seconds_to_wait(db, keys, now)
        user = None if wait else authenticate(db, email, form.password.data or "")
    if wait:
        page = render_template("auth/login.html", form=form, error=_too_many(wait))
        return page, 429, {"Retry-After": str(wait)}
    if user is None:
        with writing() as db:
            record_failed_sign_in(db, email, request.remote_addr, now)
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


def _too_many(wait: int) -> Any:
    return _l("Too many failed sign-ins. Try again in %(minutes)s min.",
              minutes=max(1, -(-wait // 60)))


# Each language's name in itself, as on the switcher in every page's header.
LANGUAGES = (("kk", "Қазақша"), ("ru", "Русский"), ("en", "English"))


def _me_page(errors: Fields | None = None, status: int = 200) -> Any:
    return render_template("auth/me.html", errors=errors or {}, languages=LANGUAGES,
                           min_length=MIN_LENGTH, done=request.args.get("done")), status


@bp.get("/me")
@allow(SIGNED_IN)
def me() -> Any:
    """The signed-in user's own page: their language and their password."""
    return _me_page()


@bp.post("/me/language")
@allow(SIGNED_IN)
def me_language() -> Any:
    """Save the user's own language (the same schema as PATCH /api/v1/me)."""
    try:
        locale = ME.clean({"locale": request.form.get("locale", "")})["locale"]
    except ValidationError as exc:
        return _me_page(exc.fields, 422)
    with writing() as db:
        accounts.set_locale(db, current_user.id, locale.value, now=clock.now())
    return redirect(url_for("auth.me", done="language"), 303)


@bp.post("/me/password")
@allow(SIGNED_IN)
def me_password() -> Any:
    """Change the password: the current one (a wrong one counts as a failed sign-in), the
    new one twice, under the password policy. Every other session of the user ends."""
    form, now, email = request.form, clock.now(), current_user.email
    with reading() as db:
        wait = throttle.seconds_to_wait(
            db, throttle.sign_in_keys(email, request.remote_addr), now)
    if wait:
        page, status = _me_page({"current_password": _too_many(wait)}, 429)
        return page, status, {"Retry-After": str(wait)}
    current, new = form.get("current_password", ""), form.get("new_password", "")
    errors = _new_password_errors(new, form.get("new_password_again", ""), email)
    if not current:
        errors["current_password"] = _l("This field is required.")
    elif not check_password(current_user.password_hash, current):
        errors["current_password"] = _l("The current password is wrong.")
        with writing() as db:
            record_failed_sign_in(db, email, request.remote_addr, now)
    if errors:
        return _me_page(errors, 422)
    password_hash = hash_password(new)  # before the write transaction: argon2 is slow
    with writing() as db:
        generation = accounts.change_password(db, current_user.id, password_hash, now=now)
    go_on_after_sessions_ended(generation)
    return redirect(url_for("auth.me", done="password"), 303)


def _new_password_errors(new: str, again: str, email: str) -> Fields:
    errors: Fields = {}
    if not new:
        errors["new_password"] = _l("This field is required.")
    elif problems := password_problems(new, email):
        errors["new_password"] = " ".join(problems)
    if new and again != new:
        errors["new_password_again"] = _l("The two new passwords are not the same.")
    return errors
