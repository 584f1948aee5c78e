"""The deadline policy in force (versioned data) and the working-day calendar."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Integer, String, Text, cast, func, select
from sqlalchemy.orm import Session

from . import audit
from .db import take_turns
from .deadlines import BASIS_LENGTH, DEFAULT_POLICY, Calendar, Duration, Event, Rule
from .errors import PolicyError
from .models import CalendarOverride, PolicyVersion, User, table_of

NOTE_LENGTH = 255  # policy_versions.note


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """A rule as stored in a policy version."""
    return {"name": rule.name, "starts_on": rule.starts_on.value, "duration": str(rule.duration),
            "responsible": rule.responsible, "basis": rule.basis,
            "verified": rule.is_basis_verified, "needs_risk_flag": rule.needs_risk_flag}


def rule_from_dict(data: dict[str, Any]) -> Rule:
    """The inverse of rule_to_dict."""
    return Rule(name=data["name"], starts_on=Event(data["starts_on"]),
                duration=Duration.parse(data["duration"]), responsible=data["responsible"],
                basis=data["basis"], is_basis_verified=bool(data["verified"]),
                needs_risk_flag=bool(data.get("needs_risk_flag", False)))


def ensure_default_policy(session: Session, now: datetime) -> PolicyVersion:
    """Create version 1 from the defaults when no policy exists yet; add, as a new version,
    any default rule that a later release brought and the policy in force lacks."""
    version = latest_version(session)
    if version is None:
        version = PolicyVersion(created_at=now, rules=[rule_to_dict(r) for r in DEFAULT_POLICY],
                                note="default policy")
        session.add(version)
        session.flush()
        audit.record(session, "policy:created", actor_id=None, subject=f"policy:{version.id}",
                     data={"rules": version.rules}, now=now)
        return version
    present = {rule["name"] for rule in version.rules}
    missing = [rule_to_dict(r) for r in DEFAULT_POLICY if r.name not in present]
    if not missing:
        return version
    added = PolicyVersion(created_at=now, rules=[*version.rules, *missing],
                          note="new default rules: " + ", ".join(r["name"] for r in missing))
    session.add(added)
    session.flush()
    audit.record(session, "policy:changed", actor_id=None, subject=f"policy:{added.id}",
                 data={"added": missing, "previous_version": version.id}, now=now)
    return added


# Statements read on every filing are built once: building one costs more than running it.
_LATEST = select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1)
_VERSIONS, _CALENDAR = table_of(PolicyVersion), table_of(CalendarOverride)
_LATEST_RULES = select(_VERSIONS.c.id, _VERSIONS.c.rules).order_by(_VERSIONS.c.id.desc()).limit(1)
_OVERRIDES = select(_CALENDAR.c.day, _CALENDAR.c.is_working_day)


def latest_version(session: Session) -> PolicyVersion | None:
    """The policy version in force, if any."""
    return session.scalars(_LATEST).first()


def rules_of(version: PolicyVersion) -> dict[str, Rule]:
    """The rules of a version by name."""
    return _by_name(version.rules)


def _by_name(stored: list[dict[str, Any]]) -> dict[str, Rule]:
    return {d["name"]: rule_from_dict(d) for d in stored}


def current_rules(session: Session) -> tuple[int, dict[str, Rule]]:
    """The id and rules of the version in force, read without the ORM (filing reads it)."""
    row = session.connection().execute(_LATEST_RULES).first()
    if row is None:
        raise RuntimeError("no deadline policy: run 'flask --app app init-db'")
    return row.id, _by_name(row.rules)


# Read by filing inside its one statement: the version in force (its id, and its rules as
# the stored JSON text) and the calendar's overrides as one text ("2026-03-09:0,..."), so
# that none needs a statement of its own. What is parsed from a text is kept per process,
# keyed by the text itself: never stale, whichever process or database wrote it.
_LATEST_FIRST = select().select_from(_VERSIONS).order_by(_VERSIONS.c.id.desc()).limit(1)
LATEST_ID = _LATEST_FIRST.add_columns(_VERSIONS.c.id).scalar_subquery()
LATEST_RULES_TEXT = _LATEST_FIRST.add_columns(cast(_VERSIONS.c.rules, Text)).scalar_subquery()
OVERRIDES_TEXT = select(func.aggregate_strings(
    cast(_CALENDAR.c.day, String) + ":" + cast(cast(_CALENDAR.c.is_working_day, Integer),
                                                String), ",")).scalar_subquery()


def rules_from_text(text: str) -> dict[str, Rule]:
    """The rules of LATEST_RULES_TEXT by name (parsed once per distinct text)."""
    return dict(_parsed_rules(text))


@functools.lru_cache(maxsize=16)
def _parsed_rules(text: str) -> tuple[tuple[str, Rule], ...]:
    return tuple(_by_name(json.loads(text)).items())


@functools.lru_cache(maxsize=16)
def calendar_from_text(text: str | None) -> Calendar:
    """The calendar of OVERRIDES_TEXT's overrides (parsed once per distinct text)."""
    overrides: dict[date, bool] = {}
    for item in (text or "").split(","):
        if item:
            day, _, working = item.rpartition(":")
            overrides[date.fromisoformat(day[:10])] = working == "1"
    return Calendar(overrides=overrides)


