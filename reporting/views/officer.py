"""The officer's pages: the inbox, acknowledging, recording actions, the one-tap ack page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..access import PUBLIC, allow, token_authenticated
from ..db import begin_write, get_session
from ..models import Notice, Role, utcnow
from ..notices import (
    ACTIONS,
    AckTokenError,
    acknowledge,
    acknowledge_with_token,
    record_action,
)
from ..present import notice_state
from . import officers_report_and_notice

bp = Blueprint("officer", __name__)


@bp.get("/inbox")
@allow(Role.OFFICER)
def inbox() -> Any:
    """Unacknowledged notices first, each ordered by its acknowledgement deadline."""
    notices = get_session().scalars(
        select(Notice).where(Notice.agency_id == current_user.agency_id)
        .order_by(Notice.acknowledged_at.is_not(None), Notice.ack_due_at).limit(200)).all()
    now = utcnow()
    return render_template("officer/inbox.html", notices=notices, now=now,
                           states={n.id: notice_state(n, now) for n in notices})


def _own_notice(notice_id: str) -> Notice:
    notice = get_session().get(Notice, notice_id)
    if notice is None or notice.agency_id != current_user.agency_id:
        abort(404)
    return notice


@bp.post("/inbox/<notice_id>/acknowledge")
@allow(Role.OFFICER)
def acknowledge_from_inbox(notice_id: str) -> Any:
    """The inbox's Acknowledge button."""
    notice = _own_notice(notice_id)
    session = get_session()
    begin_write(session)
    acknowledge(session, notice, current_user, channel="inbox", now=utcnow())
    session.commit()
    return redirect(url_for("officer.inbox"), 303)


@bp.post("/reports/<report_id>/acknowledge")
@allow(Role.OFFICER)
def acknowledge_from_report(report_id: str) -> Any:
    """The report page's Acknowledge button."""
    _, notice = officers_report_and_notice(report_id)
    session = get_session()
    begin_write(session)
    acknowledge(session, notice, current_user, channel="report_page", now=utcnow())
    session.commit()
    return redirect(url_for("reports.show", report_id=report_id), 303)


@bp.post("/reports/<report_id>/actions")
@allow(Role.OFFICER)
def action_from_report(report_id: str) -> Any:
    """Record an action from the report page."""
    report, notice = officers_report_and_notice(report_id)
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(422)
    note = (request.form.get("note") or "").strip()[:2000] or None
    session = get_session()
    begin_write(session)
    record_action(session, report, notice, current_user, action, note, utcnow())
    session.commit()
    return redirect(url_for("reports.show", report_id=report_id), 303)


@bp.route("/ack/<notice_id>", methods=["GET", "POST"])
@allow(PUBLIC)
@token_authenticated
def ack_page(notice_id: str) -> Any:
    """One tap from a notification on browsers without notification buttons."""
    token = request.values.get("t", "")
    session = get_session()
    if request.method == "GET":
        # Nothing about the notice is shown before the token is used: ids are not secrets.
        return render_template("officer/ack.html", notice=None, token=token, done=False)
    begin_write(session)
    try:
        notice = acknowledge_with_token(session, notice_id, token, channel="ack_page",
                                        now=utcnow())
    except AckTokenError:
        session.rollback()
        return render_template("officer/ack.html", notice=None, token="", done=False,
                               refused=True), 403
    session.commit()
    return render_template("officer/ack.html", notice=notice, token="", done=True)
