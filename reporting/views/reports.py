"""The nurse's form (works with JavaScript off) and the report page (the receipt)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from .. import clock, evidence, labels, viewing
from ..access import SIGNED_IN, allow
from ..acknowledgements import notice_for_officer
from ..actions import ACTIONS_OF
from ..amendments import AMENDING_ROLES, amend_report, clean_amendment, column_of
from ..bodies import CORRECTABLE
from ..db import reading, writing
from ..deadlines import ALMATY, exact_seconds, to_local
from ..errors import Fields, ReportIdConflictError, ValidationError, refusal_of
from ..models import Facility, Report, Role, new_uuid
from ..policy import current_rules
from ..present import report_json
from ..reports import clean_report
from ..routing import routes_for
from ..vocabulary import Circumstance, RiskFlag, Sex
from . import file_and_commit, report_in_scope

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


def _form_page(values: dict[str, Any], errors: Fields, status: int = 200) -> Any:
    facility = current_user.facility
    return render_template("reports/new.html", values=values, errors=errors,
                           circumstances=Circumstance, sexes=Sex, risk_flags=RiskFlag,
                           facility=facility, outbox=_outbox_context(facility),
                           js_strings=labels.outbox_strings()), status


def _outbox_context(facility: Facility | None) -> dict[str, Any]:
    """What the phone needs to show a report it cannot send yet: the deadline, a phone."""
    with reading() as session:
        _, rules = current_rules(session)
        routes = (routes_for(session, facility.district_id, facility.district.region_id,
                             has_risk=False) if facility else [])
    duration = rules["report_to_guardianship"].duration
    context: dict[str, Any] = {"deadline_seconds": exact_seconds(duration)}
    if routes:
        agency = routes[0][0]
        context |= {"agency_name": agency.name, "agency_phone": agency.phone}
    return context


@bp.get("/reports/new")
@allow(Role.REPORTER)
def new() -> Any:
    """The empty form; its hidden id makes a double tap file one report, not two."""
    now_local = to_local(clock.now()).strftime("%Y-%m-%dT%H:%M")
    return _form_page({"id": new_uuid(), "discovered_at": now_local}, {})


@bp.post("/reports/new")
@allow(Role.REPORTER)
def create() -> Any:
    """File from the plain form post."""
    now = clock.now()
    try:
        filed = file_and_commit(current_user, clean_report(form_to_body(request.form), now), now)
    except (ValidationError, ReportIdConflictError) as exc:
        values = request.form.to_dict() | {"risk_flags": request.form.getlist("risk_flags")}
        refusal = refusal_of(exc)
        return _form_page(values, exc.fields or {"id": refusal.message}, refusal.status)
    return redirect(url_for("reports.show", report_id=filed.report.id, filed=1), 303)


@bp.get("/reports/<report_id>")
@allow(SIGNED_IN)
def show(report_id: str) -> Any:
    """The report, its notices and deadlines; outside the caller's scope: 404. Audited."""
    page = report_page(report_in_scope(report_id))
    with writing() as session:
        viewing.record_view(session, current_user.id, report_id, "page", clock.now())
    return page


def report_page(report: Report, errors: Fields | None = None, status: int = 200) -> Any:
    """The report page (with an officer's action form and its errors, if any)."""
    officer_notice = None
    with reading() as session:
        if current_user.role is Role.OFFICER:
            officer_notice = notice_for_officer(session, report, current_user)
        history = evidence.histories(session, [report])[report.id]
    actions = ACTIONS_OF[officer_notice.agency.kind] if officer_notice else ()
    return render_template("reports/show.html", report=report,
                           view=report_json(report, clock.now(), history),
                           timeline=evidence.timeline(report, history),
                           officer_notice=officer_notice, actions=actions, errors=errors or {},
                           can_correct=current_user.role in AMENDING_ROLES,
                           is_receipt=request.args.get("filed") == "1",
                           is_corrected=request.args.get("corrected") == "1"), status


# --- correcting a report (an amendment), from a plain form --------------------------------


def correction_values(report: Report) -> dict[str, Any]:
    """The correction form's fields, filled with the report's values as the form shows them."""
    return {path: _form_value(getattr(report, column_of(path))) for path in CORRECTABLE.paths()}


def _form_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):  # <input type=datetime-local>: Kazakhstan time
        return to_local(value).strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def form_to_amendment(form: MultiDict[str, str], shown: dict[str, Any]) -> dict[str, Any]:
    """The correction form as the API's amendment body: only the fields the person changed
    from what the form showed; an emptied field clears it, one not posted stays as it is."""
    changes: dict[str, Any] = {}
    for path, before in shown.items():
        if path not in form:
            continue
        value: Any
        if isinstance(before, list):
            # The form posts an empty risk_flags first, so that unticking every box is seen.
            value = [flag for flag in form.getlist(path) if flag]
            if sorted(value) == sorted(before):
                continue
        else:
            value = form.get(path, "").strip()
            if value == before:
                continue
            value = _from_form(path, value)
        head, _, tail = path.partition(".")
        if tail:
            changes.setdefault(head, {})[tail] = value
        else:
            changes[head] = value
    return {"changes": changes, "reason": form.get("reason", "")}


def _from_form(path: str, value: str) -> Any:
    if not value:
        return None
    if path in LOCAL_TIME_FIELDS:
        return _local_to_iso(value)
    if path == "child.weight_g" and value.isdigit():
        return int(value)
    return value


def _correction_page(report: Report, values: dict[str, Any], errors: Fields,
                     status: int = 200) -> Any:
    return render_template("reports/correct.html", report=report, values=values,
                           errors=errors, risk_flags=RiskFlag), status


@bp.get("/reports/<report_id>/correct")
@allow(*AMENDING_ROLES)
def correct_form(report_id: str) -> Any:
    """The correction form, filled with the report's values."""
    report = report_in_scope(report_id)
    return _correction_page(report, correction_values(report) | {"reason": ""}, {})


@bp.post("/reports/<report_id>/correct")
@allow(*AMENDING_ROLES)
def correct(report_id: str) -> Any:
    """Save a correction from the plain form post (validated as the API's body is)."""
    report = report_in_scope(report_id)
    shown = correction_values(report)
    try:
        data = clean_amendment(form_to_amendment(request.form, shown))
        with writing() as session:
            amend_report(session, report.id, current_user, data["changes"], data["reason"],
                         clock.now())
    except ValidationError as exc:
        posted = {path: ([f for f in request.form.getlist(path) if f]
                         if isinstance(before, list) else request.form.get(path, ""))
                  for path, before in shown.items() if path in request.form}
        errors = {path.removeprefix("changes."): message
                  for path, message in exc.fields.items()}
        return _correction_page(report, shown | posted | {"reason": request.form.get(
            "reason", "")}, errors, 422)
    return redirect(url_for("reports.show", report_id=report.id, corrected=1), 303)


@bp.get("/reports/<report_id>/evidence")
@allow(Role.OFFICER, Role.ADMIN)
def evidence_record(report_id: str) -> Any:
    """The printable evidence record: timeline with both clocks, notices, deliveries and
    their attempts, actions, and the report's audit entries with their chain hashes."""
    report, now = report_in_scope(report_id), clock.now()
    with reading() as session:
        record = evidence.gather(session, report)
        page = render_template("reports/evidence.html", record=record, report=report,
                               view=report_json(report, now, record.history), printed_at=now)
    with writing() as session:
        viewing.record_view(session, current_user.id, report_id, "evidence", now)
    return page
