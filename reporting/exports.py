"""The compliance log, exported: one row per report with its notices and deadlines, as CSV or
XLSX, streamed from the database in batches (constant memory, no temporary file).

Speed is the point of the shape: a batch of reports is flattened in one SQL statement
(notices and deadlines pivoted into numbered slots, times rendered in Almaty time, codes
turned into labels), so Python only hands finished rows to the C csv writer or the XLSX
writer. Every batch reads the same snapshot, which the audit head at the end belongs to.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from . import audit, labels, xlsx
from .db import get_db, writing
from .deadlines import ALMATY, start_of_local_day, to_local
from .errors import NotFoundError, ValidationError
from .models import Agency, AuditHead, Deadline, District, Facility, Notice, Region, Report, User
from .vocabulary import AckChannel, Circumstance, ExportFormat, RiskFlag

BATCH = 2000
CSV_MIME = "text/csv"

REPORT_COLUMNS: tuple[Any, ...] = (
    _l("Reference"), _l("Report ID"), _l("Facility code"), _l("Facility"), _l("District"),
    _l("Circumstance"), _l("Risk flags"), _l("Discovered"), _l("Filed (phone clock)"),
    _l("Received (server clock)"), _l("Clock gap, seconds"), _l("State"))
NOTICE_COLUMNS: tuple[Any, ...] = (
    _l("Notice %(n)s: agency"), _l("Notice %(n)s: sent"), _l("Notice %(n)s: due"),
    _l("Notice %(n)s: acknowledged"), _l("Notice %(n)s: acknowledged by"),
    _l("Notice %(n)s: channel"), _l("Notice %(n)s: escalation level"))
DEADLINE_COLUMNS: tuple[Any, ...] = (
    _l("Deadline %(n)s: rule"), _l("Deadline %(n)s: due"), _l("Deadline %(n)s: met"),
    _l("Deadline %(n)s: state"))
AUDIT_SHEET = _l("Audit head")
AUDIT_COLUMNS: tuple[Any, ...] = (_l("Entries"), _l("Head hash"), _l("Exported at"))


# --- what to export -----------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Which reports: received within Almaty days, in a region, at a facility, notified to an
    agency. `codes` keeps what was asked for, for the audit entry and the file's name."""

    first_day: date | None = None
    last_day: date | None = None
    facility_ids: tuple[int, ...] | None = None  # None: every facility
    agency_id: int | None = None
    codes: dict[str, str] = field(default_factory=dict)


def resolve_filters(session: Session, args: dict[str, Any], scope_region_id: int | None
                    ) -> Filters:
    """Filters from validated arguments (from, to, region, facility, agency codes), within an
    admin's region (None: the country). A code that does not exist or lies outside the
    scope is NotFoundError, as for any record outside scope."""
    first_day, last_day = args.get("from"), args.get("to")
    if first_day and last_day and first_day > last_day:
        raise ValidationError({"from": _l("Must not be after the last day.")})
    codes = {name: str(args[name]) for name in ("region", "facility", "agency")
             if args.get(name)}
    region_id = scope_region_id
    if "region" in codes:
        region = session.scalars(select(Region).where(Region.code == codes["region"])).first()
        if region is None or (scope_region_id is not None and region.id != scope_region_id):
            raise NotFoundError()
        region_id = region.id
    facility_ids = None
    if region_id is not None:
        facility_ids = tuple(session.scalars(
            select(Facility.id).join(District, District.id == Facility.district_id)
            .where(District.region_id == region_id)))
    if "facility" in codes:
        facility = session.scalars(select(Facility).where(
            Facility.code == codes["facility"])).first()
        if facility is None or (facility_ids is not None and facility.id not in facility_ids):
            raise NotFoundError()
        facility_ids = (facility.id,)
    agency_id = None
    if "agency" in codes:
        agency = session.scalars(select(Agency).where(Agency.code == codes["agency"])).first()
        if agency is None or (region_id is not None and agency.region_id != region_id):
            raise NotFoundError()
        agency_id = agency.id
    if first_day:
        codes["from"] = first_day.isoformat()
    if last_day:
        codes["to"] = last_day.isoformat()
    return Filters(first_day, last_day, facility_ids, agency_id, codes)


def _filtered(query: Select, filters: Filters) -> Select:
    if filters.first_day:
        query = query.where(Report.received_at >= start_of_local_day(filters.first_day))
    if filters.last_day:
        query = query.where(Report.received_at
                            < start_of_local_day(filters.last_day + timedelta(days=1)))
    if filters.facility_ids is not None:
        query = query.where(Report.facility_id.in_(filters.facility_ids))
    if filters.agency_id is not None:
        query = query.where(exists().where(Notice.report_id == Report.id,
                                           Notice.agency_id == filters.agency_id))
    return query


