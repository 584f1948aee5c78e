"""The national settings pages: the deadline policy and the working-day calendar.

Both are national (one policy, one calendar for the whole country). Every admin may read
them, because a region's admin must know the rules that their region's reports are judged
by; only an admin of the whole country (no region) may change them: a region's admin gets
the pages without their forms, and 403 for a post.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import format_date, get_locale
from flask_login import current_user

from .. import clock
from ..access import allow
from ..bodies import CALENDAR_DAY, CALENDAR_QUERY, CALENDAR_UNSET, POLICY_RULE
from ..db import reading, writing
from ..deadlines import to_local
from ..errors import Fields, ForbiddenError, ValidationError
from ..models import Role
from ..policy import change_rule, history, latest_version, rules_of
from ..schema import Obj
from ..workdays import WORKING, overrides_in, set_day, unset_day, year_of
from . import posted

bp = Blueprint("settings", __name__)
A_MONDAY = date(2024, 1, 1)  # any Monday: the calendar's weeks start on Monday


def _may_change() -> bool:
    """Only an admin of the whole country changes what is national."""
    return current_user.role is Role.ADMIN and current_user.region_id is None


def _national_admin_only() -> None:
    if not _may_change():
        raise ForbiddenError()


# --- The deadline policy ------------------------------------------------------------------


@bp.get("/admin/policy")
@allow(Role.ADMIN)
def policy_page() -> Any:
    """Every rule in force with its duration, legal basis and whether counsel verified it;
    the versions so far."""
    return _policy_page()


@bp.post("/admin/policy")
@allow(Role.ADMIN)
def change_policy() -> Any:
    """Save one rule's form: a new policy version (or nothing, when nothing changed)."""
    _national_admin_only()
    form = posted(POLICY_RULE)
    try:
        data = POLICY_RULE.clean(form)
        with writing() as session:
            version = change_rule(session, data["rule"], duration=data["duration"],
                                  basis=data["basis"],
                                  verified=data.get("verified", False),  # unticked: absent
                                  actor_id=current_user.id, now=clock.now())
    except ValidationError as exc:
        return _policy_page(form, exc.fields)
    done: dict[str, Any] = {"saved": version.id} if version else {"unchanged": 1}
    return redirect(url_for("settings.policy_page", **done, _anchor=f"rule-{data['rule']}"),
                    303)


def _policy_page(form: dict[str, str] | None = None, errors: Fields | None = None) -> Any:
    with reading() as session:
        version = latest_version(session)
        versions = history(session)
    rules = list(rules_of(version).values()) if version else []
    saved = request.args.get("saved", "")
    return render_template(
        "settings/policy.html", version=version, rules=rules, versions=versions,
        form=form or {}, errors=errors or {}, may_change=_may_change(),
        any_unverified=any(not rule.is_basis_verified for rule in rules),
        saved=int(saved) if saved.isascii() and saved.isdigit() else None,
        unchanged="unchanged" in request.args), 422 if errors else 200


# --- The working-day calendar ---------------------------------------------------------------


@bp.get("/admin/calendar")
@allow(Role.ADMIN)
def calendar_page() -> Any:
    """A year: every day working or off and why, the overrides, and a form to change a day."""
    try:
        year = CALENDAR_QUERY.clean(_query(CALENDAR_QUERY)).get("year") or _this_year()
    except ValidationError as exc:
        return _calendar_page(_this_year(), errors=exc.fields)
    return _calendar_page(year)


@bp.post("/admin/calendar")
@allow(Role.ADMIN)
def change_calendar() -> Any:
    """Make a day a working day or a day off, with the reason (the form's reason is required;
    `flask calendar set` may go without)."""
    _national_admin_only()
    form = posted(CALENDAR_DAY)
    try:
        data = CALENDAR_DAY.clean(form)
        with writing() as session:
            set_day(session, data["day"], is_working=data["kind"] == WORKING,
                    reason=data["reason"], actor_id=current_user.id, now=clock.now())
    except ValidationError as exc:
        return _calendar_page(_year_of_posted(form), form, exc.fields)
    return _back_to_year(data["day"].year, data["day"].isoformat())


@bp.post("/admin/calendar/remove")
@allow(Role.ADMIN)
def remove_calendar_override() -> Any:
    """Remove a day's override: the holidays library's answer counts again."""
    _national_admin_only()
    form = posted(CALENDAR_UNSET)
    try:
        data = CALENDAR_UNSET.clean(form)
        with writing() as session:
            unset_day(session, data["day"], actor_id=current_user.id, now=clock.now())
    except ValidationError as exc:
        return _calendar_page(_year_of_posted(form), errors=exc.fields)
    return _back_to_year(data["day"].year, data["day"].isoformat())


def _query(schema: Obj) -> dict[str, str]:
    return {name: value for name, value in request.args.items() if name in schema.fields}


def _this_year() -> int:
    return to_local(clock.now()).year


def _year_of_posted(form: dict[str, str]) -> int:
    """The year of the day a refused form named, to show it again; else this year."""
    try:
        year: int = CALENDAR_UNSET.clean({"day": form.get("day", "")})["day"].year
    except ValidationError:
        return _this_year()
    return year


def _back_to_year(year: int, day: str) -> Any:
    return redirect(url_for("settings.calendar_page", year=year, saved=day,
                            _anchor="overrides"), 303)


def _calendar_page(year: int, form: dict[str, str] | None = None,
                   errors: Fields | None = None) -> Any:
    locale = str(get_locale() or "en")
    with reading() as session:
        months = year_of(session, year, locale)
        overrides = overrides_in(session, year)
    return render_template(
        "settings/calendar.html", year=year, months=months, overrides=overrides,
        month_names={m: format_date(date(year, m, 1), "LLLL") for m in range(1, 13)},
        weekdays=_weekday_names(),
        form=form or {}, errors=errors or {}, may_change=_may_change(),
        saved=_saved_day()), 422 if errors else 200


def _weekday_names() -> list[tuple[str, str]]:
    """(short, full) names from Monday, in the page's language: Babel's locale data (through
    flask-babel, stand-alone forms), not messages of our own catalogues."""
    return [(format_date(day, "ccc"), format_date(day, "cccc"))
            for day in (A_MONDAY + timedelta(days=n) for n in range(7))]


def _saved_day() -> Any:
    """The day just saved (after the redirect), to confirm it; None for anything else."""
    try:
        return CALENDAR_UNSET.clean({"day": request.args.get("saved", "")})["day"]
    except ValidationError:
        return None
