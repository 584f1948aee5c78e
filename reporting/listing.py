"""Pages of reports for the API's list, read with a few Core statements.

An officer's inbox polls `GET /api/v1/reports` every few seconds, each page up to 50 reports
with their notices, deadlines, amendments and actions: loading those as ORM objects (about
300 a page) cost three times the SQL behind them. These records carry the same attributes
under the same names, read-only, so that present.report_json and evidence.timeline show
them exactly as they show the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from .models import (
    Agency,
    Deadline,
    Facility,
    Notice,
    Report,
    ReportAction,
    ReportAmendment,
    User,
    table_of,
)

_REPORTS = table_of(Report)
_NOTICES, _DEADLINES = table_of(Notice), table_of(Deadline)
_AMENDMENTS, _ACTIONS = table_of(ReportAmendment), table_of(ReportAction)
_ACKNOWLEDGER = User.__table__.alias("acknowledger")


def reports_page(session: Session, query: Select[Any]) -> list[Report]:
    """The reports `query` (a select of Report, filtered, ordered and limited) finds, each
    with its facility, reporter, notices, deadlines, amendments and actions."""
    rows = session.execute(query.with_only_columns(*_REPORTS.c)).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    facilities = {r.id: SimpleNamespace(code=r.code, name=r.name) for r in session.execute(
        select(Facility.id, Facility.code, Facility.name)
        .where(Facility.id.in_({row.facility_id for row in rows})))}
    names = _names(session, {row.reporter_id for row in rows})
    reports = {row.id: SimpleNamespace(
        **row._mapping, facility=facilities[row.facility_id],
        reporter=SimpleNamespace(name=names[row.reporter_id]),
        notices=[], deadlines=[], amendments=[], actions=[]) for row in rows}
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
    return [cast(Report, reports[row.id]) for row in rows]


def _names(session: Session, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    return {r.id: r.name for r in session.execute(
        select(User.id, User.name).where(User.id.in_(user_ids)))}


def _attach_with_person(session: Session, reports: dict[str, SimpleNamespace], table: Any,
                        person_id: str, person: str, collection: str) -> None:
    rows: Sequence[Any] = session.execute(
        select(table).where(table.c.report_id.in_(list(reports))).order_by(table.c.id)).all()
    names = _names(session, {getattr(row, person_id) for row in rows})
    for row in rows:
        getattr(reports[row.report_id], collection).append(SimpleNamespace(
            **row._mapping, **{person: SimpleNamespace(name=names[getattr(row, person_id)])}))