# --- Almaty time and other arithmetic, in SQL ------------------------------------------------


@cache
def offset_periods() -> tuple[tuple[datetime | None, int], ...]:
    """Almaty's UTC offsets (seconds) since 1992, newest first, each with the UTC moment it
    began (None for the oldest): Kazakhstan moved Almaty from +6 to +5 in 2024, and a time
    must carry the offset of its own day."""
    periods: list[tuple[datetime | None, int]] = []
    moment, end = datetime(1992, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    offset = _offset_at(moment)
    periods.append((None, offset))
    while moment < end:
        following = moment + timedelta(days=1)
        if _offset_at(following) != offset:
            start = _first_change(moment, following, offset)
            offset = _offset_at(following)
            periods.append((start, offset))
        moment = following
    return tuple(reversed(periods))


def _offset_at(moment: datetime) -> int:
    offset = moment.astimezone(ALMATY).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _first_change(low: datetime, high: datetime, offset: int) -> datetime:
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        low, high = (middle, high) if _offset_at(middle) == offset else (low, middle)
    return high.replace(microsecond=0)


def _suffix(offset: int) -> str:
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


class local_iso(FunctionElement[str]):
    """A stored UTC moment as ISO 8601 in Almaty time with that day's offset, or NULL."""

    type = String()
    inherit_cache = True


def _by_period(moment: str, render: Any, since: Any) -> str:
    branches = [f"WHEN {moment} >= {since(start)} THEN {render(offset)}"
                for start, offset in offset_periods() if start is not None]
    oldest = offset_periods()[-1][1]
    return f"(CASE {' '.join(branches)} ELSE {render(oldest)} END)"


@compiles(local_iso, "sqlite")
def _local_iso_sqlite(element: local_iso, compiler: Any, **kw: Any) -> str:
    moment = compiler.process(next(iter(element.clauses)), **kw)
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): text comparison is time order.
    return _by_period(
        moment,
        lambda offset: (f"strftime('%Y-%m-%dT%H:%M:%S{_suffix(offset)}', {moment}, "
                        f"'{offset:+d} seconds')"),
        lambda start: f"'{start:%Y-%m-%d %H:%M:%S}'")


@compiles(local_iso, "postgresql")
def _local_iso_postgresql(element: local_iso, compiler: Any, **kw: Any) -> str:
    moment = compiler.process(next(iter(element.clauses)), **kw)
    # The offsets come from Besik's pinned time zone data, not the server's.
    return _by_period(
        moment,
        lambda offset: (f"(to_char(({moment} AT TIME ZONE 'UTC') + interval '{offset} seconds',"
                        f" 'YYYY-MM-DD\"T\"HH24:MI:SS') || '{_suffix(offset)}')"),
        lambda start: f"TIMESTAMPTZ '{start:%Y-%m-%d %H:%M:%S}+00'")


class seconds_between(FunctionElement[int]):
    """Whole seconds from the second moment to the first."""

    type = Integer()
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(round((julianday({later}) - julianday({earlier})) * 86400.0) AS INTEGER)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(round(EXTRACT(EPOCH FROM ({later} - {earlier}))) AS INTEGER)"


# --- the rows ---------------------------------------------------------------------------------


def _labelled(column: Any, table: dict[str, Any]) -> ColumnElement[str]:
    """A code as its label in the current language (an unknown code as itself)."""
    return case({code: literal(str(label)) for code, label in table.items()},
                value=column, else_=column)


def _flag_labels(column: Any) -> ColumnElement[str]:
    """The stored JSON list of risk flags as labels joined by '; ' (no code is part of
    another, so plain replacement is exact)."""
    text: ColumnElement[str] = cast(column, String)
    for separator in ('", "', '","'):
        text = func.replace(text, separator, "; ")
    for wrapper in ('["', '"]', "[]"):
        text = func.replace(text, wrapper, "")
    for code, label in RiskFlag.labels().items():
        text = func.replace(text, code, str(label))
    return text


def _guarded(text: Any, guard: bool) -> Any:
    """Text a person typed (names): a leading = + - @ would run as a formula in a spreadsheet
    opening the CSV, so it gets a quote first."""
    if not guard:
        return text
    return case((func.substr(text, 1, 1).in_(("=", "+", "-", "@")), literal("'") + text),
                else_=text)


def _deadline_state(now: datetime) -> ColumnElement[str]:
    states = labels.STATES
    return case(
        (Deadline.met_at.is_not(None),
         case((Deadline.met_at <= Deadline.due_at, literal(str(states["met"]))),
              else_=literal(str(states["met_late"])))),
        (Deadline.due_at < now, literal(str(states["overdue"]))),
        else_=literal(str(states["pending"])))


