"""Deadline policy (PRODUCT §5) and exact / civil-law working-day arithmetic on the KZ calendar."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from importlib import resources
from zoneinfo import ZoneInfo

import holidays


def _current_almaty(zone: ZoneInfo) -> ZoneInfo:
    # A machine tz database older than 2024a still puts Almaty on UTC+6; deadlines must not
    # depend on that, so fall back to the pinned PyPI tzdata copy.
    if zone.utcoffset(datetime(2024, 6, 1)) == timedelta(hours=5):
        return zone
    with resources.files("tzdata").joinpath("zoneinfo/Asia/Almaty").open("rb") as tzfile:
        return ZoneInfo.from_file(tzfile, key="Asia/Almaty")


ALMATY = _current_almaty(ZoneInfo("Asia/Almaty"))
CLOCK_SKEW = timedelta(minutes=2)


class Unit(StrEnum):
    """Units of a policy duration, spelled as in policy text."""

    SECONDS = "s"
    MINUTES = "min"
    HOURS = "h"
    DAYS = "d"
    WORKING_DAYS = "wd"


_EXACT_UNITS = {
    Unit.SECONDS: timedelta(seconds=1),
    Unit.MINUTES: timedelta(minutes=1),
    Unit.HOURS: timedelta(hours=1),
}
# Bounds arithmetic (timedelta overflow) and the working-day walk; no rule needs a year.
_MAX_SPAN = timedelta(days=366)
_DURATION_RE = re.compile(r"([0-9]+)\s*(s|min|h|d|wd)")


class DurationError(ValueError):
    """Text or values that do not describe a policy duration."""


@dataclass(frozen=True)
class Duration:
    """A policy duration: exact (s, min, h) or civil-law (d, wd)."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise DurationError(f"duration amount must be a whole number >= 1, not {self.amount!r}")
        try:
            unit = Unit(self.unit)
        except ValueError:
            raise DurationError(f"unknown duration unit {self.unit!r}") from None
        # Frozen: normalise a plain "h" to Unit.HOURS so equality and str() stay canonical.
        object.__setattr__(self, "unit", unit)
        if self.amount * _EXACT_UNITS.get(unit, timedelta(days=1)) > _MAX_SPAN:
            raise DurationError(f"duration {self} is longer than {_MAX_SPAN.days} days")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse "90s", "30min", "24h", "3d" or "3wd" (surrounding spaces allowed)."""
        match = _DURATION_RE.fullmatch(text.strip())
        if match is None:
            raise DurationError(f"not a duration: {text!r} (expected e.g. 30min, 24h, 3wd)")
        return cls(int(match.group(1)), Unit(match.group(2)))

    def __str__(self) -> str:
        return f"{self.amount}{self.unit.value}"


class Event(StrEnum):
    """What starts a deadline's clock."""

    DISCOVERED = "discovered"
    NOTICE_SENT = "notice_sent"
    NOTICE_ACKNOWLEDGED = "notice_acknowledged"


BASIS_LENGTH = 500  # the longest legal basis a rule may state (a deadline row keeps it)


@dataclass(frozen=True)
class Rule:
    """One deadline of the policy and its legal standing."""

    name: str
    starts_on: Event
    duration: Duration
    responsible: str
    basis: str
    is_basis_verified: bool
    needs_risk_flag: bool = False


# The two reporting rules: a facility's own target and the law's outer bound. Both run from
# discovery and are met when a guardianship agency is told (the report carries their outcome).
REPORTING_TARGET, REPORTING_STATUTORY = ("report_to_guardianship",
                                         "report_to_guardianship_statutory")

DEFAULT_POLICY: tuple[Rule, ...] = (
    Rule(
        name=REPORTING_TARGET,
        starts_on=Event.DISCOVERED,
        duration=Duration(1, Unit.HOURS),
        responsible="facility",
        basis="Marriage and Family Code art. 118; Law 110-VIII (internal target: 1 hour)",
        is_basis_verified=False,
    ),
    Rule(
        name=REPORTING_STATUTORY,
        starts_on=Event.DISCOVERED,
        duration=Duration(3, Unit.WORKING_DAYS),
        responsible="facility",
        basis="Marriage and Family Code art. 118 (statutory outer bound)",
        is_basis_verified=False,
    ),
    Rule(
        name="acknowledge_notice",
        starts_on=Event.NOTICE_SENT,
        duration=Duration(30, Unit.MINUTES),
        responsible="agency",
        basis="internal service level",
        is_basis_verified=True,
    ),
    Rule(
        name="examine_child",
        starts_on=Event.NOTICE_SENT,
        duration=Duration(3, Unit.WORKING_DAYS),
        responsible="guardianship agency",
        basis="Marriage and Family Code art. 118 (1998 predecessor art. 101: 3 days)",
        is_basis_verified=False,
    ),
    Rule(
        name="inform_police",
        starts_on=Event.DISCOVERED,
        duration=Duration(24, Unit.HOURS),
        responsible="facility",
        basis="Criminal Code art. 135",
        is_basis_verified=True,
        needs_risk_flag=True,
    ),
    Rule(
        name="register_in_data_bank",
        starts_on=Event.NOTICE_ACKNOWLEDGED,
        duration=Duration(1, Unit.WORKING_DAYS),
        responsible="guardianship agency",
        basis=(
            "order of 29 Aug 2025 amending the rules on registering children "
            "left without parental care"
        ),
        is_basis_verified=False,
    ),
)


