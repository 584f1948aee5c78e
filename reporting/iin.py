"""Kazakh individual identification number (IIN): checksum validation and soft consistency checks.

Only length, digits and checksum are hard errors (PRODUCT §3). Since 2013 the date and sex
digits need not match the person, so a mismatch is only ever a warning.
"""

from __future__ import annotations

from datetime import date

from .vocabulary import Sex

_LENGTH = 12
_DIGITS = frozenset("0123456789")
_FIRST_PASS_WEIGHTS = tuple(range(1, 12))
_SECOND_PASS_WEIGHTS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)
# Digit 7 encodes century and sex; 0 and 7-9 carry no such meaning, so they are never checked.
_CENTURY_BY_DIGIT = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}


class IINError(ValueError):
    """An IIN that can never be valid; `code` is "length", "digits" or "checksum"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _require_digits(value: str, length: int) -> None:
    # Checked with an explicit ASCII set: str.isdigit() also accepts "²" and Arabic-Indic digits.
    if not set(value) <= _DIGITS:
        raise IINError("digits", "IIN must contain only the digits 0-9")
    if len(value) != length:
        raise IINError("length", f"IIN must be {length} digits long, not {len(value)}")


def check_digit(first11: str) -> int | None:
    """Return the check digit for the first 11 digits, or None if no IIN can end them."""
    _require_digits(first11, _LENGTH - 1)
    digits = [int(c) for c in first11]
    for weights in (_FIRST_PASS_WEIGHTS, _SECOND_PASS_WEIGHTS):
        remainder = sum(w * d for w, d in zip(weights, digits, strict=True)) % 11
        if remainder != 10:
            return remainder
    return None


def validate_iin(value: str) -> str:
    """Return the IIN as 12 plain digits, or raise IINError."""
    # Pasted or dictated numbers arrive grouped ("250115 601231"); spacing is never meaningful.
    normalized = "".join(value.split())
    _require_digits(normalized, _LENGTH)
    expected = check_digit(normalized[:-1])
    if expected is None:
        raise IINError("checksum", "IIN is not a number that is ever issued (no check digit fits)")
    if int(normalized[-1]) != expected:
        raise IINError("checksum", "IIN check digit does not match; please re-check the number")
    return normalized


def _encoded_birth_date(iin: str, century: int) -> date | None:
    try:
        return date(century + int(iin[0:2]), int(iin[2:4]), int(iin[4:6]))
    except ValueError:
        return None


def iin_warnings(iin: str, *, birth: date | None, sex: str | None) -> list[str]:
    """Return soft mismatches between a valid IIN and the given birth date and sex."""
    if sex is not None and sex not in Sex.values():
        raise ValueError(f"sex must be one of {list(Sex.values())}, not {sex!r}")
    normalized = validate_iin(iin)
    century_digit = int(normalized[6])
    century = _CENTURY_BY_DIGIT.get(century_digit)
    if century is None:
        return []
    warnings: list[str] = []
    if birth is not None and _encoded_birth_date(normalized, century) != birth:
        warnings.append("birth_date_mismatch")
    if sex in {"female", "male"} and ("male" if century_digit % 2 else "female") != sex:
        warnings.append("sex_mismatch")
    return warnings
