"""The deadline policy in force (versioned data) and the working-day calendar."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .deadlines import DEFAULT_POLICY, Calendar, Duration, Event, Rule
from .models import CalendarOverride, PolicyVersion, table_of


class PolicyError(ValueError):
    """An unknown rule or a malformed duration."""


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


def set_rule_duration(session: Session, name: str, duration_text: str, *,
                      actor_id: int | None, now: datetime) -> PolicyVersion:
    """Change one rule's duration by adding a policy version; audited."""
    version_id, rules = current_rules(session)
    if name not in rules:
        raise PolicyError(f"unknown rule {name!r}; rules: {', '.join(rules)}")
    try:
        duration = Duration.parse(duration_text)
    except ValueError as exc:
        raise PolicyError(str(exc)) from exc
    old = rules[name].duration
    rules[name] = replace(rules[name], duration=duration)
    new = PolicyVersion(created_at=now, created_by_id=actor_id,
                        rules=[rule_to_dict(r) for r in rules.values()],
                        note=f"{name}: {old} -> {duration}")
    session.add(new)
    session.flush()
    audit.record(session, "policy:changed", actor_id=actor_id, subject=f"policy:{new.id}",
                 data={"rule": name, "from": str(old), "to": str(duration),
                       "previous_version": version_id}, now=now)
    return new


def load_calendar(session: Session) -> Calendar:
    """The Kazakhstan calendar with the admins' overrides."""
    rows = session.connection().execute(_OVERRIDES)
    return Calendar(overrides={day: is_working for day, is_working in rows})
