"""The nurse's form (works with JavaScript off) and the report page (the receipt)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from .. import labels
from ..access import SIGNED_IN, allow, visible_reports
from ..db import get_session
from ..deadlines import ALMATY, exact_seconds, to_local
from ..models import Facility, Report, Role, new_uuid, utcnow
from ..notices import ACTIONS, notice_for_officer, routes_for
from ..policy import current_rules
from ..present import report_json
from ..reports import CIRCUMSTANCES, RISK_FLAGS, SEXES, FilingError, clean_report
from . import file_and_commit

bp = Blueprint("reports", __name__)

# Form field name -> path in the report body; the same schema validates both.
TEXT_FIELDS = ("id", "circumstance", "child.sex", "child.iin", "child.condition", "mother.iin",
               "mother.full_name", "mother.birth_date", "mother.citizenship", "mother.phone",
               "mother.address", "notes")
LOCAL_TIME_FIELDS = ("discovered_at", "child.born_at")


def form_to_body(form: MultiDict[str, str]) -> dict[str, Any]:
    """Turn the flat HTML form into the API's nested report body."""
    body: dict[str, Any] = {}
    for name in TEXT_FIELDS + LOCAL_TIME_FIELDS + ("child.weight_g",):
        value = form.get(name, "").strip()
        if not value:
            continue
        if name in LOCAL_TIME_FIELDS:
            value = _local_to_iso(value)
        parsed: Any = int(value) if name == "child.weight_g" and value.isdigit() else value
        head, _, tail = name.partition(".")
        if tail:
            body.setdefault(head, {})[tail] = parsed
        else:
            body[head] = parsed
    flags = form.getlist("risk_flags")
    if flags:
        body["risk_flags"] = flags
    body.setdefault("child", {})
    return body


def _local_to_iso(value: str) -> str:
    # <input type=datetime-local> has no zone: the nurse means Kazakhstan time.
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # the schema reports it
    return moment.replace(tzinfo=ALMATY).isoformat() if moment.tzinfo is None else value


def _form_page(values: dict[str, Any], errors: dict[str, Any], status: int = 200) -> Any:
    facility = current_user.facility
    return render_template("reports/new.html", values=values, errors=errors,
                           circumstances=CIRCUMSTANCES, sexes=SEXES, risk_flags=RISK_FLAGS,
                           facility=facility, outbox=_outbox_context(facility),
                           js_strings=labels.outbox_strings()), status


def _outbox_context(facility: Facility | None) -> dict[str, Any]:
    """What the phone needs to show a report it cannot send yet: the deadline, a phone."""
    session = get_session()
    _, rules = current_rules(session)
    duration = rules["report_to_guardianship"].duration
    context: dict[str, Any] = {"deadline_seconds": exact_seconds(duration)}
    routes = (routes_for(session, facility.district_id, facility.district.region_id,
                         has_risk=False) if facility else [])
    if routes:
        agency = routes[0][0]
        context |= {"agency_name": agency.name, "agency_phone": agency.phone}
    return context


@bp.get("/reports/new")
@allow(Role.REPORTER)
def new() -> Any:
    """The empty form; its hidden id makes a double tap file one report, not two."""
    now_local = to_local(utcnow()).strftime("%Y-%m-%dT%H:%M")
    return _form_page({"id": new_uuid(), "discovered_at": now_local}, {})


@bp.post("/reports/new")
@allow(Role.REPORTER)
def create() -> Any:
    """File from the plain form post."""
    now = utcnow()
    session = get_session()
    try:
        cleaned = clean_report(form_to_body(request.form), now)
        filed = file_and_commit(current_user, cleaned, now)
    except FilingError as exc:
        session.rollback()
        values = request.form.to_dict() | {"risk_flags": request.form.getlist("risk_flags")}
        return _form_page(values, exc.fields or {"id": exc.message}, 422)
    return redirect(url_for("reports.show", report_id=filed.report.id, filed=1), 303)


@bp.get("/reports/<report_id>")
@allow(SIGNED_IN)
def show(report_id: str) -> Any:
    """The report, its notices and deadlines; outside the caller's scope: 404."""
    report = get_session().scalars(visible_reports(current_user)
                                   .where(Report.id == report_id)).first()
    if report is None:
        abort(404)
    officer_notice = (notice_for_officer(get_session(), report, current_user)
                      if current_user.role is Role.OFFICER else None)
    return render_template("reports/show.html", report=report,
                           view=report_json(report, utcnow()), officer_notice=officer_notice,
                           actions=ACTIONS, is_receipt=request.args.get("filed") == "1")
