"""The working-day calendar as administrators keep it: their overrides of the `holidays`
library (government day-off transfers it does not know yet), set and removed with an audit
entry, and a year of days each with why it is a working day or a day off.

Deadlines read the overrides through `policy.load_calendar` when they are computed, so a
change applies to deadlines computed afterwards; stored deadlines keep their time.
"""

from __future__ import annotations

import calendar as stdlib_calendar
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import holidays
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .db import take_turns
from .deadlines import Calendar
from .errors import CalendarError
from .models import CalendarOverride

WORKING, DAY_OFF = "working", "day-off"  # as `flask calendar set` and the form spell them
# The library names KZ holidays in Kazakh and English only: Russian pages show English names.
HOLIDAY_LANGUAGES = {"kk": "kk", "en": "en_US"}
FALLBACK_HOLIDAY_LANGUAGE = "en_US"


class Why(StrEnum):
    """Why a day is what it is, from the strongest reason down."""

    OVERRIDE = "override"  # an administrator said so
    HOLIDAY = "holiday"  # a public holiday or a transferred day off, by the library
    WEEKEND = "weekend"
    WORKING = "working"  # an ordinary working day


@dataclass(frozen=True)
class Day:
    """One day of the calendar view."""

    day: date
    is_working: bool
    why: Why
    reason: str | None  # the override's reason or the holiday's name


@dataclass(frozen=True)
class Month:
    """A month as weeks from Monday to Sunday; days of the neighbouring months are None."""

    number: int
    weeks: list[list[Day | None]]


def kind_of(is_working: bool) -> str:
    """`working` or `day-off`."""
    return WORKING if is_working else DAY_OFF


def overrides_in(session: Session, year: int) -> list[CalendarOverride]:
    """The overrides of one year, in date order."""
    return list(session.scalars(
        select(CalendarOverride)
        .where(CalendarOverride.day.between(date(year, 1, 1), date(year, 12, 31)))
        .order_by(CalendarOverride.day)))


def set_day(session: Session, day: date, *, is_working: bool, reason: str | None,
            actor_id: int | None, now: datetime) -> bool:
    """Declare `day` a working day or a day off whatever the library says; audited
    `calendar:changed` with the day before and after. False when it already was so, with
    the same reason (nothing is written)."""
    take_turns(session, "calendar")  # two admins adding the same day at once
    reason = _one_line(reason)
    override = session.get(CalendarOverride, day)
    if override is not None and (override.is_working_day, override.note) == (is_working, reason):
        return False
    before = _state(day, override)
    if override is None:
        override = CalendarOverride(day=day)
        session.add(override)
    override.is_working_day, override.note = is_working, reason
    session.flush()
    _record(session, day, before, _state(day, override), actor_id, now)
    return True


def _one_line(reason: str | None) -> str | None:
    # Printed by `calendar show` between tabs and shown beside a day: one line, or none.
    return " ".join(reason.split()) or None if reason else None


def unset_day(session: Session, day: date, *, actor_id: int | None, now: datetime) -> None:
    """Remove the override of `day`: the library's answer counts again; audited."""
    take_turns(session, "calendar")
    override = session.get(CalendarOverride, day)
    if override is None:
        raise CalendarError({"day": _l("This day has no override.")})
    before = _state(day, override)
    session.delete(override)
    session.flush()
    _record(session, day, before, _state(day, None), actor_id, now)


def _state(day: date, override: CalendarOverride | None) -> dict[str, Any]:
    """What the calendar says of `day`, for the audit entry."""
    if override is not None:
        return {"kind": kind_of(override.is_working_day), "source": "override",
                "reason": override.note}
    name = _library_names(day.year, FALLBACK_HOLIDAY_LANGUAGE).get(day)
    return {"kind": kind_of(Calendar().is_working_day(day)), "source": "library",
            "reason": name}


def _record(session: Session, day: date, before: dict[str, Any], after: dict[str, Any],
            actor_id: int | None, now: datetime) -> None:
    audit.record(session, "calendar:changed", actor_id=actor_id,
                 subject=f"calendar:{day.isoformat()}",
                 data={"day": day.isoformat(), "from": before, "to": after}, now=now)


def year_of(session: Session, year: int, language: str) -> list[Month]:
    """The twelve months of `year`, each day marked working or not and why (holiday names
    in `language` where the library has it)."""
    overrides = {o.day: o for o in overrides_in(session, year)}
    calendar = Calendar({day: o.is_working_day for day, o in overrides.items()})
    names = _library_names(year, HOLIDAY_LANGUAGES.get(language, FALLBACK_HOLIDAY_LANGUAGE))
    weeks = stdlib_calendar.Calendar(firstweekday=stdlib_calendar.MONDAY)

    def describe(day: date) -> Day:
        # Working or not is asked of the same Calendar that deadlines use: one answer.
        is_working = calendar.is_working_day(day)
        override = overrides.get(day)
        if override is not None:
            return Day(day, is_working, Why.OVERRIDE, override.note)
        if day in names:
            return Day(day, is_working, Why.HOLIDAY, names[day])
        return Day(day, is_working, Why.WORKING if is_working else Why.WEEKEND, None)

    return [Month(month, [[describe(d) if d.month == month else None for d in week]
                          for week in weeks.monthdatescalendar(year, month)])
            for month in range(1, 13)]


def _library_names(year: int, language: str) -> dict[date, str]:
    """The library's named days off of one year (holidays and transferred days off)."""
    return dict(holidays.country_holidays("KZ", years=year, language=language).items())
