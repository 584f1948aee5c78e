"""One blueprint per audience; views authorise, validate, call one operation, respond."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from ..access import visible_reports
from ..db import begin_write, get_session
from ..models import Notice, Report, User
from ..notices import notice_for_officer
from ..reports import Filed, ReportInvalid, already_filed, file_report, plan_filing


def file_and_commit(reporter: User, cleaned: dict[str, Any], now: datetime) -> Filed:
    """The request boundary for filing: reads first, then one short write transaction."""
    session = get_session()
    existing = already_filed(session, reporter, cleaned)  # a phone's retry takes no lock
    if existing is not None:
        return Filed(existing, is_new=False)
    plan = plan_filing(session, reporter, cleaned)
    begin_write(session)
    try:
        report = file_report(session, plan, cleaned, now=now)
        session.commit()
    except (IntegrityError, ReportInvalid):
        # The same report arrived twice at once (a phone's sync and online replays racing):
        # the loser's INSERT fails on the id, or its claim on the reserved reference the
        # winner just used. Either way the loser answers with the winner's report.
        session.rollback()
        existing = already_filed(session, reporter, cleaned)
        if existing is None:
            raise
        return Filed(existing, is_new=False)
    return Filed(report, is_new=True)


def officers_report_and_notice(report_id: str) -> tuple[Report, Notice]:
    """The report (in the officer's scope, else 404) and its notice to the officer's agency."""
    session = get_session()
    report = session.scalars(visible_reports(current_user).where(Report.id == report_id)).first()
    notice = notice_for_officer(session, report, current_user) if report else None
    if report is None or notice is None:
        abort(404)
    return report, notice
