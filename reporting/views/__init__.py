"""One blueprint per audience; views authorise, validate, call one operation, respond.

What every view shares: reading the JSON body, the filing boundary, finding a record in the
caller's scope (outside it: 404).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flask import Response, request, stream_with_context
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest

from .. import clock, evidence, exports
from ..access import visible_reports
from ..acknowledgements import notice_for_officer
from ..compliance import Scope, default_period, region_of
from ..db import reading, writing
from ..errors import (
    MalformedJSONError,
    NotFoundError,
    NotJSONError,
    ReferenceTakenError,
    ValidationError,
)
from ..models import Notice, Report, User
from ..present import report_json
from ..reports import Filed, already_filed, file_report, read_for_filing
from ..schema import Flag, Obj

# No request of this API nests deeper than a few levels; a body nested thousands deep would
# exhaust the parser's recursion (a 500) before any schema could refuse it.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_body() -> Any:
    """The request's JSON: NotJSONError when it is not JSON, MalformedJSONError when unreadable
    or nested deeper than MAX_JSON_DEPTH."""
    if not request.is_json:
        raise NotJSONError()
    if json_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
        raise MalformedJSONError()
    try:
        return request.get_json()
    except BadRequest:
        raise MalformedJSONError() from None


def json_depth(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest (strings ignored); no parsing needed."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return raw.count(b"[") + raw.count(b"{")  # an upper bound, and cheap: most bodies
    depth = deepest = 0
    for bracket in re.findall(rb"[\[\]{}]", _JSON_STRING.sub(b"", raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def validated(schema: Obj) -> dict[str, Any]:
    """The request's JSON body cleaned by `schema` (ValidationError names the bad fields)."""
    return schema.clean(json_body())


def validated_query(schema: Obj) -> dict[str, Any]:
    """The query string cleaned by `schema`; parameters it does not name are ignored."""
    args = request.args
    return schema.clean({name: args[name] for name in schema.fields if name in args})


def file_and_commit(reporter: User, cleaned: dict[str, Any], now: datetime) -> Filed:
    """The filing boundary: reads first, then one short write transaction."""
    with reading() as session:
        plan = read_for_filing(session, reporter, cleaned)
    if isinstance(plan, Report):  # a phone's retry takes no lock
        return Filed(plan, is_new=False)
    try:
        with writing() as session:
            report = file_report(session, plan, cleaned, now=now)
    except (IntegrityError, ReferenceTakenError):
        # The same report arrived twice at once (a phone's sync and online replays racing):
        # the loser's INSERT fails on the id, or its claim on the reserved reference the
        # winner just used. Either way the loser answers with the winner's report.
        with reading() as session:
            existing = already_filed(session, reporter, cleaned)
        if existing is None:
            raise
        return Filed(existing, is_new=False)
    return Filed(report, is_new=True)


def report_in_scope(report_id: str) -> Report:
    """A report the caller may see, read in the request's session; else NotFoundError."""
    with reading() as session:
        report = session.scalars(visible_reports(current_user)
                                 .where(Report.id == report_id)).first()
    if report is None:
        raise NotFoundError()
    return report


def reports_as_json(reports: Sequence[Report], now: datetime) -> list[dict[str, Any]]:
    """Reports as the API shows them, with their timelines (what those read beyond the
    reports themselves is read for all of them at once)."""
    with reading() as session:
        found = evidence.histories(session, reports)
    return [report_json(report, now, found[report.id]) for report in reports]


def officers_report_and_notice(report_id: str) -> tuple[Report, Notice]:
    """The report (in the officer's scope) and its notice to the officer's agency, else 404."""
    report = report_in_scope(report_id)
    with reading() as session:
        notice = notice_for_officer(session, report, current_user)
    if notice is None:
        raise NotFoundError()
    return report, notice


def posted(schema: Obj) -> dict[str, Any]:
    """A posted form as `schema`'s input: the fields it names (not the CSRF token), and each
    checkbox (a Flag) that the browser left out, because it was unticked, as false."""
    data: dict[str, Any] = {k: v for k, v in request.form.items() if k in schema.fields}
    for name, field in schema.fields.items():
        if isinstance(field, Flag) and name not in request.form:
            data[name] = False
    return data


def compliance_scope(args: dict[str, Any], now: datetime) -> Scope:
    """An admin's period and region from validated query arguments: a region outside the
    admin's own is 404, like any record outside scope."""
    first_day, last_day = default_period(now)
    first_day, last_day = args.get("from") or first_day, args.get("to") or last_day
    if first_day > last_day:
        raise ValidationError({"from": _l("Must not be after the last day.")})
    region_id = current_user.region_id
    if args.get("region"):
        with reading() as session:
            region = region_of(session, args["region"])
        if region is None or (region_id is not None and region.id != region_id):
            raise NotFoundError()
        region_id = region.id
    return Scope(region_id, first_day, last_day)


def streamed_export(args: dict[str, Any]) -> Response:
    """The compliance log as a download, streamed while it is read (filters validated, and
    checked against the admin's scope, before the first byte)."""
    with reading() as session:
        filters = exports.resolve_filters(session, args, current_user.region_id)
    export = exports.Export(args["format"], filters, str(args.get("lang") or get_locale()),
                            clock.now())
    return Response(stream_with_context(exports.run(export, current_user.id)),
                    mimetype=export.mimetype, headers={
                        "Content-Disposition": f'attachment; filename="{export.filename}"'})
