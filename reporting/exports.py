"""The compliance log, exported: one row per report with its notices and deadlines, as CSV or
XLSX, streamed from the database in batches (constant memory, no temporary file).

Speed is the point of the shape: a batch of reports is flattened in one SQL statement
(notices and deadlines pivoted into numbered slots, times rendered in Almaty time, codes
turned into labels), so Python only hands finished rows to the C csv writer or the XLSX
writer. Every batch reads the same snapshot, which the audit head at the end belongs to.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import queue
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import audit, labels, xlsx
from .db import Database, get_db, writing
from .deadlines import ALMATY, start_of_local_day, to_local
from .errors import NotFoundError, ValidationError
from .models import (
    Agency,
    AuditHead,
    Deadline,
    District,
    ExportLine,
    Facility,
    Notice,
    Region,
    Report,
    User,
    UTCDateTime,
)
from .vocabulary import AckChannel, Circumstance, ExportFormat, Language, RiskFlag

BATCH = 1000
SWEEP_CHUNK = 2000  # reports looked at, and lines rendered at most, per short transaction
CSV_MIME = "text/csv"
CRLF = "\r\n"  # CSV's line end (RFC 4180)
# The form of a kept line (RenderedLine): part of every line's fingerprint, so that lines
# kept in an older form are never copied.
LINE_FORM = 2
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_Batch = TypeVar("_Batch", bound=Sequence[Any])
_T = TypeVar("_T")
_END = object()  # read_ahead's last hand-off

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


def _by_period(moment: str, render: Any, since: Any) -> str:
    branches = [f"WHEN {moment} >= {since(start)} THEN {render(offset)}"
                for start, offset in offset_periods() if start is not None]
    oldest = offset_periods()[-1][1]
    # NULL first: it would otherwise be compared with every period before falling through.
    return (f"(CASE WHEN {moment} IS NULL THEN NULL {' '.join(branches)} "
            f"ELSE {render(oldest)} END)")


def local_iso(moment: str, dialect: str) -> str:
    """SQL for a stored UTC moment as ISO 8601 in Almaty time with that day's offset (NULL
    stays NULL). The offsets come from Besik's pinned time zone data, not the server's."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): text comparison is time order.
        return _by_period(
            moment,
            lambda offset: (f"strftime('%Y-%m-%dT%H:%M:%S{_suffix(offset)}', {moment}, "
                            f"'{offset:+d} seconds')"),
            lambda start: f"'{start:%Y-%m-%d %H:%M:%S}'")
    return _by_period(
        moment,
        lambda offset: (f"(to_char(({moment} AT TIME ZONE 'UTC') + interval '{offset} seconds',"
                        f" 'YYYY-MM-DD\"T\"HH24:MI:SS') || '{_suffix(offset)}')"),
        lambda start: f"TIMESTAMPTZ '{start:%Y-%m-%d %H:%M:%S}+00'")


