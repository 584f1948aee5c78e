"""What officers did about a report (examined, placed, ...): each meets its own deadline."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from . import audit
from .errors import NoticeNotAcknowledgedError, ReportClosedError, ValidationError
from .models import AgencyKind, Notice, ReportAction, ReportState, User
from .vocabulary import OfficerAction

# Each kind of agency records its own actions, and only those.
ACTIONS_OF: dict[AgencyKind, tuple[OfficerAction, ...]] = {
    AgencyKind.GUARDIANSHIP: (OfficerAction.EXAMINED, OfficerAction.PLACED,
                              OfficerAction.REGISTERED, OfficerAction.POLICE_INFORMED,
                              OfficerAction.CLOSED),
    AgencyKind.POLICE: (OfficerAction.INVESTIGATION_OPENED, OfficerAction.NO_OFFENCE_FOUND),
}
# The deadline of the acting agency's own notice that each action meets.
ACTION_MEETS = {OfficerAction.EXAMINED: "examine_child",
                OfficerAction.REGISTERED: "register_in_data_bank"}


def record_action(session: Session, notice_id: str, user: User, action: OfficerAction,
                  note: str | None, now: datetime) -> ReportAction:
    """Record what an officer of the notice's agency did; it meets that notice's matching
    deadline. Loads the notice and report inside the caller's write transaction; flushes
    and audits, never commits."""
    notice = session.get_one(Notice, notice_id)
    report = notice.report
    if action not in ACTIONS_OF[notice.agency.kind]:
        raise ValidationError({"action": _l("This action is not one of your agency's.")})
    if report.state is ReportState.CLOSED:
        raise ReportClosedError()
    if notice.acknowledged_at is None:
        raise NoticeNotAcknowledgedError()
    row = ReportAction(report_id=report.id, notice_id=notice.id, user_id=user.id,
                       action=action.value, note=note, created_at=now)
    session.add(row)
    rule = ACTION_MEETS.get(action)
    for deadline in report.deadlines:
        if deadline.notice_id == notice.id and deadline.rule == rule and deadline.met_at is None:
            deadline.met_at = now
    if action is OfficerAction.CLOSED:
        report.state = ReportState.CLOSED
    session.flush()
    audit.record(session, "report:action", actor_id=user.id, subject=f"report:{report.id}",
                 data={"action": action.value, "note": note, "agency": user.agency_id},
                 now=now)
    return row
