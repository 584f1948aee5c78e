"""Compliance figures for administrators, computed in SQL: per facility (reports, on time or
late against the internal target and the statutory bound, minutes from discovery to filing),
per agency (notices, acknowledged, minutes to acknowledge, overdue now, escalations), and
everything overdue now, most overdue first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from .deadlines import start_of_local_day, to_local
from .models import Agency, Deadline, District, Facility, Notice, Region, Report
from .percentiles import median, median_and_p90

DEFAULT_PERIOD_DAYS = 30
# How many of the oldest open deadlines a region's overdue list is looked for among first.
OVERDUE_LOOKAHEAD = 10_000


class minutes_between(FunctionElement[float]):
    """Minutes from the second moment to the first, in SQL."""

    type = Float()
    inherit_cache = True


@compiles(minutes_between, "postgresql")
def _minutes_postgresql(element: minutes_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    # date_part gives double precision; EXTRACT gives numeric, whose arithmetic and sorting
    # cost the country's figures more than reading the rows did.
    return (f"(date_part('epoch', {compiler.process(later, **kw)} - "
            f"{compiler.process(earlier, **kw)}) / 60.0)")


@compiles(minutes_between, "sqlite")
def _minutes_sqlite(element: minutes_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (f"((julianday({compiler.process(later, **kw)}) - "
            f"julianday({compiler.process(earlier, **kw)})) * 1440.0)")


@dataclass(frozen=True)
class Scope:
    """Whose figures: an admin's region (None: the country), narrowed to one region."""

    region_id: int | None
    first_day: date
    last_day: date

    @property
    def starts_at(self) -> datetime:
        return start_of_local_day(self.first_day)

    @property
    def ends_at(self) -> datetime:
        return start_of_local_day(self.last_day + timedelta(days=1))


def default_period(now: datetime) -> tuple[date, date]:
    """The last DEFAULT_PERIOD_DAYS Almaty days, today included."""
    today = to_local(now).date()
    return today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today


def _in_region(query: Select, district: Any, scope: Scope) -> Select:
    return query if scope.region_id is None else query.where(
        district.region_id == scope.region_id)


def _late(met_at: Any, due_at: Any, now: datetime) -> ColumnElement[bool]:
    """Met after it fell due, or not met and past due now."""
    return or_(met_at > due_at, and_(met_at.is_(None), due_at < now))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _or_zero(column: Any) -> ColumnElement[int]:
    """A count from an outer-joined aggregate: 0 where nothing was counted."""
    return func.coalesce(column, 0)


