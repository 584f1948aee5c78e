"""Who viewed which child's record: a report:viewed audit entry for every report opened,
and once per session for the reports a list shows."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, Insert, exists
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
    statement = _insert_ignoring_duplicates(session.get_bind().dialect.name)
    inserted = session.connection().execute(statement, [
        {"session_key": session_key, "report_id": report_id, "user_id": user_id,
         "first_at": now} for report_id in report_ids]).scalars().all()
    audit.record_all(session, [audit.Entry("report:viewed", actor_id=user_id,
                                           subject=f"report:{report_id}",
                                           data={"via": "list"}) for report_id in inserted],
                     now=now)
    return len(inserted)


@functools.cache
def _insert_ignoring_duplicates(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_VIEWS).on_conflict_do_nothing(index_elements=["session_key", "report_id"])
            .returning(_VIEWS.c.report_id))