def _pivot(numbered: Any, fields: Sequence[str], slots: int) -> Any:
    """One row per report from numbered rows: slot k's fields become columns k."""
    return select(numbered.c.report_id, *[
        func.max(case((numbered.c.k == slot, numbered.c[name]))).label(f"{name}_{slot}")
        for slot in range(1, slots + 1) for name in fields
    ]).group_by(numbered.c.report_id).subquery()


NOTICE_FIELDS = ("agency", "sent", "due", "acknowledged", "by", "channel", "level")
DEADLINE_FIELDS = ("rule", "due", "met", "state")


def _rows_query(ids: Select, notice_slots: int, deadline_slots: int, now: datetime,
                guard: bool) -> Select:
    """Every column of the reports whose ids `ids` selects, in one statement."""
    numbered_notices = (
        select(Notice.report_id,
               func.row_number().over(partition_by=Notice.report_id,
                                      order_by=(Notice.sent_at, Notice.id)).label("k"),
               Agency.code.label("agency"), local_iso(Notice.sent_at).label("sent"),
               local_iso(Notice.ack_due_at).label("due"),
               local_iso(Notice.acknowledged_at).label("acknowledged"),
               _guarded(User.name, guard).label("by"),
               _labelled(Notice.ack_channel, AckChannel.labels()).label("channel"),
               Notice.escalation_level.label("level"))
        .join(Agency, Agency.id == Notice.agency_id)
        .outerjoin(User, User.id == Notice.acknowledged_by_id)
        .where(Notice.report_id.in_(ids)).subquery())
    numbered_deadlines = (
        select(Deadline.report_id,
               func.row_number().over(partition_by=Deadline.report_id,
                                      order_by=Deadline.id).label("k"),
               _labelled(Deadline.rule, labels.RULES).label("rule"),
               local_iso(Deadline.due_at).label("due"), local_iso(Deadline.met_at).label("met"),
               _deadline_state(now).label("state"))
        .where(Deadline.report_id.in_(ids)).subquery())
    notices = _pivot(numbered_notices, NOTICE_FIELDS, notice_slots)
    deadlines = _pivot(numbered_deadlines, DEADLINE_FIELDS, deadline_slots)
    return (
        select(Report.reference, Report.id, Facility.code, _guarded(Facility.name, guard),
               District.code, _labelled(Report.circumstance, Circumstance.labels()),
               _flag_labels(Report.risk_flags), local_iso(Report.discovered_at),
               local_iso(Report.filed_at), local_iso(Report.received_at),
               seconds_between(Report.received_at, Report.filed_at),
               _labelled(Report.state, labels.STATES),
               *[notices.c[f"{name}_{slot}"] for slot in range(1, notice_slots + 1)
                 for name in NOTICE_FIELDS],
               *[deadlines.c[f"{name}_{slot}"] for slot in range(1, deadline_slots + 1)
                 for name in DEADLINE_FIELDS])
        .join(Facility, Facility.id == Report.facility_id)
        .join(District, District.id == Facility.district_id)
        .outerjoin(notices, notices.c.report_id == Report.id)
        .outerjoin(deadlines, deadlines.c.report_id == Report.id)
        .where(Report.id.in_(ids))
        .order_by(Report.received_at, Report.id))


def _most_per_report(session: Session, model: Any, filters: Filters) -> int:
    """The largest number of `model` rows (notices, deadlines) any exported report has."""
    per_report = (select(func.count().label("n")).select_from(model)
                  .where(model.report_id.in_(_filtered(select(Report.id), filters)))
                  .group_by(model.report_id).subquery())
    return int(session.scalar(select(func.max(per_report.c.n))) or 0)


def _batches(session: Session, filters: Filters, notice_slots: int, deadline_slots: int,
             now: datetime, guard: bool) -> Iterator[Sequence[Sequence[Any]]]:
    """The rows, BATCH reports at a time, in order of receipt: each batch is bounded by the
    (received_at, id) of its last report, found first with the index."""
    keys = _filtered(select(Report.received_at, Report.id), filters).order_by(
        Report.received_at, Report.id)
    after: tuple[datetime, str] | None = None
    while True:
        query = keys if after is None else keys.where(
            tuple_(Report.received_at, Report.id) > tuple_(*after))
        last = session.execute(query.offset(BATCH - 1).limit(1)).first()
        ids = _filtered(select(Report.id), filters)
        if after is not None:
            ids = ids.where(tuple_(Report.received_at, Report.id) > tuple_(*after))
        if last is not None:
            ids = ids.where(tuple_(Report.received_at, Report.id) <= tuple_(*last))
        rows = session.execute(_rows_query(ids, notice_slots, deadline_slots, now,
                                           guard)).all()
        if rows:
            yield rows
        if last is None:
            return
        after = (last[0], last[1])


