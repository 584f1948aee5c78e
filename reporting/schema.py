"""Schema fields: one declarative schema validates an API body or a form post and writes its
part of the OpenAPI document. Errors are collected per field path ("child.iin")."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l

from .deadlines import Duration
from .errors import ValidationError
from .iin import IINError, validate_iin
from .vocabulary import Term

Errors = dict[str, Any]


class Invalid(Exception):
    """Raised by a field for its own value; the Obj collects it under the field's path."""

    def __init__(self, message: Any) -> None:
        super().__init__(str(message))
        self.message = message


class Field:
    """Base field: `required`, a description for the OpenAPI document."""

    json_type: str = "string"

    def __init__(self, *, required: bool = False, description: str = "") -> None:
        self.required = required
        self.description = description

    def check(self, value: Any) -> Any:
        """Return the cleaned value or raise Invalid."""
        return value

    def json_schema(self) -> dict[str, Any]:
        """This field as JSON Schema (OpenAPI 3.1 dialect)."""
        schema: dict[str, Any] = {"type": self.json_type}
        if self.description:
            schema["description"] = self.description
        return schema


# Control characters other than tab and newline, and lone surrogates (not Unicode at all):
# PostgreSQL refuses NUL in text, and none of them belongs in a report.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
# Dates far outside any report's life are typing errors, and beyond year 1 or 9999 the
# arithmetic on them overflows.
EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)


def text(value: Any) -> str:
    """`value` if it is text a person could have typed, else Invalid."""
    if not isinstance(value, str):
        raise Invalid(_l("Must be text."))
    if _NOT_TEXT.search(value):
        raise Invalid(_l("Contains characters that are not allowed."))
    return value


def _within_bounds(day: date) -> None:
    if not EARLIEST <= day <= LATEST:
        raise Invalid(_l("Must be between %(lo)s and %(hi)s.", lo=EARLIEST.isoformat(),
                         hi=LATEST.isoformat()))


class Str(Field):
    def __init__(self, *, max_length: int = 255, pattern: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, value: Any) -> Any:
        value = text(value).strip()
        if not value and self.required:  # spaces alone say nothing: still missing
            raise Invalid(_l("This field is required."))
        if len(value) > self.max_length:
            raise Invalid(_l("At most %(n)d characters.", n=self.max_length))
        if self.pattern and not self.pattern.fullmatch(value):
            raise Invalid(_l("Not in the expected format."))
        return value

    def json_schema(self) -> dict[str, Any]:
        schema = super().json_schema() | {"maxLength": self.max_length}
        if self.pattern:
            schema["pattern"] = f"^{self.pattern.pattern}$"
        return schema


class UUIDField(Field):
    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid(_l("Must be a UUID."))
        try:
            return str(uuid.UUID(value))
        except ValueError as exc:
            raise Invalid(_l("Must be a UUID.")) from exc

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"format": "uuid"}


class DateTimeField(Field):
    """ISO 8601 with an explicit offset; returned in UTC."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid(_l("Must be a date and time (ISO 8601)."))
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise Invalid(_l("Must be a date and time (ISO 8601).")) from exc
        if parsed.tzinfo is None:
            raise Invalid(_l("Must include a time zone offset."))
        _within_bounds(parsed.date())
        return parsed.astimezone(UTC)

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"format": "date-time"}


class DateField(Field):
    def check(self, value: Any) -> Any:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            parsed = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise Invalid(_l("Must be a date (YYYY-MM-DD).")) from exc
        _within_bounds(parsed)
        return parsed

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"format": "date"}


class IntField(Field):
    json_type = "integer"

    def __init__(self, *, minimum: int, maximum: int, from_text: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum
        self.from_text = from_text  # query strings and form posts carry numbers as text

    def check(self, value: Any) -> Any:
        if self.from_text and isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(_l("Must be a whole number."))
        if not self.minimum <= value <= self.maximum:
            raise Invalid(_l("Must be between %(lo)d and %(hi)d.", lo=self.minimum,
                             hi=self.maximum))
        return value

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"minimum": self.minimum, "maximum": self.maximum}


class Flag(Field):
    """Yes or no: JSON true/false, or a form's checkbox ("on" when ticked; an unticked box
    sends nothing, so a form's view reads an absent flag as no)."""

    json_type = "boolean"
    _TEXT = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}

    def check(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in self._TEXT:
            return self._TEXT[value.strip().lower()]
        raise Invalid(_l("Must be yes or no."))


class DurationField(Field):
    """A policy duration as written in the command line: 90s, 30min, 24h, 3d, 3wd."""

    max_length = 16

    def check(self, value: Any) -> Any:
        value = text(value)
        try:
            if len(value) > self.max_length:
                raise ValueError(value)  # a thousand digits would be slow to read as a number
            return Duration.parse(value)
        except ValueError as exc:
            raise Invalid(_l("Write a duration such as 90s, 30min, 24h, 3d or 3wd (working "
                             "days), of at most a year.")) from exc

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"maxLength": self.max_length,
                                        "pattern": r"^\s*[0-9]+\s*(s|min|h|d|wd)\s*$"}


