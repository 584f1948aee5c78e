"""Deadline policy and civil-law / working-day arithmetic on the real KZ calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reporting.deadlines import (
    ALMATY,
    CLOCK_SKEW,
    DEFAULT_POLICY,
    Calendar,
    DeadlineState,
    Duration,
    DurationError,
    Event,
    Unit,
    _current_almaty,
    deadline_state,
    due_at,
    reporting_time,
    to_local,
    utc,
)

PLAIN = Calendar()


def z(text: str) -> datetime:
    """An exact UTC instant from ISO text."""
    return datetime.fromisoformat(text).astimezone(UTC)


def almaty(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A wall-clock moment in Almaty."""
    return datetime(year, month, day, hour, minute, tzinfo=ALMATY)


@pytest.mark.parametrize(
    ("text", "amount", "unit", "canonical"),
    [
        ("90s", 90, Unit.SECONDS, "90s"),
        ("30min", 30, Unit.MINUTES, "30min"),
        ("24h", 24, Unit.HOURS, "24h"),
        ("3d", 3, Unit.DAYS, "3d"),
        ("3wd", 3, Unit.WORKING_DAYS, "3wd"),
        (" 3 wd\t", 3, Unit.WORKING_DAYS, "3wd"),
        ("030min", 30, Unit.MINUTES, "30min"),
    ],
)
def test_a_duration_parses_and_prints_canonically(
    text: str, amount: int, unit: Unit, canonical: str
) -> None:
    parsed = Duration.parse(text)
    assert parsed == Duration(amount, unit)
    assert str(parsed) == canonical
    assert Duration.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "0h",
        "h",
        "3 weeks",
        "-1d",
        "",
        "   ",
        "3",
        "1.5h",
        "3m",
        "3WD",
        "3wdx",
        "3 d d",
        "\u0663d",
        "367d",
        "10000h",
    ],
)
def test_a_duration_that_is_not_a_positive_known_span_is_refused(text: str) -> None:
    with pytest.raises(DurationError):
        Duration.parse(text)


@pytest.mark.parametrize(("amount", "unit"), [(0, Unit.HOURS), (True, Unit.DAYS), (3, "weeks")])
def test_a_duration_built_directly_is_validated_too(amount: int, unit: Unit) -> None:
    with pytest.raises(DurationError):
        Duration(amount, unit)


def test_the_default_policy_holds_the_six_rules_of_the_spec_in_order() -> None:
    assert [
        (
            r.name,
            r.starts_on,
            str(r.duration),
            r.responsible,
            r.is_basis_verified,
            r.needs_risk_flag,
        )
        for r in DEFAULT_POLICY
    ] == [
        ("report_to_guardianship", Event.DISCOVERED, "1h", "facility", False, False),
        ("report_to_guardianship_statutory", Event.DISCOVERED, "3wd", "facility", False, False),
        ("acknowledge_notice", Event.NOTICE_SENT, "30min", "agency", True, False),
        ("examine_child", Event.NOTICE_SENT, "3wd", "guardianship agency", False, False),
        ("inform_police", Event.DISCOVERED, "24h", "facility", True, True),
        (
            "register_in_data_bank",
            Event.NOTICE_ACKNOWLEDGED,
            "1wd",
            "guardianship agency",
            False,
            False,
        ),
    ]


@pytest.mark.parametrize(
    ("index", "basis_part"),
    [
        (0, "Marriage and Family Code art. 118; Law 110-VIII"),
        (1, "Marriage and Family Code art. 118 (statutory outer bound)"),
        (2, "internal service level"),
        (3, "Marriage and Family Code art. 118"),
        (4, "Criminal Code art. 135"),
        (5, "order of 29 Aug 2025"),
    ],
)
def test_each_default_rule_states_its_legal_basis(index: int, basis_part: str) -> None:
    assert basis_part in DEFAULT_POLICY[index].basis


