"""The administrator's pages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import func, select

from .. import audit
from ..access import allow, visible_reports
from ..db import reading
from ..models import Role

bp = Blueprint("admin", __name__)


@bp.get("/admin")
@allow(Role.ADMIN)
def index() -> Any:
    """The compliance overview (grows with the compliance dashboard)."""
    with reading() as session:
        total = session.scalar(select(func.count()).select_from(
            visible_reports(current_user).subquery()))
    return render_template("admin/index.html", total=total)


@bp.get("/admin/audit")
@allow(Role.ADMIN)
def audit_page() -> Any:
    """Verify the audit hash chain."""
    with reading() as session:
        result = audit.verify(session)
    return render_template("admin/audit.html", result=result)
