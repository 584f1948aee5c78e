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
from sqlalchemy import Select, bindparam, exists, func, or_, select, text
from sqlalchemy.orm import Session

from . import audit, labels, xlsx
from .db import get_db, writing
from .deadlines import ALMATY, start_of_local_day, to_local
from .errors import NotFoundError, ValidationError
from .models import (
    Agency,
    AuditHead,
    Deadline,
    District,
    Facility,
    Notice,
    Region,
    Report,
    UTCDateTime,
)
from .vocabulary import AckChannel, Circumstance, ExportFormat, RiskFlag

BATCH = 1000
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
                    guard: bool, dialect: str) -> tuple[Any, dict[str, Any]]:
    """The rows of the reports after (:after_at, :after_id) up to (:last_at, :last_id), in
    (received_at, id) order; with the parameters that do not change from batch to batch."""
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
    conditions = _where(filters, sql)
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
        _aggregate(deadline, "deadlines d", "d.report_id = r.id", "d.id", dialect)]
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return sql.statement(
        f"SELECT {', '.join(columns)} FROM reports r "  # noqa: S608
        "JOIN facilities f ON f.id = r.facility_id "
        # A report keeps its routed district; rows from before the column, their facility's.
        f"JOIN districts di ON di.id = COALESCE(r.district_id, f.district_id) {where}"
        "ORDER BY r.received_at, r.id"), sql.params


def _most_per_report(session: Session, model: Any, filters: Filters) -> int:
    """The largest number of `model` rows (notices, deadlines) any exported report has."""
    per_report = (select(func.count().label("n")).select_from(model)
                  .where(model.report_id.in_(_filtered(select(Report.id), filters)))
                  .group_by(model.report_id).subquery())
    return int(session.scalar(select(func.max(per_report.c.n))) or 0)


def _batches(session: Session, filters: Filters, now: datetime, guard: bool
             ) -> Iterator[Sequence[Any]]:
    """The rows as the database gives them, BATCH reports at a time, in order of receipt:
    each batch is bounded by the (received_at, id) of its last report, found first with the
    index."""
    dialect = session.get_bind().dialect.name
    keys = _filtered(select(Report.received_at, Report.id), filters).order_by(
        Report.received_at, Report.id)
    # Built once: the statement is long, and compiling it again for each batch would cost
    # as much as a few hundred rows.
    statements = {(has_after, has_last): _rows_statement(filters, has_after, has_last, now,
                                                         guard, dialect)
                  for has_after in (False, True) for has_last in (False, True)}
    after: tuple[datetime, str] | None = None
    while True:
        query = keys if after is None else keys.where(
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


def _spread(batches: Iterator[Sequence[Any]], notice_slots: int, deadline_slots: int,
            numbers: bool) -> Iterator[Sequence[Sequence[Any]]]:
    """Each report's notices and deadlines spread over their numbered columns (`numbers`:
    escalation levels as numbers, for a spreadsheet)."""
    notice_width = NOTICE_FIELDS * notice_slots
    no_notices, no_deadlines = [""] * notice_width, [""] * (DEADLINE_FIELDS * deadline_slots)
    levels = range(LEVEL, notice_width, NOTICE_FIELDS)
    for rows in batches:
        spread = []
        for row in rows:
            notices = row[12].split(SEP) if row[12] else []
            deadlines = row[13].split(SEP) if row[13] else []
            if numbers:
                for place in levels[:len(notices) // NOTICE_FIELDS]:
                    notices[place] = int(notices[place])
            spread.append([*row[:12], *notices, *no_notices[len(notices):],
                           *deadlines, *no_deadlines[len(deadlines):]])
        yield spread


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
    already reads one snapshot per transaction), tuned for the export's statements."""
    if session.get_bind().dialect.name == "postgresql":
        connection = session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        # Each batch is one short statement with long expressions: compiling them to machine
        # code would cost more per batch (~170 ms) than running them.
        connection.exec_driver_sql("SET LOCAL jit = off")


def stream(session: Session, export: Export) -> Iterator[bytes]:
    """The file's bytes, in pieces; `session` must have been through snapshot() first."""
    with force_locale(export.language):
        guard = export.format is ExportFormat.CSV
        notice_slots = max(1, _most_per_report(session, Notice, export.filters))
        deadline_slots = max(1, _most_per_report(session, Deadline, export.filters))
        header = _header(notice_slots, deadline_slots)
        head_row = session.get(AuditHead, 1)
        export.head = (head_row.seq, head_row.hash) if head_row else (0, audit.GENESIS)
        batches = _spread(_batches(session, export.filters, export.now, guard),
                          notice_slots, deadline_slots,
                          numbers=export.format is ExportFormat.XLSX)
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
