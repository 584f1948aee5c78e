"""The officer's pages: the inbox, acknowledging, recording actions, the one-tap ack page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import clock
from ..access import PUBLIC, allow, token_authenticated
from ..acknowledgements import acknowledge, acknowledge_with_token
from ..actions import record_action
from ..bodies import ACTION
from ..db import reading, writing
from ..errors import AckTokenError, NotFoundError, ValidationError
from ..models import Notice, Role
from ..present import notice_state
from ..vocabulary import AckChannel
from . import officers_report_and_notice
from .reports import report_page

bp = Blueprint("officer", __name__)


@bp.get("/inbox")
@allow(Role.OFFICER)
def inbox() -> Any:
    """Unacknowledged notices first, each ordered by its acknowledgement deadline."""
    now = clock.now()
    with reading() as session:
        notices = session.scalars(
            select(Notice).where(Notice.agency_id == current_user.agency_id)
            .order_by(Notice.acknowledged_at.is_not(None), Notice.ack_due_at).limit(200)).all()
    return render_template("officer/inbox.html", notices=notices, now=now,
                           states={n.id: notice_state(n, now) for n in notices})


def _own_notice_id(notice_id: str) -> str:
    with reading() as session:
        notice = session.get(Notice, notice_id)
    if notice is None or notice.agency_id != current_user.agency_id:
        raise NotFoundError()
    return notice.id


@bp.post("/inbox/<notice_id>/acknowledge")
@allow(Role.OFFICER)
def acknowledge_from_inbox(notice_id: str) -> Any:
    """The inbox's Acknowledge button."""
    own = _own_notice_id(notice_id)
    with writing() as session:
        acknowledge(session, own, current_user, channel=AckChannel.INBOX, now=clock.now())
    return redirect(url_for("officer.inbox"), 303)


@bp.post("/reports/<report_id>/acknowledge")
@allow(Role.OFFICER)
def acknowledge_from_report(report_id: str) -> Any:
    """The report page's Acknowledge button."""
    _, notice = officers_report_and_notice(report_id)
    with writing() as session:
        acknowledge(session, notice.id, current_user, channel=AckChannel.REPORT_PAGE,
                    now=clock.now())
    return redirect(url_for("reports.show", report_id=report_id), 303)


@bp.post("/reports/<report_id>/actions")
@allow(Role.OFFICER)
def action_from_report(report_id: str) -> Any:
    """Record an action from the report page (validated as the API's body is)."""
    report, notice = officers_report_and_notice(report_id)
    try:
        data = ACTION.clean({k: v for k, v in request.form.items() if k in ACTION.fields})
        with writing() as session:
            record_action(session, notice.id, current_user, data["action"],
                          data.get("note"), clock.now())
    except ValidationError as exc:
        return report_page(report, exc.fields, 422)
    return redirect(url_for("reports.show", report_id=report_id), 303)


@bp.get("/ack/<notice_id>")
@allow(PUBLIC)
def ack_page(notice_id: str) -> Any:
    """One tap from a notification on browsers without notification buttons."""
    # Nothing about the notice is shown before the token is used: ids are not secrets.
    return render_template("officer/ack.html", notice=None, notice_id=notice_id,
                           token=request.args.get("t", ""), done=False)


@bp.post("/ack/<notice_id>")
@allow(PUBLIC)
@token_authenticated
def ack_with_token(notice_id: str) -> Any:
    """The one-tap page's button: the token in the form is the proof."""
    try:
        with writing() as session:
            notice = acknowledge_with_token(session, notice_id, request.form.get("t", ""),
                                            channel=AckChannel.ACK_PAGE, now=clock.now())
            return render_template("officer/ack.html", notice=notice, token="", done=True)
    except AckTokenError:
        return render_template("officer/ack.html", notice=None, token="", done=False,
                               refused=True), 403
