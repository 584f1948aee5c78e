"""Pages of reports for the API's list, read with a few Core statements.

An officer's inbox polls `GET /api/v1/reports` every few seconds, each page up to 50 reports
with their notices, deadlines, amendments and actions: loading those as ORM objects (about
300 a page) cost three times the SQL behind them. These records carry the same attributes
under the same names, read-only, so that present.report_json and evidence.timeline show
them exactly as they show the models.

A page is one statement for the reports (with their facility, their reporter's name and
whether this session already saw each: a poll costs a round trip per statement, and 200
officers polling every 5 s make 40 polls a second), then one each for notices, deadlines,
amendments and actions.

Most of a poll's reports are those the last poll showed, unchanged: each web process keeps
the bodies it rendered (RenderedReports) and renders again only a report whose stamp moved.
The stamp is read with the page, in its one statement, from everything a body shows beyond
the time: the report's revision (raised by the database on every change to the report, its
notices or its deadlines, migration 0011), its facility's and reporter's names, its notices'
agencies, acknowledgers and sent pushes (the timeline's "delivered"), its actions and
amendments with their people's names. The time moves a body only at a due moment (a notice or
deadline falling overdue): a body is kept until the first one after it was rendered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from flask import Flask
from sqlalchemy import ColumnElement, Select, String, and_, func, or_, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from . import viewing
from .access import visible_reports
from .models import (
    Agency,
    Deadline,
    Facility,
    Notice,
    PushDelivery,
    Report,
    ReportAction,
    ReportAmendment,
    Role,
    User,
    table_of,
)
from .vocabulary import DeliveryStatus

_REPORTS = table_of(Report)
_NOTICES, _DEADLINES = table_of(Notice), table_of(Deadline)
_AMENDMENTS, _ACTIONS = table_of(ReportAmendment), table_of(ReportAction)
# Aliases, not the tables: a scope's subquery over facilities or users (a region admin's)
# would otherwise correlate with these joins and stop filtering.
_FACILITY = Facility.__table__.alias("listed_facility")
_REPORTER = User.__table__.alias("listed_reporter")
_ACKNOWLEDGER = User.__table__.alias("acknowledger")
_PERSON = User.__table__.alias("person")
_NAMES = (_FACILITY.c.code.label("facility_code"), _FACILITY.c.name.label("facility_name"),
          _REPORTER.c.name.label("reporter_name"))
_EXTRA = [column.key for column in _NAMES]
RENDERED_KEPT = 5_000  # bodies per web process, a few KB each


_STAMP_NOTICE = Notice.__table__.alias("stamp_notice")
_STAMP_AGENCY = Agency.__table__.alias("stamp_agency")
_STAMP_ACKNOWLEDGER = User.__table__.alias("stamp_acknowledger")
_STAMP_DELIVERY = PushDelivery.__table__.alias("stamp_delivery")
_STAMP_PERSON = User.__table__.alias("stamp_person")


def _text(column: Any) -> ColumnElement[str]:
    return func.coalesce(sql_cast(column, String), "")


def _notices_stamp() -> Any:
    """Each notice's agency, acknowledger's name and count of pushes sent: what of its notices
    a body shows that the revision does not follow (names change in their own tables, and a
    push sent changes a delivery, not the notice)."""
    notice, agency, by = _STAMP_NOTICE, _STAMP_AGENCY, _STAMP_ACKNOWLEDGER
    sent = (select(func.count()).where(_STAMP_DELIVERY.c.notice_id == notice.c.id,
                                       _STAMP_DELIVERY.c.status == DeliveryStatus.SENT.value)
            .correlate(notice).scalar_subquery())
    return (select(func.aggregate_strings(
        _text(notice.c.id) + "|" + _text(agency.c.code) + "|" + _text(agency.c.name) + "|"
        + _text(agency.c.kind) + "|" + _text(by.c.name) + "|" + _text(sent), ";"))
        .select_from(notice.join(agency, agency.c.id == notice.c.agency_id)
                     .outerjoin(by, by.c.id == notice.c.acknowledged_by_id))
        .where(notice.c.report_id == _REPORTS.c.id).correlate(_REPORTS).scalar_subquery())


def _people_stamp(table: Any, person_id: str) -> Any:
    """The report's actions or amendments (new ones are rows of their own) with their people's
    names."""
    record = table.alias(f"stamp_{table.name}")
    person = _STAMP_PERSON
    return (select(func.aggregate_strings(_text(record.c.id) + ":" + _text(person.c.name), ";"))
            .select_from(record.join(person, person.c.id == record.c[person_id]))
            .where(record.c.report_id == _REPORTS.c.id).correlate(_REPORTS).scalar_subquery())


# Built once: a poll's statement is put together from them, not these subqueries afresh.
_STAMP_COLUMNS = (_REPORTS.c.revision, *_NAMES, _notices_stamp().label("notices_stamp"),
                  _people_stamp(_ACTIONS, "user_id").label("actions_stamp"),
                  _people_stamp(_AMENDMENTS, "author_id").label("amendments_stamp"))


@dataclass(frozen=True)
class Rendered:
    stamp: tuple[Any, ...]
    rendered_at: datetime
    stale_at: datetime | None
    text: str


class RenderedReports:
    """Report bodies this web process rendered for lists, the least recently used dropped."""

    def __init__(self, kept: int = RENDERED_KEPT) -> None:
        self._kept = kept
        self._bodies: OrderedDict[str, Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, report_id: str, stamp: tuple[Any, ...], now: datetime) -> str | None:
        """The body (JSON) rendered from this stamp, unless the time has moved it since."""
        with self._lock:
            kept = self._bodies.get(report_id)
            if kept is None or kept.stamp != stamp or now < kept.rendered_at \
                    or (kept.stale_at is not None and now >= kept.stale_at):
                return None
            self._bodies.move_to_end(report_id)
            return kept.text

    def put(self, report_id: str, rendered: Rendered) -> None:
        with self._lock:
            self._bodies[report_id] = rendered
            self._bodies.move_to_end(report_id)
            while len(self._bodies) > self._kept:
                self._bodies.popitem(last=False)


def rendered_reports(app: Flask) -> RenderedReports:
    """The app's bodies (one per web process: each gunicorn worker has its own app)."""
    found: RenderedReports = app.extensions.setdefault("besik.rendered_reports",
                                                        RenderedReports())
    return found


