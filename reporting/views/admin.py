"""The administrator's pages: the compliance dashboard, the export and the audit log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from .. import audit, charts, clock, compliance, coverage, labels
from ..access import allow, visible_reports
from ..bodies import AUDIT_QUERY, COMPLIANCE_QUERY, EXPORT_QUERY
from ..db import reading
from ..errors import ValidationError
from ..models import Agency, District, Facility, Region, Role
from ..vocabulary import ExportFormat, Language
from . import compliance_scope, streamed_export

bp = Blueprint("admin", __name__)


@bp.get("/admin")
@allow(Role.ADMIN)
def index() -> Any:
    """The dashboard: who reports and answers on time, what is overdue now, and every gap
    through which a report could fall (the same figures as GET /api/v1/compliance)."""
    now = clock.now()
    args = {k: v for k, v in request.args.items() if k in COMPLIANCE_QUERY.fields}
    try:
        scope = compliance_scope(COMPLIANCE_QUERY.clean(args), now)
        errors: dict[str, Any] = {}
    except ValidationError as exc:
        scope, errors = compliance_scope({}, now), exc.fields
    with reading() as session:
        figures = compliance.figures(session, scope, now)
        gaps = coverage.gaps(session, scope.region_id, now)
        total = session.scalar(select(func.count()).select_from(
            visible_reports(current_user).subquery()))
    chart = charts.on_time_bars(figures["facilities"],
                                _("Reports on time and late, by facility"))
    return render_template("admin/index.html", figures=figures, gaps=gaps, chart=chart,
                           scope=scope, args=args, errors=errors, total=total,
                           js_strings=labels.countdown_strings()), 422 if errors else 200


@bp.get("/admin/export")
@allow(Role.ADMIN)
def export_page() -> Any:
    """Choose a period, a place and a format; with a format chosen, the file (as GET
    /api/v1/export)."""
    args = {k: v for k, v in request.args.items() if k in EXPORT_QUERY.fields and v}
    errors: dict[str, Any] = {}
    if "format" in args:
        try:
            return streamed_export(EXPORT_QUERY.clean(args))
        except ValidationError as exc:
            errors = exc.fields
    return render_template("admin/export.html", args=args, errors=errors,
                           choosers=_export_choosers(current_user.region_id),
                           formats=ExportFormat.labels(), languages=Language.labels()), (
        422 if errors else 200)


def _export_choosers(region_id: int | None) -> list[tuple[str, Any, list[tuple[str, str]]]]:
    """The regions, facilities and agencies an admin may export, for the form's lists."""
    with reading() as session:
        regions = select(Region.code, Region.name).order_by(Region.code)
        facilities = (select(Facility.code, Facility.name)
                      .join(District, District.id == Facility.district_id)
                      .order_by(Facility.code))
        agencies = select(Agency.code, Agency.name).order_by(Agency.code)
        if region_id is not None:
            regions = regions.where(Region.id == region_id)
            facilities = facilities.where(District.region_id == region_id)
            agencies = agencies.where(Agency.region_id == region_id)
        return [(name, title, [(row.code, row.name) for row in session.execute(query)])
                for name, title, query in (("region", _("Region"), regions),
                                           ("facility", _("Facility"), facilities),
                                           ("agency", _("Agency"), agencies))]


@bp.get("/admin/audit")
@allow(Role.ADMIN)
def audit_page() -> Any:
    """The chain's verification, and its entries filtered by day and event (as GET
    /api/v1/audit), newest first."""
    args = {k: v for k, v in request.args.items() if k in AUDIT_QUERY.fields}
    try:
        query, errors = AUDIT_QUERY.clean(args), {}
    except ValidationError as exc:
        query, errors = {}, exc.fields
    with reading() as session:
        result = audit.verify(session)
        entries, next_cursor = audit.page(
            session, first_day=query.get("from"), last_day=query.get("to"),
            event=query.get("event"), before_seq=query.get("cursor"),
            limit=query.get("limit", 100))
        names = audit.actor_names(session, entries)
    older: dict[str, Any] = args | {"cursor": str(next_cursor)}
    older_url = url_for("admin.audit_page", **older) if next_cursor else None
    return render_template("admin/audit.html", result=result, entries=entries, names=names,
                           args=args, errors=errors, older_url=older_url), (
        422 if errors else 200)
