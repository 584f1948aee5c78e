"""Compliance figures for administrators, computed in SQL: per facility (reports, on time or
late against the internal target and the statutory bound, minutes from discovery to filing),
per agency (notices, acknowledged, minutes to acknowledge, overdue now, escalations), and
everything overdue now, most overdue first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
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
from sqlalchemy.sql import Subquery
from sqlalchemy.sql.functions import FunctionElement

from .deadlines import start_of_local_day, to_local
from .models import Agency, Deadline, District, Facility, Notice, Region, Report

INTERNAL, STATUTORY = "report_to_guardianship", "report_to_guardianship_statutory"
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
    return (f"(EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - "
            f"{compiler.process(earlier, **kw)})) / 60.0)")


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


def _late(deadline: Any, now: datetime) -> ColumnElement[bool]:
    return or_(deadline.met_at > deadline.due_at,
               and_(deadline.met_at.is_(None), deadline.due_at < now))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _or_zero(column: Any) -> ColumnElement[int]:
    """A count from an outer-joined aggregate: 0 where nothing was counted."""
    return func.coalesce(column, 0)


def _period_reports(scope: Scope) -> CTE:
    """Reports received in the period from facilities in scope, with the minutes from
    discovery to filing: read once, for the counts and for the medians.

    The whole country reads one range of ix_reports_received_at (a period's rows were
    written together, so they lie together); a region reads one range of
    ix_reports_facility_id_received_at per facility of the region, never the country's."""
    query = (select(Report.id, Report.facility_id,
                    minutes_between(Report.reported_at, Report.discovered_at).label("value"))
             .where(Report.received_at >= scope.starts_at, Report.received_at < scope.ends_at))
    if scope.region_id is not None:
        query = query.where(Report.facility_id.in_(
            select(Facility.id).join(District, District.id == Facility.district_id)
            .where(District.region_id == scope.region_id)))
    return query.cte("period_reports")