Render = Callable[[Sequence[Report], datetime], list[dict[str, Any]]]
Encode = Callable[[Any], str]


@dataclass(frozen=True)
class Page:
    """Up to `limit` bodies (each as JSON), newest first; the last one's (received_at, id)
    when more follow; the reports this session was already recorded viewing."""

    items: list[str]
    ids: list[str]
    more_after: tuple[datetime, str] | None
    seen: frozenset[str]


_ROUTED = Notice.__table__.alias("routed")


def newest_first(session: Session, user: User, conditions: Sequence[ColumnElement[bool]],
                 after: tuple[datetime, str] | None, limit: int) -> Select[Any]:
    """The reports in `user`'s scope that meet `conditions` (on Report), newest first, after
    the cursor `after` (received_at, id): a select for list_page's pages of `limit`.

    An officer's are found through the agency's notices, newest report first (their index,
    migration 0012), each report checked as it comes, until `limit` are found: a page costs
    what it shows, not what the agency's inbox holds. Found through the reports instead, the
    database matched every open report against the agency's notices before choosing the
    newest (it cannot know that an agency's newest reports are mostly the open ones)."""
    if user.role is Role.OFFICER:
        # One more than a page: list_page tells by it whether more follow. A subquery, not
        # its ids: the page is one statement of one text (psycopg parses afresh, every time,
        # a statement of over 50 parameters).
        routed = _routed(session.get_bind().dialect.name, user.agency_id, conditions, after,
                         limit + 1)
        return (select(Report).where(Report.id.in_(routed))
                .order_by(Report.received_at.desc(), Report.id.desc()))
    query = visible_reports(user).where(*conditions)
    if after is not None:
        query = query.where(_after(Report.received_at, Report.id, after))
    return query.order_by(Report.received_at.desc(), Report.id.desc())


def _routed(dialect: str, agency_id: int | None, conditions: Sequence[ColumnElement[bool]],
            after: tuple[datetime, str] | None, limit: int) -> Select[tuple[str]]:
    """The ids of the newest `limit` reports routed to the agency that meet `conditions`."""
    report = select(Report.id).where(Report.id == _ROUTED.c.report_id, *conditions)
    query = select(_ROUTED.c.report_id)
    if dialect == "postgresql":
        # A LATERAL subquery with a LIMIT is checked once per notice, in the index's order:
        # PostgreSQL can neither flatten it into a join nor reorder the walk (an EXISTS it
        # would turn into a join).
        query = query.select_from(_ROUTED.join(report.limit(1).lateral("meets"), true()))
    else:  # SQLite has no LATERAL; it checks a correlated EXISTS once per row it walks
        query = query.where(report.exists())
    query = (query.where(_ROUTED.c.agency_id == agency_id)
             .order_by(_ROUTED.c.report_received_at.desc(), _ROUTED.c.report_id.desc())
             .limit(limit))
    if after is not None:
        query = query.where(_after(_ROUTED.c.report_received_at, _ROUTED.c.report_id, after))
    return query


def _after(received_at: Any, report_id: Any, cursor: tuple[datetime, str]
           ) -> ColumnElement[bool]:
    """Older than the cursor's report in the list's order (received_at, id), newest first."""
    moment, last_id = cursor
    return or_(received_at < moment, and_(received_at == moment, report_id < last_id))