class DeadlineState(StrEnum):
    """Where a deadline stands."""

    PENDING = "pending"
    MET = "met"
    MET_LATE = "met_late"
    OVERDUE = "overdue"


@functools.cache
def _kz_holidays() -> holidays.HolidayBase:
    # One object per process; it adds years lazily as dates are asked about.
    return holidays.country_holidays("KZ")


# The library marks a year as present *before* filling it in, so an unguarded concurrent
# lookup could see a half-built year and call a holiday a working day.
_EXPANSION_LOCK = threading.Lock()
_READY_YEARS: set[int] = set()


def _library_is_working_day(day: date) -> bool:
    kz = _kz_holidays()
    if day.year not in _READY_YEARS:
        with _EXPANSION_LOCK:
            if day.year not in _READY_YEARS:
                kz.get(day)  # expands the year
                _READY_YEARS.add(day.year)
    return bool(kz.is_working_day(day))


@dataclass(frozen=True)
class Calendar:
    """The KZ working-day calendar, with admin overrides (True = working) winning."""

    overrides: Mapping[date, bool] = field(default_factory=dict)

    def is_working_day(self, day: date) -> bool:
        """Return whether `day` is a working day in Kazakhstan, admin overrides first."""
        if isinstance(day, datetime):
            # A datetime would never match the date keys of overrides, and its date is zone-bound.
            raise TypeError("is_working_day takes a date, not a datetime")
        override = self.overrides.get(day)
        return _library_is_working_day(day) if override is None else override


def utc(moment: datetime) -> datetime:
    """Return a tz-aware moment in UTC; naive moments raise ValueError."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def to_local(moment: datetime) -> datetime:
    """Return a tz-aware moment in Asia/Almaty; naive moments raise ValueError."""
    return utc(moment).astimezone(ALMATY)


def start_of_local_day(day: date) -> datetime:
    """00:00 of `day` in Almaty, as UTC."""
    return datetime.combine(day, time(0), tzinfo=ALMATY).astimezone(UTC)


def _end_of_local_day(day: date) -> datetime:
    # 24:00 of `day` is 00:00 of the next; built in local time so the offset is that day's.
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ALMATY).astimezone(UTC)


def due_at(start: datetime, duration: Duration, calendar: Calendar) -> datetime:
    """Return the UTC moment at which a deadline of `duration` from `start` expires."""
    start_utc = utc(start)
    exact = _EXACT_UNITS.get(duration.unit)
    if exact is not None:
        # Added in UTC: aware arithmetic in a named zone is wall-clock, not elapsed, time.
        return start_utc + duration.amount * exact
    day = to_local(start_utc).date()
    if duration.unit is Unit.DAYS:
        day += timedelta(days=duration.amount)
        while not calendar.is_working_day(day):
            day += timedelta(days=1)
    else:
        for _ in range(duration.amount):
            day += timedelta(days=1)
            while not calendar.is_working_day(day):
                day += timedelta(days=1)
    return _end_of_local_day(day)


def deadline_state(due: datetime, met: datetime | None, now: datetime) -> DeadlineState:
    """Classify a deadline as met, met late, overdue or still pending at `now`."""
    if met is not None:
        return DeadlineState.MET if met <= due else DeadlineState.MET_LATE
    return DeadlineState.OVERDUE if now > due else DeadlineState.PENDING


def reporting_time(discovered_at: datetime, filed_at: datetime, received_at: datetime) -> datetime:
    """Return the UTC moment a report counts as made: the phone's clock if plausible, else ours."""
    filed, received = utc(filed_at), utc(received_at)
    # A phone clock may run a little fast, but a report cannot predate what it reports.
    if utc(discovered_at) <= filed <= received + CLOCK_SKEW:
        return filed
    return received


def exact_seconds(duration: Duration) -> int | None:
    """The length of an exact duration (s/min/h) in seconds; None for calendar durations."""
    unit = _EXACT_UNITS.get(duration.unit)
    return int((unit * duration.amount).total_seconds()) if unit is not None else None
