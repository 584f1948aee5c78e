"""Kazakh IIN: hard checks (length, digits, checksum) and soft warnings."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporting.iin import IINError, check_digit, iin_warnings, validate_iin


def _shifted(digits: str, zero: int) -> str:
    """The same number written with another script's digits, starting at code point `zero`."""
    return "".join(chr(zero + int(c)) for c in digits)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("250115601231", "250115601231"),
        ("240301504576", "240301504576"),
        ("851231300124", "851231300124"),
        ("250115600607", "250115600607"),  # first pass gives 10, second pass gives 7
        (" 250115 601231\n", "250115601231"),
        ("2501 1560 1231", "250115601231"),
    ],
)
def test_a_valid_iin_is_returned_as_twelve_plain_digits(raw: str, normalized: str) -> None:
    assert validate_iin(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("250115601232", "checksum"),
        ("250115600670", "checksum"),  # both passes give 10: never issued
        ("25011560123", "length"),
        ("2501156012311", "length"),
        ("", "length"),
        ("2501156O1231", "digits"),
        ("25011560123a", "digits"),
        ("250115-601231", "digits"),
        (_shifted("250115601231", 0xFF10), "digits"),  # full-width digits
        (_shifted("250115601231", 0x0660), "digits"),  # Arabic-Indic: str.isdigit() is True
    ],
)
def test_an_invalid_iin_is_rejected_with_the_reason_code(raw: str, code: str) -> None:
    with pytest.raises(IINError) as caught:
        validate_iin(raw)
    assert caught.value.code == code
    assert str(caught.value).startswith("IIN ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("first11", "expected"),
    [
        ("25011560123", 1),
        ("24030150457", 6),
        ("85123130012", 4),
        ("25011560060", 7),
        ("25011560067", None),
    ],
)
def test_check_digit_uses_the_second_pass_and_gives_none_when_both_fail(
    first11: str, expected: int | None
) -> None:
    assert check_digit(first11) == expected


@pytest.mark.parametrize(("first11", "code"), [("2501156012", "length"), ("2501156012x", "digits")])
def test_check_digit_refuses_anything_but_eleven_digits(first11: str, code: str) -> None:
    with pytest.raises(IINError) as caught:
        check_digit(first11)
    assert caught.value.code == code


@settings(database=None)  # keep Hypothesis from writing a .hypothesis/ directory into the repo
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_exactly_the_computed_check_digit_completes_a_prefix(prefix: str) -> None:
    expected = check_digit(prefix)
    for last in range(10):
        candidate = f"{prefix}{last}"
        if last == expected:
            assert validate_iin(candidate) == candidate
        else:
            with pytest.raises(IINError) as caught:
                validate_iin(candidate)
            assert caught.value.code == "checksum"


@pytest.mark.parametrize(
    ("iin", "birth", "sex", "warnings"),
    [
        # 250115601231: 15 Jan 2025, digit 6 = 2000s female
        ("250115601231", date(2025, 1, 15), "female", []),
        ("250115601231", date(2025, 1, 16), "female", ["birth_date_mismatch"]),
        ("250115601231", date(2025, 1, 15), "male", ["sex_mismatch"]),
        ("250115601231", date(1925, 1, 15), "male", ["birth_date_mismatch", "sex_mismatch"]),
        ("250115601231", None, "unknown", []),
        ("250115601231", None, None, []),
        # 851231300124: 31 Dec 1985, digit 3 = 1900s male; the century digit matters
        ("851231300124", date(1985, 12, 31), "male", []),
        ("851231300124", date(2085, 12, 31), "male", ["birth_date_mismatch"]),
        ("851231300124", None, "female", ["sex_mismatch"]),
        # digits 1 and 4: 1800s male, 1900s female
        ("991231101237", date(1899, 12, 31), "male", []),
        ("991231101237", date(1999, 12, 31), "female", ["birth_date_mismatch", "sex_mismatch"]),
        ("991231401236", date(1999, 12, 31), "female", []),
        # impossible encoded dates (month 13; 29 Feb in a common year) only warn against a birth
        ("251315601231", date(2025, 1, 15), "female", ["birth_date_mismatch"]),
        ("251315601231", None, "female", []),
        ("250229601231", date(2025, 3, 1), None, ["birth_date_mismatch"]),
        ("240229601236", date(2024, 2, 29), None, []),
        # digit 7 of 0, 7 or 9 carries no century or sex: never a warning
        ("250115001233", date(1990, 6, 1), "male", []),
        ("250115701238", date(1990, 6, 1), "female", []),
        ("250115901230", date(1990, 6, 1), "male", []),
    ],
)
def test_warnings_flag_birth_date_and_sex_that_disagree_with_the_iin(
    iin: str, birth: date | None, sex: str | None, warnings: list[str]
) -> None:
    assert iin_warnings(iin, birth=birth, sex=sex) == warnings


def test_warnings_refuse_an_iin_that_fails_its_hard_checks() -> None:
    with pytest.raises(IINError) as caught:
        iin_warnings("250115601232", birth=None, sex=None)
    assert caught.value.code == "checksum"


def test_warnings_refuse_a_sex_outside_the_report_vocabulary() -> None:
    with pytest.raises(ValueError, match="sex must be one of"):
        iin_warnings("250115601231", birth=None, sex="F")