def _seconds_between(later: str, earlier: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"CAST(round((julianday({later}) - julianday({earlier})) * 86400.0) AS INTEGER)"
    return f"CAST(round(EXTRACT(EPOCH FROM ({later} - {earlier}))) AS INTEGER)"


# --- the rows ---------------------------------------------------------------------------------
#
# One statement per batch, written out as SQL (every value a bound parameter; the text is
# Besik's own): each report's notices and deadlines come as one
# text each (fields and rows joined by the unit separator, in order), from correlated
# subqueries on the report_id indexes. Window functions and GROUP BY pivots cost SQLite more
# than twice as much per report; here Python only splits each text into its columns.

SEP = "\x1f"
NOTICE_FIELDS = 7  # agency, sent, due, acknowledged, by, channel, escalation level
DEADLINE_FIELDS = 4  # rule, due, met, state
LEVEL = 6  # the escalation level's place among a notice's fields


class _Sql:
    """The bound parameters of a statement being written."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.binds: list[Any] = []

    def value(self, value: Any, type_: Any = None, expanding: bool = False) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        if type_ is not None or expanding:
            self.binds.append(bindparam(name, type_=type_, expanding=expanding))
        return f":{name}"

    def labels(self, column: str, table: dict[str, Any]) -> str:
        """A code as its label in the current language (an unknown code as itself)."""
        whens = " ".join(f"WHEN {self.value(code)} THEN {self.value(str(label))}"
                         for code, label in table.items())
        return f"(CASE {column} {whens} ELSE {column} END)"

    def statement(self, sql: str) -> Any:
        return text(sql).bindparams(*self.binds)


def _unit(dialect: str) -> str:
    """The unit separator (between fields and rows of a concatenated text), in SQL."""
    return "char(31)" if dialect == "sqlite" else "chr(31)"


def _concat(parts: list[str], dialect: str) -> str:
    return f" || {_unit(dialect)} || ".join(f"COALESCE({part}, '')" for part in parts)


def _aggregate(row: str, tables: str, where: str, order: str, dialect: str) -> str:
    """One text of every row, in order. SQLite (before 3.44) has no ORDER BY inside an
    aggregate: it concatenates in the order of an ordered subquery."""
    if dialect == "sqlite":
        return (f"(SELECT group_concat(x, char(31)) FROM (SELECT {row} AS x "  # noqa: S608
                f"FROM {tables} WHERE {where} ORDER BY {order}))")
    return (f"(SELECT string_agg({row}, chr(31) ORDER BY {order}) "  # noqa: S608
            f"FROM {tables} WHERE {where})")


def _flags(column: str, sql: _Sql) -> str:
    """The stored JSON list of risk flags as labels joined by '; ' (no code is part of
    another, so plain replacement is exact)."""
    flags = f"CAST({column} AS TEXT)"
    for separator in ('", "', '","'):
        flags = f"replace({flags}, {sql.value(separator)}, '; ')"
    for wrapper in ('["', '"]', "[]"):
        flags = f"replace({flags}, {sql.value(wrapper)}, '')"
    for code, label in RiskFlag.labels().items():
        flags = f"replace({flags}, {sql.value(code)}, {sql.value(str(label))})"
    return flags


def _guarded(column: str, guard: bool) -> str:
    """Text a person typed (names): a leading = + - @ would run as a formula in a spreadsheet
    opening the CSV, so it gets a quote first."""
    if not guard:
        return column
    return (f"(CASE WHEN substr({column}, 1, 1) IN ('=', '+', '-', '@') "
            f"THEN '''' || {column} ELSE {column} END)")


def _where(filters: Filters, sql: _Sql) -> list[str]:
    conditions = []
    if filters.first_day:
        conditions.append("r.received_at >= " + sql.value(
            start_of_local_day(filters.first_day), UTCDateTime()))
    if filters.last_day:
        conditions.append("r.received_at < " + sql.value(
            start_of_local_day(filters.last_day + timedelta(days=1)), UTCDateTime()))
    if filters.facility_ids is not None:
        conditions.append("r.facility_id IN "
                          + sql.value(list(filters.facility_ids), expanding=True))
    if filters.agency_id is not None:
        conditions.append("EXISTS (SELECT 1 FROM notices n WHERE "  # noqa: S608
                          f"n.report_id = r.id AND n.agency_id = {sql.value(filters.agency_id)})")
    return conditions


def _rows_statement(filters: Filters, has_after: bool, has_last: bool, now: datetime,
                    guard: bool, dialect: str, by_ids: bool = False
                    ) -> tuple[Any, dict[str, Any]]:
    """The rows of the reports after (:after_at, :after_id) up to (:last_at, :last_id), in
    (received_at, id) order (`by_ids`: of the reports :ids); with the parameters that do not
    change from batch to batch.

    Each row: the report's 12 fields, its notices' and its deadlines' texts, its revision and
    the first moment one of its pending deadlines turns overdue (the line's stale_at)."""
    sql = _Sql()
    states = labels.STATES

    def local(moment: str) -> str:
        return local_iso(moment, dialect)

    # Agency and officer by scalar lookups on their keys: a join here is planned per report
    # (PostgreSQL hashed every agency for each report's one notice).
    officer = (f"(SELECT replace(u.name, {_unit(dialect)}, '') FROM users u "  # noqa: S608
               "WHERE u.id = n.acknowledged_by_id)")
    notice = _concat([
        "(SELECT a.code FROM agencies a WHERE a.id = n.agency_id)", local("n.sent_at"),
        local("n.ack_due_at"), local("n.acknowledged_at"), _guarded(officer, guard),
        sql.labels("n.ack_channel", AckChannel.labels()), "CAST(n.escalation_level AS TEXT)"],
        dialect)
    met, met_late, overdue, pending = (sql.value(str(states[code])) for code in
                                       ("met", "met_late", "overdue", "pending"))
    deadline_state = (f"(CASE WHEN d.met_at IS NOT NULL THEN (CASE WHEN d.met_at <= d.due_at "
                      f"THEN {met} ELSE {met_late} END) WHEN d.due_at < "
                      f"{sql.value(now, UTCDateTime())} THEN {overdue} ELSE {pending} END)")
    deadline = _concat([sql.labels("d.rule", labels.RULES), local("d.due_at"),
                        local("d.met_at"), deadline_state], dialect)
    # After the first batch, the keyset's own lower bound is the period's: both databases
    # would otherwise scan from the period's start on every batch.
    conditions = _where(replace(filters, first_day=None) if has_after else filters, sql)
    if by_ids:
        sql.binds.append(bindparam("ids", expanding=True))
        conditions.append("r.id IN :ids")
    # Written out, not as row values: so both databases bound the scan with the index on
    # received_at (PostgreSQL would read every report for a row-value comparison).
    if has_after:
        sql.binds.append(bindparam("after_at", type_=UTCDateTime()))
        conditions.append("r.received_at >= :after_at AND (r.received_at > :after_at "
                          "OR r.id > :after_id)")
    if has_last:
        sql.binds.append(bindparam("last_at", type_=UTCDateTime()))
        conditions.append("r.received_at <= :last_at AND (r.received_at < :last_at "
                          "OR r.id <= :last_id)")
    columns = [
        "r.reference", "r.id", "f.code", _guarded("f.name", guard), "di.code",
        sql.labels("r.circumstance", Circumstance.labels()), _flags("r.risk_flags", sql),
        local("r.discovered_at"), local("r.filed_at"), local("r.received_at"),
        _seconds_between("r.received_at", "r.filed_at", dialect),
        sql.labels("r.state", states),
        _aggregate(notice, "notices n", "n.report_id = r.id", "n.sent_at, n.id", dialect),
        _aggregate(deadline, "deadlines d", "d.report_id = r.id", "d.id", dialect),
        "r.revision",
        f"(SELECT min(d.due_at) FROM deadlines d WHERE d.report_id = r.id "  # noqa: S608
        f"AND d.met_at IS NULL AND d.due_at >= {sql.value(now, UTCDateTime())})"]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return sql.statement(
        f"SELECT {', '.join(columns)} FROM reports r "  # noqa: S608
        "JOIN facilities f ON f.id = r.facility_id "
        # A report keeps its routed district; rows from before the column, their facility's.
        f"JOIN districts di ON di.id = COALESCE(r.district_id, f.district_id) {where}"
        "ORDER BY r.received_at, r.id"), sql.params


def _slots(session: Session, filters: Filters, kept: KeptLines | None) -> tuple[int, int]:
    """How many notices and deadlines the busiest exported report has (at least 1 each): a
    line rendered ahead knows its own, any other report is counted."""
    def counted(model: Any) -> Any:
        return (select(func.count()).select_from(model)
                .where(model.report_id == Report.id).scalar_subquery())

    if kept is None:
        query = select(func.max(counted(Notice)), func.max(counted(Deadline))).select_from(Report)
    else:
        joined, line = _with_lines(select(), kept, session.get_bind().dialect.name)
        query = joined.add_columns(func.max(func.coalesce(line.notices, counted(Notice))),
                                   func.max(func.coalesce(line.deadlines, counted(Deadline))))
    notices, deadlines = session.execute(_filtered(query, filters)).one()
    return max(1, notices or 0), max(1, deadlines or 0)


def _batches(session: Session, filters: Filters, now: datetime, guard: bool
             ) -> Iterator[Sequence[Any]]:
    """The rows as the database gives them, BATCH reports at a time, in order of receipt:
    each batch is bounded by the (received_at, id) of its last report, found first with the
    index."""
    dialect = session.get_bind().dialect.name
    first, following = (_filtered(select(Report.received_at, Report.id), chosen).order_by(
        Report.received_at, Report.id) for chosen in (filters, replace(filters, first_day=None)))
    # Built once: the statement is long, and compiling it again for each batch would cost
    # as much as a few hundred rows.
    statements = {(has_after, has_last): _rows_statement(filters, has_after, has_last, now,
                                                         guard, dialect)
                  for has_after in (False, True) for has_last in (False, True)}
    after: tuple[datetime, str] | None = None
    while True:
        query = first if after is None else following.where(
            Report.received_at >= after[0],
            or_(Report.received_at > after[0], Report.id > after[1]))
        found = session.execute(query.offset(BATCH - 1).limit(1)).first()
        last = (found[0], found[1]) if found is not None else None
        statement, params = statements[after is not None, last is not None]
        if after is not None:
            params = params | {"after_at": after[0], "after_id": after[1]}
        if last is not None:
            params = params | {"last_at": last[0], "last_id": last[1]}
        rows = session.execute(statement, params).all()
        if rows:
            yield rows
        if last is None:
            return
        after = last


def _fields(row: Sequence[Any], notice_width: int, deadline_width: int, numbers: bool
            ) -> list[Any]:
    """A report's row with its notices and deadlines spread over their numbered columns
    (`numbers`: escalation levels as numbers, for a spreadsheet)."""
    notices = row[12].split(SEP) if row[12] else []
    deadlines = row[13].split(SEP) if row[13] else []
    if numbers:
        for place in range(LEVEL, len(notices), NOTICE_FIELDS):
            notices[place] = int(notices[place])
    return [*row[:12], *notices, *[""] * (notice_width - len(notices)),
            *deadlines, *[""] * (deadline_width - len(deadlines))]


def _spread(batches: Iterator[Sequence[Any]], notice_slots: int, deadline_slots: int,
            numbers: bool) -> Iterator[Sequence[Sequence[Any]]]:
    notice_width, deadline_width = NOTICE_FIELDS * notice_slots, DEADLINE_FIELDS * deadline_slots
    for rows in batches:
        yield [_fields(row, notice_width, deadline_width, numbers) for row in rows]


# --- CSV lines, and the lines rendered ahead ------------------------------------------------
#
# A CSV line is its fields, each written by the csv module, joined by commas: so a report's
# line can be kept in two pieces, its own and its notices' fields (head) and its deadlines'
# (tail), and padded to any export's numbers of notice and deadline columns by adding commas.

class _Encoder:
    """Fields into one CSV line (without its end), as csv.writer writes them."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator=CRLF)

    def line(self, fields: Sequence[Any]) -> str:
        self.writer.writerow(fields)
        return _taken(self.buffer)[:-len(CRLF)]


@dataclass(frozen=True)
class RenderedLine:
    """A report's line in pieces (ExportLine's columns): head + the commas of its missing
    notices + tail + the commas of its missing deadlines is the export's line."""

    head: str
    tail: str
    notices: int
    deadlines: int


def render_line(row: Sequence[Any], encoder: _Encoder) -> RenderedLine:
    """A row of the statement as a line to keep (its tail with the comma that joins it)."""
    notices = row[12].split(SEP) if row[12] else []
    deadlines = row[13].split(SEP) if row[13] else []
    return RenderedLine(encoder.line([*row[:12], *notices]),
                        "," + encoder.line(deadlines) if deadlines else "",
                        len(notices) // NOTICE_FIELDS, len(deadlines) // DEADLINE_FIELDS)


def _pads(width: int, slots: int) -> list[str]:
    """The commas that pad a line holding n of `slots` (n = 0..slots) to all of them."""
    return ["," * (width * (slots - n)) for n in range(slots + 1)]


def _line_batches(session: Session, export: Export, kept: str, notice_slots: int,
                  deadline_slots: int) -> Iterator[str]:
    """The CSV lines, BATCH reports at a time in order of receipt: each report's line
    rendered ahead where it is still true (padded to this export's columns), any other
    rendered now (_line_rows reads both, a batch ahead)."""
    notice_pads, deadline_pads = (_pads(NOTICE_FIELDS, notice_slots),
                                  _pads(DEADLINE_FIELDS, deadline_slots))
    notice_width, deadline_width = NOTICE_FIELDS * notice_slots, DEADLINE_FIELDS * deadline_slots
    encoder = _Encoder()
    for rows, rendered in read_ahead(session, _line_rows(session, export, kept)):
        export.rows += len(rows)
        export.rows_rendered += len(rendered)
        # Pieces joined once: each line's text is copied once, into the batch's.
        pieces: list[str] = []
        for _, report_id, head, tail, notices, deadlines in rows:
            if head is None:
                pieces += (encoder.line(_fields(rendered[report_id], notice_width,
                                                deadline_width, False)), CRLF)
            else:
                pieces += (head, notice_pads[notices], tail, deadline_pads[deadlines], CRLF)
        yield "".join(pieces)


def _line_rows(session: Session, export: Export, kept: str
               ) -> Iterator[tuple[Sequence[Any], dict[str, Any]]]:
    """BATCH reports at a time in order of receipt, each with its line where that is still
    true; the others' rows rendered by one statement for the batch (by report id)."""
    filters, now = export.filters, export.now
    dialect = session.get_bind().dialect.name
    # received_at as the driver gives it: only the batch's last one is needed, as a moment.
    joined, line = _with_lines(select(), KeptLines(export.language, kept, now), dialect)
    lines = (joined.add_columns(literal_column("reports.received_at").label("received"),
                                Report.id, line.head, line.tail, line.notices, line.deadlines)
             .order_by(Report.received_at, Report.id).limit(BATCH))
    first, following = (_filtered(lines, chosen) for chosen in (
        filters, replace(filters, first_day=None)))
    others, params = _rows_statement(Filters(), False, False, now, True, dialect, by_ids=True)
    after: tuple[datetime, str] | None = None
    while True:
        query = first if after is None else following.where(
            Report.received_at >= after[0],
            or_(Report.received_at > after[0], Report.id > after[1]))
        # Core, not the ORM's result machinery: nothing here is an entity.
        rows = session.connection().execute(query).all()
        if not rows:
            return
        missing = [row.id for row in rows if row.head is None]
        rendered = {row[1]: row for row in session.execute(
            others, params | {"ids": missing})} if missing else {}
        yield rows, rendered
        if len(rows) < BATCH:
            return
        after = (_as_moment(rows[-1].received), rows[-1].id)


@dataclass(frozen=True)
class KeptLines:
    """Which lines rendered ahead an export may copy: of this language and fingerprint, and
    true at `now`."""

    language: str
    fingerprint: str
    now: datetime


def _with_lines(query: Select, kept: KeptLines, dialect: str) -> tuple[Select, Any]:
    """`query` over reports, each joined to its line where that is still true (rendered from
    the report's revision as it is, with the same fingerprint, showing no deadline as pending
    that has fallen due since); with the line's columns (head, tail, notices, deadlines,
    report_id) to select.

    PostgreSQL looks each line up by its key in a LATERAL subquery, kept from being turned
    back into a plain join by its LIMIT 1 (the key is unique, so the limit changes nothing
    else): as a join, a table grown since its last ANALYZE (empty before the worker's first
    pass) was planned as a few rows to read whole for every report, and a pass over
    1,000,000 reports slowed to ~200 reports/s as it grew."""
    line = ExportLine
    still_true = and_(line.language == kept.language, line.received_at == Report.received_at,
                      line.report_id == Report.id, line.revision == Report.revision,
                      line.fingerprint == kept.fingerprint, line.rendered_at <= kept.now,
                      or_(line.stale_at.is_(None), line.stale_at > kept.now))
    if dialect == "postgresql":
        found = (select(line.head, line.tail, line.notices, line.deadlines, line.report_id)
                 .where(still_true).limit(1).lateral("kept_line"))
        return query.select_from(Report).outerjoin(found, true()), found.c
    return query.select_from(Report).outerjoin(line, still_true), line.__table__.c


def _fresh_lines(batches: Iterator[Sequence[Sequence[Any]]], export: Export
                 ) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=CRLF)
    for rows in batches:
        export.rows_rendered += len(rows)
        writer.writerows(rows)
        yield _taken(buffer)


def fingerprint(session: Session) -> str:
    """What a line's text depends on besides its report's rows, in the current language: the
    statement that renders it (its SQL, with Besik's code, and its labels) and the codes and
    names of the places and people it names."""
    dialect = session.get_bind().dialect.name
    statement, params = _rows_statement(Filters(), False, False, _EPOCH, True, dialect)
    digest = hashlib.sha256(f"{LINE_FORM}:{statement}".encode())
    digest.update(json.dumps([(k, v) for k, v in sorted(params.items()) if isinstance(v, str)],
                             ensure_ascii=False).encode())
    for query in (select(Facility.id, Facility.code, Facility.name),
                  select(District.id, District.code), select(Agency.id, Agency.code),
                  select(User.id, User.name)):
        for row in session.execute(query.order_by(query.selected_columns[0])):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]  # 64 bits: told apart from its own earlier values only