def list_page(session: Session, query: Select[Any], limit: int, session_key: str,
              now: datetime, render: Render, encode: Encode, kept: RenderedReports) -> Page:
    """The first `limit` reports `query` (a select of Report, filtered and ordered) finds, as
    `render` shows them at `now` and `encode` writes them: unchanged ones from `kept`, the
    others read, rendered and written (encoding a page's fifty bodies cost more than the rest
    of a poll of unchanged ones)."""
    # Only what tells a kept body from a stale one: a poll's reports are mostly kept, and
    # reading each one's whole row (its JSON and a dozen times) would cost more than that.
    rows = session.execute(
        query.limit(limit + 1).with_only_columns(
            _REPORTS.c.id, _REPORTS.c.received_at,
            viewing.seen_by(session_key, _REPORTS.c.id).label("is_seen"), *_STAMP_COLUMNS)
        .join(_FACILITY, _FACILITY.c.id == _REPORTS.c.facility_id)
        .join(_REPORTER, _REPORTER.c.id == _REPORTS.c.reporter_id)).all()
    shown = rows[:limit]
    stamps = {row.id: _stamp(row) for row in shown}
    bodies = {row.id: kept.get(row.id, stamps[row.id], now) for row in shown}
    missing = [row for row in shown if bodies[row.id] is None]
    if missing:
        reports = _reports(session, session.execute(
            select(*_REPORTS.c, *_NAMES)
            .join(_FACILITY, _FACILITY.c.id == _REPORTS.c.facility_id)
            .join(_REPORTER, _REPORTER.c.id == _REPORTS.c.reporter_id)
            .where(_REPORTS.c.id.in_([row.id for row in missing]))).all())
        for report, body in zip(reports, render(reports, now), strict=True):
            text = bodies[report.id] = encode(body)
            kept.put(report.id, Rendered(stamps[report.id], now, _stale_at(report, now), text))
    last = shown[-1] if shown and len(rows) > limit else None
    return Page(items=[cast(str, bodies[row.id]) for row in shown],
                ids=[row.id for row in shown],
                more_after=(last.received_at, last.id) if last is not None else None,
                seen=frozenset(row.id for row in shown if row.is_seen))


def _stamp(row: Any) -> tuple[Any, ...]:
    return tuple(getattr(row, column.key) for column in _STAMP_COLUMNS)


def _stale_at(report: Report, now: datetime) -> datetime | None:
    """The first moment after `now` at which a notice or deadline of the report falls due
    (its state, and a notice's lateness, change then); None when none will."""
    due = [n.ack_due_at for n in report.notices if n.acknowledged_at is None] + [
        d.due_at for d in report.deadlines if d.met_at is None]
    return min((moment for moment in due if moment >= now), default=None)


def _reports(session: Session, rows: Sequence[Any]) -> list[Report]:
    """These reports (`rows`: their columns and _NAMES), each with its facility, reporter,
    notices, deadlines, amendments and actions."""
    reports = {row.id: _report(row) for row in rows}
    ids = list(reports)
    for notice in session.execute(
            select(*_NOTICES.c, Agency.code.label("agency_code"),
                   Agency.name.label("agency_name"), Agency.kind.label("agency_kind"),
                   _ACKNOWLEDGER.c.name.label("acknowledged_by_name"))
            .join(Agency, Agency.id == _NOTICES.c.agency_id)
            .outerjoin(_ACKNOWLEDGER, _ACKNOWLEDGER.c.id == _NOTICES.c.acknowledged_by_id)
            .where(_NOTICES.c.report_id.in_(ids)).order_by(_NOTICES.c.sent_at)):
        fields = dict(notice._mapping)
        agency = SimpleNamespace(code=fields.pop("agency_code"), name=fields.pop("agency_name"),
                                 kind=fields.pop("agency_kind"))
        by = fields.pop("acknowledged_by_name")
        reports[notice.report_id].notices.append(SimpleNamespace(
            **fields, agency=agency,
            acknowledged_by=SimpleNamespace(name=by) if notice.acknowledged_by_id else None))
    for deadline in session.execute(select(_DEADLINES).where(_DEADLINES.c.report_id.in_(ids))
                                    .order_by(_DEADLINES.c.due_at)):
        reports[deadline.report_id].deadlines.append(SimpleNamespace(**deadline._mapping))
    _attach_with_person(session, reports, _AMENDMENTS, "author_id", "author", "amendments")
    _attach_with_person(session, reports, _ACTIONS, "user_id", "user", "actions")
    # Read-only records shaped like the models: present and evidence read them the same way.
    return [cast(Report, report) for report in reports.values()]


def _report(row: Any) -> SimpleNamespace:
    fields = dict(row._mapping)
    extra = {name: fields.pop(name) for name in _EXTRA}
    return SimpleNamespace(
        **fields, facility=SimpleNamespace(code=extra["facility_code"],
                                           name=extra["facility_name"]),
        reporter=SimpleNamespace(name=extra["reporter_name"]),
        notices=[], deadlines=[], amendments=[], actions=[])


def _attach_with_person(session: Session, reports: dict[str, SimpleNamespace], table: Any,
                        person_id: str, person: str, collection: str) -> None:
    rows: Sequence[Any] = session.execute(
        select(table, _PERSON.c.name.label("person_name"))
        .join(_PERSON, _PERSON.c.id == table.c[person_id])
        .where(table.c.report_id.in_(list(reports))).order_by(table.c.id)).all()
    for row in rows:
        fields = dict(row._mapping)
        name = fields.pop("person_name")
        getattr(reports[row.report_id], collection).append(SimpleNamespace(
            **fields, **{person: SimpleNamespace(name=name)}))
