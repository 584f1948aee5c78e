"""What officers did about a report (examined, placed, ...): each meets its own deadline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from . import audit
from .models import Report, ReportAction, ReportState, User
from .vocabulary import OfficerAction

# The deadline each action meets.
ACTION_MEETS = {OfficerAction.EXAMINED: "examine_child",
                OfficerAction.REGISTERED: "register_in_data_bank",
                OfficerAction.POLICE_INFORMED: "inform_police"}


def record_action(session: Session, report_id: str, notice_id: str, user: User,
                  action: OfficerAction, note: str | None, now: datetime) -> ReportAction:
    """Record what an officer did; it meets the matching deadline. Loads the report inside
    the caller's write transaction; flushes and audits, never commits."""
    report = session.get_one(Report, report_id)
    row = ReportAction(report_id=report.id, notice_id=notice_id, user_id=user.id,
                       action=action.value, note=note, created_at=now)
    session.add(row)
    rule = ACTION_MEETS.get(action)
    for deadline in report.deadlines:
        if deadline.rule == rule and deadline.met_at is None:
            deadline.met_at = now
    if action is OfficerAction.CLOSED:
        report.state = ReportState.CLOSED
    session.flush()
    audit.record(session, "report:action", actor_id=user.id, subject=f"report:{report.id}",
                 data={"action": action.value, "note": note, "agency": user.agency_id},
                 now=now)
    return row