def render_lines(session: Session, report_ids: Sequence[str], language: str, now: datetime
                 ) -> list[dict[str, Any]]:
    """These reports' lines in `language` as they are now, as rows of export_lines."""
    received = {row.id: row.received_at for row in session.execute(
        select(Report.id, Report.received_at).where(Report.id.in_(report_ids)))}
    with force_locale(language):
        dialect = session.get_bind().dialect.name
        statement, params = _rows_statement(Filters(), False, False, now, True, dialect,
                                             by_ids=True)
        kept = fingerprint(session)
        encoder = _Encoder()
        found = []
        for row in session.execute(statement, params | {"ids": list(report_ids)}):
            line = render_line(row, encoder)
            found.append({"report_id": row[1], "language": language,
                          "received_at": received[row[1]], "revision": row[14],
                          "fingerprint": kept, "rendered_at": now, "stale_at": _moment(row[15]),
                          "notices": line.notices, "deadlines": line.deadlines,
                          "head": line.head, "tail": line.tail})
        return found


def _moment(value: Any) -> datetime | None:
    """A moment from a raw statement (SQLite: its stored text), or None."""
    return None if value is None else _as_moment(value)


def _as_moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def keep_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store rendered lines, replacing the ones they renew."""
    if not rows:
        return
    insert_ = (sqlite_insert(ExportLine) if session.get_bind().dialect.name == "sqlite"
               else postgresql_insert(ExportLine))
    statement = insert_.on_conflict_do_update(
        index_elements=["language", "received_at", "report_id"],
        set_={column: insert_.excluded[column] for column in (
            "revision", "fingerprint", "rendered_at", "stale_at", "notices", "deadlines",
            "head", "tail")})
    session.execute(statement, rows)


@dataclass
class Sweep:
    """How much one pass of render_ahead saw and did."""

    reports: int = 0
    rendered: int = 0


def render_ahead(db: Database, now: datetime, languages: Sequence[str] | None = None,
                 chunk: int = SWEEP_CHUNK) -> Sweep:
    """One pass over every report, newest first: render the lines that are missing or no
    longer true, `chunk` reports at a time (a short read, then a short write of what was
    rendered). A report changed meanwhile keeps a line of an older revision, never used."""
    sweep = Sweep()
    for language in languages or Language.values():
        with db.reading() as session, force_locale(language):
            kept = fingerprint(session)  # once a pass: a line of another is just not used
        after: tuple[datetime, str] | None = None
        while True:
            with db.reading() as session, force_locale(language):
                keys = session.execute(_sweep_query(kept, language, now, after, chunk,
                                                    session.get_bind().dialect.name)).all()
                missing = [key.id for key in keys if key.kept is None]
                rendered = render_lines(session, missing, language, now) if missing else []
            if rendered:
                with db.writing() as session:
                    keep_lines(session, rendered)
            sweep.reports += len(keys)
            sweep.rendered += len(rendered)
            if len(keys) < chunk:
                break
            after = (keys[-1].received_at, keys[-1].id)
    return sweep


def _sweep_query(kept: str, language: str, now: datetime, after: tuple[datetime, str] | None,
                 chunk: int, dialect: str) -> Select:
    """The next `chunk` reports before `after` (newest first), each with its line if that is
    still true (kept)."""
    joined, line = _with_lines(select(), KeptLines(language, kept, now), dialect)
    query = (joined.add_columns(Report.received_at, Report.id, line.report_id.label("kept"))
             .order_by(Report.received_at.desc(), Report.id.desc()).limit(chunk))
    if after is not None:  # written out, so that both databases bound the index scan
        query = query.where(Report.received_at <= after[0],
                            or_(Report.received_at < after[0], Report.id < after[1]))
    return query


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
    # CSV: copy the lines rendered ahead where they are still true (False: render every row).
    use_lines: bool = True
    rows_rendered: int = 0  # rows rendered by this export itself (the others were copied)

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
    already reads one snapshot per transaction), tuned for the export's statements."""
    if session.get_bind().dialect.name == "postgresql":
        connection = session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        # Each batch is one short statement with long expressions: compiling them to machine
        # code would cost more per batch (~170 ms) than running them.
        connection.exec_driver_sql("SET LOCAL jit = off")
        # A batch is a thousand rows read by key: starting parallel workers for each (~10 ms)
        # cost more than the batch itself.
        connection.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")