@pytest.mark.parametrize(
    ("day", "working"),
    [
        # holidays 0.109, KZ 2026: Nauryz 21-23 March; 21 and 22 fall on a weekend, so the
        # library observes them on Tue 24 and Wed 25 as well.
        (date(2026, 3, 20), True),
        (date(2026, 3, 23), False),
        (date(2026, 3, 24), False),
        (date(2026, 3, 25), False),
        (date(2026, 3, 26), True),
        # KZ 2025: Fri 3 January was a day off, worked on Sunday 5 January instead.
        (date(2025, 1, 3), False),
        (date(2025, 1, 4), False),
        (date(2025, 1, 5), True),
        (date(2025, 1, 6), True),
        # the 2026 constitution dropped 30 August (a Sunday) and its Monday observance
        (date(2026, 8, 31), True),
    ],
)
def test_the_calendar_follows_the_kz_holiday_library(day: date, working: bool) -> None:
    assert PLAIN.is_working_day(day) is working


def test_the_calendar_takes_a_date_not_a_datetime() -> None:
    with pytest.raises(TypeError):
        PLAIN.is_working_day(datetime(2026, 2, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("start", "duration", "overrides", "due"),
    [
        # 3 working days from a Sunday notice end at the end of Wednesday (24:00 = 19:00Z)
        (almaty(2026, 2, 1, 10, 0), "3wd", {}, "2026-02-04T19:00Z"),
        # Sunday 00:30 in Almaty is still Saturday in UTC: the local date counts
        (z("2026-01-31T19:30Z"), "3wd", {}, "2026-02-04T19:00Z"),
        (z("2026-01-31T18:30Z"), "3wd", {}, "2026-02-04T19:00Z"),  # Saturday 23:30 local
        # a weekday made a day off pushes by one day; a Saturday made working pulls
        (almaty(2026, 2, 1, 10, 0), "3wd", {date(2026, 2, 3): False}, "2026-02-05T19:00Z"),
        (almaty(2026, 2, 6, 10, 0), "1wd", {}, "2026-02-09T19:00Z"),
        (almaty(2026, 2, 6, 10, 0), "1wd", {date(2026, 2, 7): True}, "2026-02-07T19:00Z"),
        # Nauryz 2026: from Friday 20 March, 3wd are Thu 26, Fri 27, Mon 30 March
        (almaty(2026, 3, 20, 15, 0), "3wd", {}, "2026-03-30T19:00Z"),
        # an override beats the library: Monday 23 March declared a working day
        (almaty(2026, 3, 20, 15, 0), "3wd", {date(2026, 3, 23): True}, "2026-03-27T19:00Z"),
        # the worked Sunday 5 January 2025 is a working day
        (almaty(2025, 1, 4, 9, 0), "1wd", {}, "2025-01-05T19:00Z"),
        (almaty(2025, 1, 2, 9, 0), "2wd", {}, "2025-01-06T19:00Z"),
        # calendar days: ordinary, ending on a Saturday (-> end of Monday), ending in Nauryz
        (almaty(2026, 2, 5, 10, 0), "1d", {}, "2026-02-06T19:00Z"),
        (almaty(2026, 2, 6, 10, 0), "1d", {}, "2026-02-09T19:00Z"),
        (almaty(2026, 2, 4, 23, 59), "3d", {}, "2026-02-09T19:00Z"),
        (almaty(2026, 3, 20, 15, 0), "3d", {}, "2026-03-26T19:00Z"),
        # 1 March 2024: UTC+6 -> UTC+5; midnight takes the offset in force on that night
        (almaty(2024, 2, 27, 12, 0), "1d", {}, "2024-02-28T18:00Z"),
        (almaty(2024, 2, 27, 12, 0), "1wd", {}, "2024-02-28T18:00Z"),
        (almaty(2024, 2, 28, 12, 0), "1d", {}, "2024-02-29T19:00Z"),  # 29 Feb lasted 25 hours
        (almaty(2024, 2, 28, 12, 0), "1wd", {}, "2024-02-29T19:00Z"),
        (almaty(2024, 3, 5, 12, 0), "1d", {}, "2024-03-06T19:00Z"),
        (almaty(2024, 3, 5, 12, 0), "1wd", {}, "2024-03-06T19:00Z"),
    ],
)
def test_day_durations_end_at_local_midnight_after_the_last_counted_day(
    start: datetime, duration: str, overrides: dict[date, bool], due: str
) -> None:
    result = due_at(start, Duration.parse(duration), Calendar(overrides))
    assert result == z(due)
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (z("2026-03-20T10:00Z"), "90s", "2026-03-20T10:01:30Z"),
        (z("2026-03-20T10:00Z"), "30min", "2026-03-20T10:30Z"),
        (z("2026-03-20T10:00Z"), "24h", "2026-03-21T10:00Z"),  # into Nauryz, no matter
        (almaty(2026, 3, 22, 12, 0), "1h", "2026-03-22T08:00Z"),
        # elapsed time across the 2024 offset change, not wall-clock time
        (almaty(2024, 2, 29, 12, 0), "24h", "2024-03-01T06:00Z"),
    ],
)
def test_exact_durations_ignore_the_calendar(start: datetime, duration: str, due: str) -> None:
    every_day_off = Calendar({start.date() + timedelta(days=n): False for n in range(-1, 3)})
    assert due_at(start, Duration.parse(duration), PLAIN) == z(due)
    assert due_at(start, Duration.parse(duration), every_day_off) == z(due)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        due_at(datetime(2026, 2, 1, 10, 0), Duration.parse("3wd"), PLAIN)


