"""Besik: report an abandoned newborn in seconds; provably alert and track the authority."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, current_app, g, has_request_context, request, session
from flask_babel import Babel, get_locale
from flask_login import current_user

from . import clock, labels
from .access import init_access
from .accounts import set_locale
from .auth import init_login
from .config import REPO_ROOT, Settings
from .db import Database, close_session, writing
from .deadlines import to_local
from .errors import init_errors
from .logs import init_request_log

LOCALES = ("kk", "ru", "en")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app in named steps; `settings` defaults to the environment."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance_path),
                template_folder=str(REPO_ROOT / "templates"),
                static_folder=str(REPO_ROOT / "static"))
    _configure(app, settings)
    init_request_log(app)  # first: its before_request runs even when the gate refuses
    _init_database(app, settings)
    _init_i18n(app)
    init_login(app)
    _init_security(app)
    _init_user_language(app)
    init_errors(app)
    _register_blueprints(app)
    _register_cli(app)
    return app


def _configure(app: Flask, settings: Settings) -> None:
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config.update(
        SECRET_KEY=settings.secret_key,
        BESIK=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SESSION_COOKIE_NAME="besik_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.is_demo,
        # A permanent session refreshed on every request, checked against max_age when
        # read: the idle timeout is enforced by the server, not by the browser.
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_idle_seconds),
        SESSION_REFRESH_EACH_REQUEST=True,
        REMEMBER_COOKIE_DURATION=timedelta(seconds=0),
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=3600,
    )


def _init_database(app: Flask, settings: Settings) -> None:
    app.extensions["besik.db"] = Database(settings.database_url)
    app.teardown_appcontext(close_session)


def _select_locale() -> str | None:
    """?lang= on this request, else the signed-in user's own language, else the one this
    browser chose last, else the browser's Accept-Language, else English."""
    if not has_request_context():
        return None  # the command line: the default (English) unless a command forces one
    chosen = request.args.get("lang")
    if chosen in LOCALES:
        session["lang"] = chosen
        return chosen
    # The user's saved language beats the browser's last choice: it may have been changed
    # on another device or through PATCH /me, and a colleague may have left a choice behind
    # on a shared phone.
    if current_user and current_user.is_authenticated and current_user.locale in LOCALES:
        return str(current_user.locale)
    if session.get("lang") in LOCALES:
        return str(session["lang"])
    return request.accept_languages.best_match(LOCALES, default="en")


LANG_TO_SAVE = "besik_lang_to_save"


def _note_chosen_language() -> None:
    """before_request, after the sign-in checks: ?lang= chosen by someone signed in since
    before this request (not by the sign-in itself: the phone may be shared) that differs
    from their saved language."""
    chosen = request.args.get("lang")
    if chosen in LOCALES and current_user.is_authenticated and current_user.locale != chosen:
        setattr(g, LANG_TO_SAVE, (current_user.id, chosen))


def _save_chosen_language(response: Response) -> Response:
    """after_request: a language chosen on a page becomes the user's own (pages, pushes,
    exports). Only for a page or a redirect to one: the API, and the export form's download
    (where `lang` is the file's headers' language), answer something else."""
    noted = g.pop(LANG_TO_SAVE, None)
    if noted is not None and (response.mimetype == "text/html" or response.status_code in (
            301, 302, 303, 307, 308)):
        user_id, chosen = noted
        with writing() as db:
            set_locale(db, user_id, chosen, now=clock.now())
    return response


def _init_i18n(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(REPO_ROOT / "reporting" / "translations")
    Babel(app, locale_selector=_select_locale)
    app.jinja_env.filters["local"] = _local_time
    app.jinja_env.filters["iso_local"] = _iso_local
    app.jinja_env.globals.update(labels=labels, label=labels.label, get_locale=get_locale,
                                 lang_url=_lang_url)


def _init_user_language(app: Flask) -> None:
    # After the access gate (registered in order): only a signed-in, still valid session's
    # choice is saved.
    app.before_request(_note_chosen_language)
    app.after_request(_save_chosen_language)


def _lang_url(code: str) -> str:
    """This page in another language, keeping its other query parameters."""
    return f"{request.path}?{urlencode(request.args.to_dict() | {'lang': code})}"


def _iso_local(value: str | None, fmt: str = "%H:%M") -> str:
    """An API time string (ISO 8601) shown in Kazakhstan time."""
    return _local_time(datetime.fromisoformat(value), fmt) if value else ""


def _local_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Stored UTC shown in Kazakhstan time."""
    return to_local(moment).strftime(fmt) if moment is not None else ""


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _security_headers(response: Any) -> Any:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if not current_app.config["BESIK"].is_demo:
        # Outside the demo Besik is served over TLS only: browsers must never try plain http.
        response.headers.setdefault("Strict-Transport-Security",
                                    "max-age=31536000; includeSubDomains")
    if request.path.startswith("/api/") or request.endpoint not in (None, "static"):
        # Personal data must not linger in shared caches or the browser's back button.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _init_security(app: Flask) -> None:
    init_access(app)
    app.after_request(_security_headers)


def _register_blueprints(app: Flask) -> None:
    from .views import admin, api, auth, home, officer, pwa, reports, settings

    for module in (home, auth, reports, officer, admin, settings, pwa):
        app.register_blueprint(module.bp)
    app.register_blueprint(api.bp, url_prefix="/api/v1")


def _register_cli(app: Flask) -> None:
    from .cli import register

    register(app)
