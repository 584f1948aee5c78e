"""Who viewed which child's record: a report:viewed audit entry for every report opened,
and once per session for the reports a list shows."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, Insert, String, bindparam, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import audit
from .models import ReportView, table_of

_VIEWS = table_of(ReportView)


def record_view(session: Session, user_id: int, report_id: str, via: str,
                now: datetime) -> None:
    """One report opened (API, page, evidence record): audited every time."""
    audit.record(session, "report:viewed", actor_id=user_id, subject=f"report:{report_id}",
                 data={"via": via}, now=now)


def seen_by(session_key: str, report_id: ColumnElement[str]) -> Exists:
    """Whether this session was already recorded viewing the report `report_id` names: a
    column of the list's own statement (its primary key answers it), not a statement of
    its own."""
    return exists().where(_VIEWS.c.session_key == session_key,
                          _VIEWS.c.report_id == report_id)


def record_listed(session: Session, user_id: int, session_key: str,
                  report_ids: Sequence[str], now: datetime) -> int:
    """Record the listed reports as viewed by this session, each once (a twin request that
    got there first wins its rows); audited. Returns how many were new."""
    if not report_ids:
        return 0
    dialect = session.get_bind().dialect.name
    rows = {"session_key": session_key, "user_id": user_id, "first_at": now}
    if dialect == "postgresql":
        result = session.connection().execute(_insert_unnested(), {
            **rows, "report_ids": list(report_ids)})
    else:
        result = session.connection().execute(_insert_ignoring_duplicates(), [
            {**rows, "report_id": report_id} for report_id in report_ids])
    new = set(result.scalars())
    inserted = [report_id for report_id in report_ids if report_id in new]
    audit.append_all(session, [audit.Entry("report:viewed", actor_id=user_id,
                                           subject=f"report:{report_id}",
                                           data={"via": "list"}) for report_id in inserted],
                     now=now)
    return len(inserted)


@functools.cache
def _insert_unnested() -> Insert:
    """PostgreSQL: the page's ids as one array, in one statement of one text (prepared once
    run often), rather than one INSERT per row (psycopg's executemany) or a VALUES list
    compiled afresh for each count of rows."""
    source = select(bindparam("session_key", type_=_VIEWS.c.session_key.type),
                    func.unnest(bindparam("report_ids", type_=postgresql.ARRAY(String))),
                    bindparam("user_id", type_=_VIEWS.c.user_id.type),
                    bindparam("first_at", type_=_VIEWS.c.first_at.type))
    return (postgresql.insert(_VIEWS)
            .from_select(["session_key", "report_id", "user_id", "first_at"], source)
            .on_conflict_do_nothing(index_elements=["session_key", "report_id"])
            .returning(_VIEWS.c.report_id))


@functools.cache
def _insert_ignoring_duplicates() -> Insert:
    """SQLite: one row per id (SQLAlchemy sends them as one statement there)."""
    return (sqlite.insert(_VIEWS)
            .on_conflict_do_nothing(index_elements=["session_key", "report_id"])
            .returning(_VIEWS.c.report_id))