def facilities(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per facility in scope: reports received in the period and their reporting deadlines.

    The period's reports are counted per facility first, each joined to its two reporting
    deadlines through ix_deadlines_report_id_rule (whose due_at and met_at answer without
    reading the table); only then are the facilities joined, so a facility's whole history
    is never read."""
    period = _period_reports(scope)
    reports = (select(period.c.facility_id, func.count().label("reports"))
               .group_by(period.c.facility_id).subquery("reports"))
    # Both reporting deadlines of a report sit side by side in ix_deadlines_report_id_rule:
    # one join reaches them (a report has one deadline of each rule, made at filing).
    internal, statutory = Deadline.rule == INTERNAL, Deadline.rule == STATUTORY
    met_in_time = Deadline.met_at <= Deadline.due_at
    deadlines = (
        select(period.c.facility_id,
               _count_if(and_(internal, met_in_time)).label("on_time"),
               _count_if(and_(internal, _late(Deadline, now))).label("late"),
               _count_if(and_(statutory, met_in_time)).label("on_time_statutory"),
               _count_if(and_(statutory, _late(Deadline, now))).label("late_statutory"))
        .join(Deadline, and_(Deadline.report_id == period.c.id,
                             Deadline.rule.in_([INTERNAL, STATUTORY])))
        .group_by(period.c.facility_id).subquery("deadlines"))
    medians = _percentiles_by_key(select(period.c.facility_id.label("key"), period.c.value))
    query = (
        select(Facility.code, Facility.name,
               _or_zero(reports.c.reports).label("reports"),
               _or_zero(deadlines.c.on_time).label("on_time"),
               _or_zero(deadlines.c.late).label("late"),
               _or_zero(deadlines.c.on_time_statutory).label("on_time_statutory"),
               _or_zero(deadlines.c.late_statutory).label("late_statutory"),
               medians.c.median)
        .join(District, District.id == Facility.district_id)
        .outerjoin(reports, reports.c.facility_id == Facility.id)
        .outerjoin(deadlines, deadlines.c.facility_id == Facility.id)
        .outerjoin(medians, medians.c.key == Facility.id)
        .order_by(Facility.code))
    rows = session.execute(_in_region(query, District, scope)).all()
    return [{"code": r.code, "name": r.name, "reports": r.reports, "on_time": r.on_time,
             "late": r.late, "on_time_rate": round(r.on_time / r.reports, 3) if r.reports
             else None, "on_time_statutory": r.on_time_statutory,
             "late_statutory": r.late_statutory,
             "median_minutes_to_file": _rounded(r.median)}
            for r in rows]


def _agencies_in(scope: Scope) -> Select:
    # The country's too: the list drives one index range per agency (notices have no index
    # on sent_at alone).
    query = select(Agency.id)
    return query if scope.region_id is None else query.where(
        Agency.region_id == scope.region_id)


def _period_notices(scope: Scope) -> CTE:
    """Notices sent in the period to agencies in scope: one range of
    ix_notices_agency_id_sent_at per agency, which holds every column asked for here (the
    table is not read)."""
    return (select(Notice.agency_id, Notice.sent_at, Notice.acknowledged_at, Notice.ack_due_at,
                   Notice.escalation_level)
            .where(Notice.agency_id.in_(_agencies_in(scope)),
                   Notice.sent_at >= scope.starts_at, Notice.sent_at < scope.ends_at)
            .cte("period_notices"))


def agencies(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per agency in scope: notices sent in the period and how they were answered."""
    period = _period_notices(scope)
    counts = (
        select(period.c.agency_id,
               func.count().label("notices"),
               _count_if(period.c.acknowledged_at.is_not(None)).label("acknowledged"),
               _count_if(and_(period.c.acknowledged_at.is_(None), period.c.ack_due_at < now))
               .label("overdue_now"),
               _count_if(period.c.escalation_level > 0).label("escalations"))
        .group_by(period.c.agency_id).subquery("counts"))
    acks = _percentiles_by_key(
        select(period.c.agency_id.label("key"),
               minutes_between(period.c.acknowledged_at, period.c.sent_at).label("value"))
        .where(period.c.acknowledged_at.is_not(None)))
    query = (
        select(Agency.code, Agency.name, Agency.kind,
               _or_zero(counts.c.notices).label("notices"),
               _or_zero(counts.c.acknowledged).label("acknowledged"),
               _or_zero(counts.c.overdue_now).label("overdue_now"),
               _or_zero(counts.c.escalations).label("escalations"),
               acks.c.median, acks.c.p90)
        .outerjoin(counts, counts.c.agency_id == Agency.id)
        .outerjoin(acks, acks.c.key == Agency.id)
        .order_by(Agency.code))
    if scope.region_id is not None:
        query = query.where(Agency.region_id == scope.region_id)
    return [{"code": r.code, "name": r.name, "kind": str(r.kind), "notices": r.notices,
             "acknowledged": r.acknowledged,
             "median_minutes_to_ack": _rounded(r.median),
             "p90_minutes_to_ack": _rounded(r.p90),
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


def _percentiles(session: Session, values: Select) -> dict[Any, dict[str, float]]:
    """Median and 90th percentile (nearest rank) of `values` (columns key, value) per key,
    run on their own."""
    figures = _percentiles_by_key(values)
    return {row.key: {"median": row.median, "p90": row.p90}
            for row in session.execute(select(figures))}


def _percentiles_by_key(values: Select) -> Subquery:
    """Median and 90th percentile (nearest rank) of `values` (columns key, value) per key,
    as a subquery (key, median, p90) to join: window functions, SQLite and PostgreSQL
    alike, no rows brought to Python."""
    inner = values.subquery()
    # One window, spelled the same for both functions, so that the database sorts and walks
    # the values once; its frame is the whole partition, so count() is the key's n.
    ranked = select(
        inner.c.key, inner.c.value,
        func.row_number().over(partition_by=inner.c.key, order_by=inner.c.value,
                               rows=(None, None)).label("rank"),
        func.count().over(partition_by=inner.c.key, order_by=inner.c.value,
                          rows=(None, None)).label("n")).subquery()
    # Integer division picks the middle row (odd n) or both middle rows (even n).
    low, high = (ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2
    p90_rank = (ranked.c.n * 9 + 9) // 10
    return (select(
        ranked.c.key,
        func.avg(case((ranked.c.rank.in_([low, high]), ranked.c.value))).label("median"),
        func.max(case((ranked.c.rank == p90_rank, ranked.c.value))).label("p90"))
        # Only the rows at those ranks go on to the grouping.
        .where(ranked.c.rank.in_([low, high, p90_rank]))
        .group_by(ranked.c.key).subquery())


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