class Choice(Field):
    """One value of a vocabulary (returned as its enum member)."""

    def __init__(self, vocabulary: type[Term], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabulary = vocabulary
        self.choices = vocabulary.values()

    def check(self, value: Any) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid(_l("Must be one of: %(choices)s.", choices=", ".join(self.choices)))
        return self.vocabulary(value)

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"enum": list(self.choices)}


class IINField(Field):
    """Length, digits and checksum are errors; birth date or sex mismatches are warnings."""

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid(_l("Must be text."))
        try:
            return validate_iin(value)
        except IINError as exc:
            raise Invalid({"length": _l("An IIN has exactly 12 digits."),
                           "digits": _l("An IIN has digits only."),
                           "checksum": _l("This IIN's check digit is wrong: please re-check "
                                          "the number.")}[exc.code]) from exc

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"pattern": "^[0-9]{12}$"}


class ListOf(Field):
    json_type = "array"

    def __init__(self, item: Field, *, max_items: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item, self.max_items = item, max_items

    def check(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise Invalid(_l("Must be a list."))
        if len(value) > self.max_items:
            raise Invalid(_l("At most %(n)d items.", n=self.max_items))
        cleaned = [self.item.check(v) for v in value]
        return list(dict.fromkeys(cleaned))  # order kept, duplicates dropped

    def json_schema(self) -> dict[str, Any]:
        return super().json_schema() | {"items": self.item.json_schema(), "uniqueItems": True,
                                        "maxItems": self.max_items}


class Obj(Field):
    """A JSON object with known fields only: an unknown field is an error, not ignored.

    `refused` names fields the object knows but never takes, each with the message that
    says why (clearer than "Unknown field."); they are left out of the JSON Schema.
    `is_clearable`: a field (not a nested object) sent as null or empty text is kept in the
    cleaned value as None, meaning "clear it", instead of being left out.
    """

    json_type = "object"

    def __init__(self, fields: Mapping[str, Field], *, name: str | None = None,
                 refused: Mapping[str, Any] | None = None, is_clearable: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields = dict(fields)
        self.name = name  # its name among the OpenAPI document's components
        self.refused = dict(refused or {})
        self.is_clearable = is_clearable

    def clean(self, value: Any) -> dict[str, Any]:
        """The cleaned value, or ValidationError naming every bad field."""
        cleaned, errors = self.validate(value)
        if errors:
            raise ValidationError(errors)
        return cleaned

    def validate(self, value: Any, prefix: str = "") -> tuple[dict[str, Any], Errors]:
        """Clean `value`; return (cleaned, errors by dotted path)."""
        if not isinstance(value, dict):
            return {}, {prefix.rstrip(".") or "body": _l("Must be a JSON object.")}
        errors: Errors = {}
        cleaned: dict[str, Any] = {}
        for key in value:
            if key in self.refused:
                errors[f"{prefix}{key}"] = self.refused[key]
            elif key not in self.fields:
                errors[f"{prefix}{key}"] = _l("Unknown field.")
        for name, field in self.fields.items():
            path = f"{prefix}{name}"
            raw = value.get(name)
            if raw is None or raw == "":
                if field.required:
                    errors[path] = _l("This field is required.")
                elif self.is_clearable and name in value and not isinstance(field, Obj):
                    cleaned[name] = None
                continue
            try:
                if isinstance(field, Obj):
                    sub, sub_errors = field.validate(raw, f"{path}.")
                    errors.update(sub_errors)
                    if not sub_errors:
                        cleaned[name] = sub
                else:
                    cleaned[name] = field.check(raw)
            except Invalid as exc:
                errors[path] = exc.message
        return cleaned, errors

    def json_schema(self) -> dict[str, Any]:
        schema = super().json_schema() | {
            "properties": {k: self._property_schema(f) for k, f in self.fields.items()},
            "additionalProperties": False,
        }
        required = [k for k, f in self.fields.items() if f.required]
        if required:
            schema["required"] = required
        return schema

    def paths(self, prefix: str = "") -> list[str]:
        """Every field's dotted path ("child.iin"), nested objects' fields in place of them."""
        found = []
        for name, field in self.fields.items():
            if isinstance(field, Obj):
                found += field.paths(f"{prefix}{name}.")
            else:
                found.append(f"{prefix}{name}")
        return found

    def _property_schema(self, field: Field) -> dict[str, Any]:
        schema = field.json_schema()
        if self.is_clearable and not isinstance(field, Obj):
            return {"anyOf": [schema, {"type": "null"}]}
        return schema
