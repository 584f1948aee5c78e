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
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.functions import FunctionElement

from .deadlines import start_of_local_day, to_local
from .models import Agency, Deadline, District, Facility, Notice, Region, Report

INTERNAL, STATUTORY = "report_to_guardianship", "report_to_guardianship_statutory"
DEFAULT_PERIOD_DAYS = 30


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


def facilities(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per facility in scope: reports received in the period and their reporting deadlines."""
    internal, statutory = aliased(Deadline), aliased(Deadline)
    in_period = and_(Report.facility_id == Facility.id, Report.received_at >= scope.starts_at,
                     Report.received_at < scope.ends_at)
    query = (
        select(Facility.id, Facility.code, Facility.name,
               func.count(Report.id).label("reports"),
               _count_if(internal.met_at <= internal.due_at).label("on_time"),
               _count_if(_late(internal, now)).label("late"),
               _count_if(statutory.met_at <= statutory.due_at).label("on_time_statutory"),
               _count_if(_late(statutory, now)).label("late_statutory"))
        .join(District, District.id == Facility.district_id)
        .outerjoin(Report, in_period)
        .outerjoin(internal, and_(internal.report_id == Report.id, internal.rule == INTERNAL))
        .outerjoin(statutory, and_(statutory.report_id == Report.id,
                                   statutory.rule == STATUTORY))
        .group_by(Facility.id, Facility.code, Facility.name).order_by(Facility.code))
    rows = session.execute(_in_region(query, District, scope)).all()
    medians = _percentiles(session, _in_region(
        select(Report.facility_id.label("key"),
               minutes_between(Report.reported_at, Report.discovered_at).label("value"))
        .join(Facility, Facility.id == Report.facility_id)
        .join(District, District.id == Facility.district_id)
        .where(Report.received_at >= scope.starts_at, Report.received_at < scope.ends_at),
        District, scope))
    return [{"code": r.code, "name": r.name, "reports": r.reports, "on_time": r.on_time,
             "late": r.late, "on_time_rate": round(r.on_time / r.reports, 3) if r.reports
             else None, "on_time_statutory": r.on_time_statutory,
             "late_statutory": r.late_statutory,
             "median_minutes_to_file": _rounded(medians.get(r.id, {}).get("median"))}
            for r in rows]


def agencies(session: Session, scope: Scope, now: datetime) -> list[dict[str, Any]]:
    """Per agency in scope: notices sent in the period and how they were answered."""
    in_period = and_(Notice.agency_id == Agency.id, Notice.sent_at >= scope.starts_at,
                     Notice.sent_at < scope.ends_at)
    query = (
        select(Agency.id, Agency.code, Agency.name, Agency.kind,
               func.count(Notice.id).label("notices"),
               _count_if(Notice.acknowledged_at.is_not(None)).label("acknowledged"),
               _count_if(and_(Notice.acknowledged_at.is_(None), Notice.ack_due_at < now))
               .label("overdue_now"),
               _count_if(Notice.escalation_level > 0).label("escalations"))
        .outerjoin(Notice, in_period)
        .group_by(Agency.id, Agency.code, Agency.name, Agency.kind).order_by(Agency.code))
    if scope.region_id is not None:
        query = query.where(Agency.region_id == scope.region_id)
    rows = session.execute(query).all()
    ack_query = (select(Notice.agency_id.label("key"),
                        minutes_between(Notice.acknowledged_at, Notice.sent_at).label("value"))
                 .join(Agency, Agency.id == Notice.agency_id)
                 .where(Notice.acknowledged_at.is_not(None), Notice.sent_at >= scope.starts_at,
                        Notice.sent_at < scope.ends_at))
    if scope.region_id is not None:
        ack_query = ack_query.where(Agency.region_id == scope.region_id)
    figures = _percentiles(session, ack_query)
    return [{"code": r.code, "name": r.name, "kind": str(r.kind), "notices": r.notices,
             "acknowledged": r.acknowledged,
             "median_minutes_to_ack": _rounded(figures.get(r.id, {}).get("median")),
             "p90_minutes_to_ack": _rounded(figures.get(r.id, {}).get("p90")),
             "overdue_now": r.overdue_now, "escalations": r.escalations} for r in rows]


def overdue(session: Session, scope: Scope, now: datetime, limit: int = 200
            ) -> list[dict[str, Any]]:
    """Every deadline past due and not met, in scope (whenever filed), most overdue first."""
    query = (select(Report.id, Report.reference, Deadline.rule, Deadline.due_at,
                    Agency.code.label("agency"))
             .join(Report, Report.id == Deadline.report_id)
             .join(Facility, Facility.id == Report.facility_id)
             .join(District, District.id == Facility.district_id)
             .outerjoin(Notice, Notice.id == Deadline.notice_id)
             .outerjoin(Agency, Agency.id == Notice.agency_id)
             .where(Deadline.met_at.is_(None), Deadline.due_at < now)
             .order_by(Deadline.due_at, Report.reference).limit(limit))
    return [{"report_id": r.id, "reference": r.reference, "rule": r.rule,
             "due_at": r.due_at, "agency": r.agency}
            for r in session.execute(_in_region(query, District, scope))]


def _percentiles(session: Session, values: Select) -> dict[Any, dict[str, float]]:
    """Median and 90th percentile (nearest rank) of `values` (columns key, value) per key,
    with window functions: SQLite and PostgreSQL alike, no rows brought to Python."""
    inner = values.subquery()
    ranked = select(
        inner.c.key, inner.c.value,
        func.row_number().over(partition_by=inner.c.key, order_by=inner.c.value).label("rank"),
        func.count().over(partition_by=inner.c.key).label("n")).subquery()
    # Integer division picks the middle row (odd n) or both middle rows (even n).
    low, high = (ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2
    p90_rank = (ranked.c.n * 9 + 9) // 10
    query = select(
        ranked.c.key,
        func.avg(case((ranked.c.rank.in_([low, high]), ranked.c.value))).label("median"),
        func.max(case((ranked.c.rank == p90_rank, ranked.c.value))).label("p90"),
    ).group_by(ranked.c.key)
    return {row.key: {"median": row.median, "p90": row.p90} for row in session.execute(query)}


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
