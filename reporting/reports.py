"""Filing a report: validate, reference, store, route, put on the clock, audit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Insert, and_, bindparam, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, aliased

from . import alerts, audit
from .bodies import REPORT
from .db import insert_rows
from .deadlines import (
    REPORTING_STATUTORY,
    REPORTING_TARGET,
    Calendar,
    Event,
    Rule,
    due_at,
    reporting_time,
)
from .errors import (
    NoFacilityError,
    ReferenceTakenError,
    ReportIdConflictError,
    ReportInvalidError,
)
from .iin import iin_warnings
from .models import (
    Agency,
    AgencyKind,
    Base,
    Deadline,
    District,
    Facility,
    PushSubscription,
    Region,
    Report,
    ReportState,
    User,
    table_of,
)
from .policy import (
    LATEST_ID,
    LATEST_RULES_TEXT,
    OVERRIDES_TEXT,
    calendar_from_text,
    rules_from_text,
)
from .references import claim, next_reference
from .routing import chosen_agency_id, notice_audit_entries, open_notices, route_to
from .vocabulary import DeliveryKind

MAX_FUTURE = timedelta(minutes=5)
EARLIEST_REPORT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Filed:
    report: Report
    is_new: bool


def clean_report(data: Any, now: datetime) -> dict[str, Any]:
    """Validate a report body against the schema and the time rules; raise ReportInvalidError."""
    cleaned, errors = REPORT.validate(data)
    discovered = cleaned.get("discovered_at")
    if discovered is not None and discovered > now + MAX_FUTURE:
        errors["discovered_at"] = _l("Cannot be more than 5 minutes in the future.")
    # Besik did not exist before 2024, and the law it serves dates from 2024. A phone whose
    # clock runs ahead still files: filed_at later than receipt is judged on received_at.
    for name in ("discovered_at", "filed_at"):
        moment = cleaned.get(name)
        if moment is not None and moment < EARLIEST_REPORT:
            errors[name] = _l("Cannot be before %(date)s.", date="2024-01-01")
    if errors:
        raise ReportInvalidError(errors)
    return cleaned


def content_hash(cleaned: dict[str, Any]) -> str:
    """A digest of the validated content: an idempotent retry must match it."""
    return hashlib.sha256(audit.canonical_json(_jsonable(cleaned)).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def soft_warnings(cleaned: dict[str, Any]) -> list[str]:
    """IIN digits that disagree with the birth date or sex: shown, never refused."""
    child, mother = cleaned["child"], cleaned.get("mother", {})
    warnings = []
    if "iin" in child:
        born = child.get("born_at")
        warnings += [f"child.iin_{w}" for w in iin_warnings(
            child["iin"], birth=born.date() if born else None, sex=child["sex"])]
    if "iin" in mother:
        warnings += [f"mother.iin_{w}" for w in iin_warnings(
            mother["iin"], birth=mother.get("birth_date"), sex="female")]
    return warnings


@dataclass(frozen=True)
class FilingPlan:
    """What filing reads, gathered before the write lock is taken."""

    reporter: User
    facility: Facility
    region_code: str
    version_id: int
    rules: dict[str, Rule]
    calendar: Calendar
    routes: list[tuple[Agency, bool]]
    # Every device of every officer of each routed agency: alerted in the filing's transaction.
    subscribers: dict[int, list[PushSubscription]]


# Everything filing reads, in one statement (each statement costs more in SQLAlchemy and the
# driver than in the database): the facility and its region, the id of the policy version in
# force, the calendar's overrides, the guardianship agency and (for a report with risk flags)
# the police the report goes to, and whether a report with this id is stored already. Only
# the officers' devices need a second statement.
_GUARDIANSHIP = aliased(Agency, name="guardianship")
_POLICE = aliased(Agency, name="police")
_READ_FOR_FILING = (
    select(Facility, District.region_id, Region.code, LATEST_ID.label("policy_version_id"),
           LATEST_RULES_TEXT.label("rules"), OVERRIDES_TEXT.label("overrides"),
           select(Report.content_hash).where(Report.id == bindparam("report_id"))
           .scalar_subquery().label("stored_hash"),
           select(Report.reporter_id).where(Report.id == bindparam("report_id"))
           .scalar_subquery().label("stored_reporter_id"),
           _GUARDIANSHIP, _POLICE)
    .join(District, District.id == Facility.district_id)
    .join(Region, Region.id == District.region_id)
    .outerjoin(_GUARDIANSHIP, _GUARDIANSHIP.id == chosen_agency_id(
        AgencyKind.GUARDIANSHIP, Facility.district_id, District.region_id))
    .outerjoin(_POLICE, and_(bindparam("has_risk"), _POLICE.id == chosen_agency_id(
        AgencyKind.POLICE, Facility.district_id, District.region_id)))
    .where(Facility.id == bindparam("facility_id")))


def read_for_filing(session: Session, reporter: User, cleaned: dict[str, Any]
                    ) -> Report | FilingPlan:
    """The stored report when this id was filed already (a retry: 409 when its content
    differs), else what filing a new one needs (no writes)."""
    found = session.execute(_READ_FOR_FILING, {
        "facility_id": reporter.facility_id, "report_id": cleaned["id"],
        "has_risk": bool(cleaned.get("risk_flags"))}).first()
    if found is None:  # no facility: a retry of a report filed before still answers
        existing = already_filed(session, reporter, cleaned)
        if existing is None:
            raise NoFacilityError()
        return existing
    if found.stored_hash is not None:
        return _same_report(session, reporter, cleaned, found.stored_hash,
                            found.stored_reporter_id)
    routes = [r for r in (route_to(found.guardianship), route_to(found.police))
              if r is not None]
    return FilingPlan(
        reporter=reporter, facility=found.Facility, region_code=found.code,
        version_id=found.policy_version_id,
        rules=_rules(found.policy_version_id, found.rules),
        calendar=calendar_from_text(found.overrides), routes=routes,
        subscribers=alerts.officer_devices(session, (agency.id for agency, _ in routes)))


def plan_filing(session: Session, reporter: User, cleaned: dict[str, Any]) -> FilingPlan:
    """What filing a report whose id is new needs (ReportIdConflictError when it is not)."""
    found = read_for_filing(session, reporter, cleaned)
    if isinstance(found, Report):
        raise ReportIdConflictError()
    return found


def _rules(version_id: int | None, text: str | None) -> dict[str, Rule]:
    if version_id is None or text is None:
        raise RuntimeError("no deadline policy: run 'flask --app app init-db'")
    return rules_from_text(text)


_REPORTS = table_of(Report)
_STORED = (select(_REPORTS.c.content_hash, _REPORTS.c.reporter_id)
           .where(_REPORTS.c.id == bindparam("report_id")))


def already_filed(session: Session, reporter: User, cleaned: dict[str, Any]) -> Report | None:
    """The stored report with this id when it is the same content; 409 when it is not."""
    stored = session.connection().execute(_STORED, {"report_id": cleaned["id"]}).first()
    if stored is None:
        return None
    return _same_report(session, reporter, cleaned, stored.content_hash, stored.reporter_id)


def _same_report(session: Session, reporter: User, cleaned: dict[str, Any],
                 stored_hash: str, stored_reporter_id: int) -> Report:
    if stored_hash != content_hash(cleaned) or stored_reporter_id != reporter.id:
        raise ReportIdConflictError()
    report = session.get(Report, cleaned["id"])
    assert report is not None
    return report


def file_report(session: Session, plan: FilingPlan, cleaned: dict[str, Any], *,
                now: datetime) -> Report:
    """Store a new report, route it and start its deadlines; flushes, never commits.

    The caller has found the id new (already_filed). If another request stored it since,
    the INSERT raises IntegrityError, or claiming its reserved reference ReferenceTakenError.
    """
    # Everything is built in memory first: the first statement takes SQLite's write lock (and
    # on PostgreSQL the counter's row lock), which every other filing then waits for.
    child, mother = cleaned["child"], cleaned.get("mother", {})
    filed_at = cleaned.get("filed_at", now)
    report = Report(
        id=cleaned["id"],
        facility=plan.facility, facility_id=plan.facility.id,
        district_id=plan.facility.district_id, reporter=plan.reporter,
        reporter_id=plan.reporter.id, policy_version_id=plan.version_id,
        state=ReportState.OPEN,
        circumstance=cleaned["circumstance"], discovered_at=cleaned["discovered_at"],
        filed_at=filed_at, received_at=now,
        reported_at=reporting_time(cleaned["discovered_at"], filed_at, now),
        child_sex=child["sex"], child_iin=child.get("iin"), child_born_at=child.get("born_at"),
        child_weight_g=child.get("weight_g"), child_condition=child.get("condition"),
        mother_iin=mother.get("iin"), mother_full_name=mother.get("full_name"),
        mother_birth_date=mother.get("birth_date"),
        mother_citizenship=mother.get("citizenship"), mother_phone=mother.get("phone"),
        mother_address=mother.get("address"), risk_flags=cleaned.get("risk_flags", []),
        notes=cleaned.get("notes"), warnings=soft_warnings(cleaned),
        content_hash=content_hash(cleaned),
    )
    notices = open_notices(report, plan.routes, plan.rules, plan.calendar, now)
    kinds = {n.agency.kind for n in notices}
    start_report_deadlines(
        report, plan.rules, plan.calendar,
        guardianship_notified_at=(report.reported_at if AgencyKind.GUARDIANSHIP in kinds
                                  else None),
        police_notified_at=report.received_at if AgencyKind.POLICE in kinds else None)
    alerted = [d for n in notices for d in alerts.deliveries_for(
        plan.subscribers[n.agency.id], n, DeliveryKind.NOTICE, now)]
    # The rows too: only the reference, known once the lock is held, is filled in after.
    inserts = Inserts([report, *notices, *report.deadlines, *alerted])
    reference = cleaned.get("reference")
    if reference is None:
        reference = next_reference(session, plan.region_code, now)
    elif not claim(session, reference, plan.facility.id, cleaned["id"], now):
        raise ReferenceTakenError({
            "reference": _l("This reference is not reserved for your facility, or was "
                            "already used.")})
    report.reference = inserts.first_row["reference"] = reference
    inserts.run(session)
    audit.append_all(session, [*notice_audit_entries(notices), audit.Entry(
        "report:filed", actor_id=plan.reporter.id, subject=f"report:{report.id}",
        data={"reference": report.reference, "facility": plan.facility.code,
              "discovered_at": report.discovered_at, "filed_at": report.filed_at,
              "received_at": report.received_at, "policy_version": plan.version_id})], now=now)
    return report


def start_report_deadlines(report: Report, rules: dict[str, Rule], calendar: Calendar, *,
                           guardianship_notified_at: datetime | None,
                           police_notified_at: datetime | None) -> None:
    """The deadlines that run from discovery, attached to `report`: at filing, and for the
    risk rules when an amendment adds the first risk flag."""
    for rule in rules.values():
        if rule.starts_on is not Event.DISCOVERED:
            continue
        if rule.needs_risk_flag and not report.risk_flags:
            continue
        # The reporting rules are met only when a guardianship agency was notified (a report
        # routed nowhere reached nobody); routing to the police meets inform_police.
        met_at = police_notified_at if rule.needs_risk_flag else guardianship_notified_at
        deadline = Deadline(report=report, report_id=report.id, rule=rule.name,
                            due_at=due_at(report.discovered_at, rule.duration, calendar),
                            met_at=met_at, basis=rule.basis,
                            is_basis_verified=rule.is_basis_verified)
        _copy_outcome(report, deadline)


def _copy_outcome(report: Report, deadline: Deadline) -> None:
    """The report's copy of its reporting deadlines (read by the compliance figures): made
    here, with the deadlines, and never met later, so the copy cannot drift."""
    if deadline.rule == REPORTING_TARGET:
        report.guardianship_due_at = deadline.due_at
    elif deadline.rule == REPORTING_STATUTORY:
        report.guardianship_statutory_due_at = deadline.due_at
    else:
        return
    report.guardianship_reported_at = deadline.met_at


class Inserts:
    """New objects as one INSERT per table and column set, parents first, the rows read
    from the objects when this is made (run() executes them).

    Filing runs inside SQLite's write lock, where the ORM's unit of work costs more than the
    SQL itself: these are Core INSERTs of prebuilt statements, their rows built before the
    lock is taken. The objects stay in memory (transient) for the response.
    """

    def __init__(self, objects: list[Base]) -> None:
        self.batches: dict[tuple[Insert, frozenset[str]], list[dict[str, Any]]] = {}
        rows = []
        for obj in objects:
            statement, columns = _insertable(type(obj))
            row = {}
            for attr, key, skip_none in columns:
                value = getattr(obj, attr)
                if value is not None or not skip_none:
                    row[key] = value
            self.batches.setdefault((statement, frozenset(row)), []).append(row)
            rows.append(row)
        # The first object's row, still open to a change of a value (not of its columns).
        self.first_row = rows[0]

    def run(self, session: Session) -> None:
        connection = session.connection()
        for (statement, _), rows in self.batches.items():
            # One INSERT per table: PostgreSQL's triggers on notices and deadlines (the
            # report's revision, migration 0011) then run once per table, not per deadline.
            insert_rows(connection, statement, rows)


_INSERTABLE: dict[type[Base], tuple[Insert, list[tuple[str, str, bool]]]] = {}


def _insertable(model: type[Base]) -> tuple[Insert, list[tuple[str, str, bool]]]:
    """A model's INSERT and its (attribute, column, left to the database when None) list."""
    if model not in _INSERTABLE:
        columns = []
        for attr in sa_inspect(model).column_attrs:
            column = attr.columns[0]
            # None means "let the database or the column default fill it in".
            skip_none = column.primary_key or column.default is not None
            columns.append((attr.key, column.key, skip_none))
        _INSERTABLE[model] = insert(table_of(model)), columns
    return _INSERTABLE[model]
