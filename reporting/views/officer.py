"""The officer's inbox: the agency's notices, most urgent first."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select

from ..access import allow
from ..db import get_session
from ..models import Notice, Role, utcnow
from ..present import notice_state

bp = Blueprint("officer", __name__)


@bp.get("/inbox")
@allow(Role.OFFICER)
def inbox() -> Any:
    """Unacknowledged notices first, each ordered by its acknowledgement deadline."""
    notices = get_session().scalars(
        select(Notice).where(Notice.agency_id == current_user.agency_id)
        .order_by(Notice.acknowledged_at.is_not(None), Notice.ack_due_at).limit(200)).all()
    now = utcnow()
    return render_template("officer/inbox.html", notices=notices,
                           states={n.id: notice_state(n, now) for n in notices})