def stream(session: Session, export: Export) -> Iterator[bytes]:
    """The file's bytes, in pieces; `session` must have been through snapshot() first."""
    with force_locale(export.language):
        yield from _file(session, export)
    export.is_complete = True


def _file(session: Session, export: Export) -> Iterator[bytes]:
    """The header, the rows (CSV copying lines, CSV rendering every row, or XLSX) and the
    audit head."""
    guard = export.format is ExportFormat.CSV
    uses_lines = export.format is ExportFormat.CSV and export.use_lines
    kept = fingerprint(session) if uses_lines else ""
    notice_slots, deadline_slots = _slots(
        session, export.filters,
        KeptLines(export.language, kept, export.now) if uses_lines else None)
    header = _header(notice_slots, deadline_slots)
    head_row = session.get(AuditHead, 1)
    export.head = (head_row.seq, head_row.hash) if head_row else (0, audit.GENESIS)
    audit_rows: list[list[Any]] = [
        ["# audit-head", *[str(c) for c in AUDIT_COLUMNS]],
        ["# audit-head", export.head[0], export.head[1],
         to_local(export.now).isoformat(timespec="seconds")]]
    if export.format is ExportFormat.CSV:
        lines = (_line_batches(session, export, kept, notice_slots, deadline_slots)
                 if uses_lines else _fresh_lines(_counted(_spread(
                     read_ahead(session, _batches(session, export.filters, export.now, guard)),
                     notice_slots, deadline_slots, numbers=False), export), export))
        yield from _csv(header, lines, audit_rows[1])
        return
    rows = _spread(read_ahead(session, _batches(session, export.filters, export.now, guard)),
                   notice_slots, deadline_slots, numbers=True)
    yield from xlsx.stream([
        xlsx.Sheet(_sheet_name(), _flattened(header, _counted(rows, export)),
                   widths=[18, 38, 12, 28, 12, 28, 28] + [26] * (len(header) - 7)),
        xlsx.Sheet(str(AUDIT_SHEET), [row[1:] for row in audit_rows],
                   widths=[12, 70, 28])])