# --- the files ----------------------------------------------------------------------------


@dataclass
class Export:
    """One export being written: what it covers, and what it has written so far."""

    format: ExportFormat
    filters: Filters
    language: str
    now: datetime
    rows: int = 0
    head: tuple[int, str] | None = None
    is_complete: bool = False

    @property
    def mimetype(self) -> str:
        return CSV_MIME if self.format is ExportFormat.CSV else xlsx.MIME

    @property
    def filename(self) -> str:
        parts = ["besik-compliance", *(self.filters.codes.get(k, "") for k in
                                       ("region", "facility", "agency", "from", "to")),
                 to_local(self.now).strftime("%Y%m%d-%H%M")]
        return "-".join(p for p in parts if p) + f".{self.format.value}"

    def audit_data(self) -> dict[str, Any]:
        return {"format": self.format.value, "filters": self.filters.codes,
                "language": self.language, "rows": self.rows, "complete": self.is_complete}


def snapshot(session: Session) -> None:
    """Make every later read of `session` see one moment (PostgreSQL: REPEATABLE READ; SQLite
    already reads one snapshot per transaction)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def stream(session: Session, export: Export) -> Iterator[bytes]:
    """The file's bytes, in pieces; `session` must have been through snapshot() first."""
    with force_locale(export.language):
        guard = export.format is ExportFormat.CSV
        notice_slots = max(1, _most_per_report(session, Notice, export.filters))
        deadline_slots = max(1, _most_per_report(session, Deadline, export.filters))
        header = _header(notice_slots, deadline_slots)
        head_row = session.get(AuditHead, 1)
        export.head = (head_row.seq, head_row.hash) if head_row else (0, audit.GENESIS)
        batches = _batches(session, export.filters, notice_slots, deadline_slots,
                           export.now, guard)
        audit_rows: list[list[Any]] = [["# audit-head", *[str(c) for c in AUDIT_COLUMNS]],
                      ["# audit-head", export.head[0], export.head[1],
                       to_local(export.now).isoformat(timespec="seconds")]]
        if export.format is ExportFormat.CSV:
            yield from _csv(header, _counted(batches, export), audit_rows[1])
        else:
            yield from xlsx.stream([
                xlsx.Sheet(_sheet_name(), _flattened(header, _counted(batches, export)),
                           widths=[18, 38, 12, 28, 12, 28, 28] + [26] * (len(header) - 7)),
                xlsx.Sheet(str(AUDIT_SHEET), [row[1:] for row in audit_rows],
                           widths=[12, 70, 28])])
    export.is_complete = True


def _sheet_name() -> str:
    return str(_l("Reports"))


def _header(notice_slots: int, deadline_slots: int) -> list[str]:
    return [*(str(c) for c in REPORT_COLUMNS),
            *(str(c) % {"n": n} for n in range(1, notice_slots + 1) for c in NOTICE_COLUMNS),
            *(str(c) % {"n": n} for n in range(1, deadline_slots + 1)
              for c in DEADLINE_COLUMNS)]


def _counted(batches: Iterator[Sequence[Sequence[Any]]], export: Export
             ) -> Iterator[Sequence[Sequence[Any]]]:
    for rows in batches:
        export.rows += len(rows)
        yield rows


def _flattened(header: list[str], batches: Iterator[Sequence[Sequence[Any]]]
               ) -> Iterator[Sequence[Any]]:
    yield header
    for rows in batches:
        yield from rows


def _csv(header: list[str], batches: Iterator[Sequence[Sequence[Any]]],
         audit_row: list[Any]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")  # the BOM tells spreadsheet programs the file is UTF-8 (Cyrillic)
    writer.writerow(header)
    for rows in batches:
        writer.writerows(rows)
        yield _drain(buffer)
    writer.writerow(audit_row)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def record(session: Session, export: Export, actor_id: int | None) -> None:
    """Audit the export: who, which filters, how many rows, and whether it was finished."""
    audit.record(session, "export:created", actor_id=actor_id, data=export.audit_data(),
                 now=export.now)


def run(export: Export, actor_id: int | None) -> Iterator[bytes]:
    """Write the export from a snapshot of its own and audit it once it ends, finished or not
    (a download the browser abandoned is audited with the rows it had received)."""
    try:
        with get_db().reading() as session:
            snapshot(session)
            yield from stream(session, export)
    finally:
        with writing() as session:
            record(session, export, actor_id)