def change_rule(session: Session, name: str, *, duration: Duration | None = None,
                basis: str | None = None, verified: bool | None = None,
                actor_id: int | None, now: datetime) -> PolicyVersion | None:
    """Change one rule's duration, legal basis and verified flag (None: keep it) as one new
    policy version, audited with each changed field's before and after. Returns the new
    version, or None when nothing changed (then nothing is written)."""
    take_turns(session, "policy")  # two saves at once must not both build on one version
    version_id, rules = current_rules(session)
    if name not in rules:
        raise PolicyError({"rule": _l("No such rule. The rules: %(rules)s.",
                                      rules=", ".join(rules))})
    old = rules[name]
    new = replace(old, duration=duration or old.duration,
                  basis=old.basis if basis is None else _one_line(basis),
                  is_basis_verified=old.is_basis_verified if verified is None else verified)
    _check_basis(new.basis)
    changes = _changes(old, new)
    if not changes:
        return None
    rules[name] = new
    version = PolicyVersion(created_at=now, created_by_id=actor_id,
                            rules=[rule_to_dict(r) for r in rules.values()],
                            note=_note(name, changes))
    session.add(version)
    session.flush()
    audit.record(session, "policy:changed", actor_id=actor_id, subject=f"policy:{version.id}",
                 data={"rule": name, "changes": changes, "previous_version": version_id},
                 now=now)
    return version


def _one_line(basis: str) -> str:
    # Shown in a table cell and printed by `policy show` between tabs: one line of text.
    return " ".join(basis.split())


def _check_basis(basis: str) -> None:
    if not basis:
        raise PolicyError({"basis": _l("This field is required.")})
    if len(basis) > BASIS_LENGTH:
        raise PolicyError({"basis": _l("At most %(n)d characters.", n=BASIS_LENGTH)})


def _changes(old: Rule, new: Rule) -> dict[str, dict[str, Any]]:
    """{field: {"from", "to"}} for each field of the rule that differs."""
    pairs = {"duration": (str(old.duration), str(new.duration)),
             "basis": (old.basis, new.basis),
             "verified": (old.is_basis_verified, new.is_basis_verified)}
    return {field: {"from": before, "to": after}
            for field, (before, after) in pairs.items() if before != after}


def _note(name: str, changes: dict[str, dict[str, Any]]) -> str:
    """The version's one-line summary (the audit entry holds the whole change)."""
    parts = []
    for field, change in changes.items():
        if field == "basis":
            parts.append("legal basis reworded")
        elif field == "verified":
            parts.append("basis verified" if change["to"] else "basis marked unverified")
        else:
            parts.append(f"{field} {change['from']} -> {change['to']}")
    return f"{name}: {'; '.join(parts)}"[:NOTE_LENGTH]


def history(session: Session, limit: int = 50) -> list[tuple[PolicyVersion, str | None]]:
    """The newest versions first, each with the name of whoever made it (None: installed by
    init-db or changed from the command line)."""
    rows = session.execute(
        select(PolicyVersion, User.name).outerjoin(User, User.id == PolicyVersion.created_by_id)
        .order_by(PolicyVersion.id.desc()).limit(limit))
    return [(version, name) for version, name in rows]


def load_calendar(session: Session) -> Calendar:
    """The Kazakhstan calendar with the admins' overrides."""
    rows = session.connection().execute(_OVERRIDES)
    return Calendar(overrides={day: is_working for day, is_working in rows})