DUE = z("2026-02-04T19:00Z")
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("met", "now", "state"),
    [
        (DUE - timedelta(hours=5), DUE + timedelta(days=9), DeadlineState.MET),
        (DUE, DUE + SECOND, DeadlineState.MET),
        (DUE + SECOND, DUE + SECOND, DeadlineState.MET_LATE),
        (None, DUE + SECOND, DeadlineState.OVERDUE),
        (None, DUE, DeadlineState.PENDING),
        (None, DUE - timedelta(days=1), DeadlineState.PENDING),
    ],
)
def test_deadline_state_compares_met_or_now_with_due(
    met: datetime | None, now: datetime, state: DeadlineState
) -> None:
    assert deadline_state(DUE, met, now) is state


DISCOVERED = z("2026-02-01T08:00Z")
RECEIVED = z("2026-02-01T09:00Z")


@pytest.mark.parametrize(
    ("filed", "judged"),
    [
        (z("2026-02-01T08:20Z"), z("2026-02-01T08:20Z")),  # offline 40 minutes: phone's clock
        (DISCOVERED, DISCOVERED),
        (RECEIVED + CLOCK_SKEW, RECEIVED + CLOCK_SKEW),
        (RECEIVED + CLOCK_SKEW + SECOND, RECEIVED),  # phone clock too far ahead
        (DISCOVERED - SECOND, RECEIVED),  # filed before the discovery it reports
        (almaty(2026, 2, 1, 13, 20), z("2026-02-01T08:20Z")),  # any zone, answered in UTC
    ],
)
def test_reporting_time_trusts_the_phone_only_within_the_skew(
    filed: datetime, judged: datetime
) -> None:
    result = reporting_time(DISCOVERED, filed, RECEIVED)
    assert result == judged
    assert result.tzinfo is UTC


def test_clock_skew_is_two_minutes() -> None:
    assert timedelta(minutes=2) == CLOCK_SKEW


def test_utc_and_to_local_convert_aware_moments_and_refuse_naive_ones() -> None:
    moment = z("2026-02-01T19:30Z")
    assert to_local(moment).isoformat() == "2026-02-02T00:30:00+05:00"
    assert to_local(moment).tzinfo is ALMATY
    assert utc(to_local(moment)) == moment
    assert utc(to_local(moment)).tzinfo is UTC
    assert to_local(z("2024-02-15T19:30Z")).isoformat() == "2024-02-16T01:30:00+06:00"
    for convert in (utc, to_local):
        with pytest.raises(ValueError, match="naive"):
            convert(datetime(2026, 2, 1, 19, 30))


def test_a_stale_machine_zone_for_almaty_is_replaced_by_the_pinned_tzdata() -> None:
    assert _current_almaty(ALMATY) is ALMATY
    replaced = _current_almaty(ZoneInfo("Etc/GMT-6"))  # what pre-2024a tzdata said for 2024
    assert str(replaced) == "Asia/Almaty"
    assert replaced.utcoffset(datetime(2024, 6, 1)) == timedelta(hours=5)
    assert replaced.utcoffset(datetime(2024, 2, 1)) == timedelta(hours=6)