def facilities(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per facility in scope: reports received in the period, on time or late against the
    internal target and the statutory bound (the report's own copy of its two reporting
    deadlines), and the median minutes from discovery to filing.

    Each facility's reports are one range of ix_reports_facility_id_received_at_outcome,
    which holds every column read: neither a facility's whole history nor the reports table
    is read, and the rows arrive grouped by facility."""
    reported = Report.guardianship_reported_at
    target, statutory = Report.guardianship_due_at, Report.guardianship_statutory_due_at
    query = (
        select(Facility.code, Facility.name,
               func.count(Report.facility_id).label("reports"),
               _count_if(reported <= target).label("on_time"),
               _count_if(_late(reported, target, now)).label("late"),
               _count_if(reported <= statutory).label("on_time_statutory"),
               _count_if(_late(reported, statutory, now)).label("late_statutory"),
               median(minutes_between(Report.reported_at, Report.discovered_at))
               .label("median"))
        .join(District, District.id == Facility.district_id)
        .outerjoin(Report, and_(Report.facility_id == Facility.id,
                                Report.received_at >= scope.starts_at,
                                Report.received_at < scope.ends_at))
        .group_by(Facility.id)
        .order_by(Facility.code))
    rows = session.execute(_in_region(query, District, scope)).all()
    return [{"code": r.code, "name": r.name, "reports": r.reports, "on_time": r.on_time,
             "late": r.late, "on_time_rate": round(r.on_time / r.reports, 3) if r.reports
             else None, "on_time_statutory": r.on_time_statutory,
             "late_statutory": r.late_statutory,
             "median_minutes_to_file": _rounded(r.median)}
            for r in rows]


def agencies(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per agency in scope: notices sent in the period and how they were answered (minutes
    to acknowledge: None while unacknowledged, so left out of the median and p90).

    Each agency's notices are one range of ix_notices_agency_id_sent_at, which holds every
    column read (the table is not read)."""
    minutes = minutes_between(Notice.acknowledged_at, Notice.sent_at)
    query = (
        select(Agency.code, Agency.name, Agency.kind,
               func.count(Notice.agency_id).label("notices"),
               func.count(Notice.acknowledged_at).label("acknowledged"),
               _count_if(and_(Notice.acknowledged_at.is_(None), Notice.ack_due_at < now))
               .label("overdue_now"),
               _count_if(Notice.escalation_level > 0).label("escalations"),
               median_and_p90(minutes).label("percentiles"))
        .outerjoin(Notice, and_(Notice.agency_id == Agency.id,
                                Notice.sent_at >= scope.starts_at,
                                Notice.sent_at < scope.ends_at))
        .group_by(Agency.id)
        .order_by(Agency.code))
    if scope.region_id is not None:
        query = query.where(Agency.region_id == scope.region_id)
    return [{"code": r.code, "name": r.name, "kind": str(r.kind), "notices": r.notices,
             "acknowledged": r.acknowledged,
             "median_minutes_to_ack": _rounded(r.percentiles[0]),
             "p90_minutes_to_ack": _rounded(r.percentiles[1]),
             "overdue_now": r.overdue_now, "escalations": r.escalations}
            for r in session.execute(query)]


def overdue(session: Session, scope: Scope, now: datetime, limit: int = 200
            ) -> list[dict[str, Any]]:
    """Every deadline past due and not met, in scope (whenever filed), most overdue first.

    Open deadlines are read oldest first through ix_deadlines_overdue: the country's are the
    first `limit`. A region's are looked for among the OVERDUE_LOOKAHEAD oldest only, each
    one's district looked up in turn (a correlated subquery, so that neither database reads
    all of the region's reports instead): when `limit` of them are the region's, they are
    its oldest, since every open deadline due before them was looked at. A region with
    fewer among them is read from its own reports instead: quick for a small region (an
    empty one too, where looking through every open deadline of the country took seconds),
    dearer for a large one with so few of the oldest, which pays for all its open ones."""
    if scope.region_id is None:
        return _overdue_rows(session, _overdue_query(now, limit))
    cutoff = session.scalar(
        select(Deadline.due_at).where(Deadline.met_at.is_(None), Deadline.due_at < now)
        .order_by(Deadline.due_at).offset(OVERDUE_LOOKAHEAD - 1).limit(1))
    district_of_report = (select(Facility.district_id).where(Facility.id == Report.facility_id)
                          .scalar_subquery())
    oldest = _overdue_query(now, limit).where(district_of_report.in_(
        select(District.id).where(District.region_id == scope.region_id)))
    found = _overdue_rows(session, oldest if cutoff is None
                          else oldest.where(Deadline.due_at < cutoff))
    if cutoff is None or len(found) == limit:
        return found
    return _overdue_rows(session, _overdue_from_reports(now, limit, scope.region_id))


def _overdue_query(now: datetime, limit: int) -> Select:
    """Open deadlines due before now, most overdue first (then by reference; a report's
    deadlines due at the same moment in the order they were made, so that every database
    and every plan gives one order)."""
    return (select(Report.id, Report.reference, Deadline.rule, Deadline.due_at,
                   Agency.code.label("agency"))
            .join(Report, Report.id == Deadline.report_id)
            .outerjoin(Notice, Notice.id == Deadline.notice_id)
            .outerjoin(Agency, Agency.id == Notice.agency_id)
            .where(Deadline.met_at.is_(None), Deadline.due_at < now)
            .order_by(Deadline.due_at, Report.reference, Deadline.id).limit(limit))


def _overdue_from_reports(now: datetime, limit: int, region_id: int) -> Select:
    """A region's open deadlines due before now, read from the region's own reports: they
    are materialized first, so that no plan reads the country's open deadlines instead."""
    reports = (select(Report.id, Report.reference)
               .join(Facility, Facility.id == Report.facility_id)
               .join(District, District.id == Facility.district_id)
               .where(District.region_id == region_id)
               .cte("region_reports").prefix_with("MATERIALIZED"))
    return (select(reports.c.id, reports.c.reference, Deadline.rule, Deadline.due_at,
                   Agency.code.label("agency"))
            .select_from(reports)
            .join(Deadline, Deadline.report_id == reports.c.id)
            .outerjoin(Notice, Notice.id == Deadline.notice_id)
            .outerjoin(Agency, Agency.id == Notice.agency_id)
            .where(Deadline.met_at.is_(None), Deadline.due_at < now)
            .order_by(Deadline.due_at, reports.c.reference, Deadline.id).limit(limit))


def _overdue_rows(session: Session, query: Select) -> list[dict[str, Any]]:
    return [{"report_id": r.id, "reference": r.reference, "rule": r.rule,
             "due_at": r.due_at, "agency": r.agency} for r in session.execute(query)]


def _rounded(value: float | None) -> float | None:
    return round(float(value), 1) if value is not None else None


def region_of(session: Session, code: str) -> Region | None:
    """A region by its code."""
    return session.scalars(select(Region).where(Region.code == code)).first()


def figures(session: Session, scope: Scope, now: datetime) -> dict[str, Any]:
    """Everything the dashboard and GET /compliance show, for one scope."""
    return {"from": scope.first_day.isoformat(), "to": scope.last_day.isoformat(),
            "facilities": facilities(session, scope, now),
            "agencies": agencies(session, scope, now),
            "overdue": overdue(session, scope, now)}