def read_ahead(session: Session, batches: Iterator[_T]) -> Iterator[_T]:
    """On PostgreSQL, `batches` read by a thread of its own, each while the one before is
    written out: the server renders the next batch on its own core while Python writes the
    file, instead of each waiting for the other (1,000,000 rows: XLSX 9,900 -> 12,600 rows/s,
    CSV copying lines 51,000 -> 62,000). One batch ahead at most, so memory stays flat. The
    thread is the only user of `session` until the file ends or is abandoned; it runs in a
    copy of this context (app, language). SQLite works inside this process, where a second
    thread only contends for the interpreter (13 % slower), so there it reads in line."""
    if session.get_bind().dialect.name != "postgresql":
        return batches
    return _read_by_thread(batches)


def _read_by_thread(batches: Iterator[_T]) -> Iterator[_T]:
    handoff: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                handoff.put((item, error), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand(batch):
                    return
            hand(_END)
        except BaseException as error:  # raised again in the reader of the file
            hand(_END, error)
        finally:
            if isinstance(batches, Generator):
                batches.close()

    reader = threading.Thread(target=contextvars.copy_context().run, args=(produce,),
                              name="export-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:  # the file ended, failed or was abandoned: the session is this thread's again
        stop.set()
        reader.join()


def _sheet_name() -> str:
    return str(_l("Reports"))


def _header(notice_slots: int, deadline_slots: int) -> list[str]:
    return [*(str(c) for c in REPORT_COLUMNS),
            *(str(c) % {"n": n} for n in range(1, notice_slots + 1) for c in NOTICE_COLUMNS),
            *(str(c) % {"n": n} for n in range(1, deadline_slots + 1)
              for c in DEADLINE_COLUMNS)]


def _counted(batches: Iterator[_Batch], export: Export) -> Iterator[_Batch]:
    for rows in batches:
        export.rows += len(rows)
        yield rows


def _flattened(header: list[str], batches: Iterator[Sequence[Sequence[Any]]]
               ) -> Iterator[Sequence[Any]]:
    yield header
    for rows in batches:
        yield from rows


def _csv(header: list[str], batches: Iterator[str], audit_row: list[Any]) -> Iterator[bytes]:
    """The file: each batch's lines (text, each ending in CRLF) between the header and the
    audit head."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=CRLF)
    buffer.write("\ufeff")  # the BOM tells spreadsheet programs the file is UTF-8 (Cyrillic)
    writer.writerow(header)
    head = _taken(buffer)  # sent with the first batch
    for lines in batches:
        yield (head + lines).encode()
        head = ""
    writer.writerow(audit_row)
    yield (head + _taken(buffer)).encode()


def _taken(buffer: io.StringIO) -> str:
    """What `buffer` holds, leaving it empty."""
    text_ = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text_


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
