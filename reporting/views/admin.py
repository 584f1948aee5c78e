"""The administrator's pages: the compliance dashboard, the export, the audit log, places
and people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from .. import audit, charts, clock, compliance, coverage, labels, people, places
from ..access import allow, visible_audit
from ..bodies import (
    AGENCY_CHANGE,
    AGENCY_NEW,
    AUDIT_QUERY,
    COMPLIANCE_QUERY,
    DISTRICT_CHANGE,
    DISTRICT_NEW,
    EXPORT_QUERY,
    FACILITY_CHANGE,
    FACILITY_NEW,
    USER_CHANGE,
    USER_NEW,
)
from ..db import reading, writing
from ..errors import NotFoundError, ValidationError
from ..models import Agency, District, Facility, Region, Role
from ..schema import Obj
from ..vocabulary import AgencyKind, ExportFormat, FacilityKind, Language
from . import compliance_scope, posted, streamed_export

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
    # The period's, from the figures: counting every report ever filed in scope cost more
    # than the figures themselves on a large database, and said less.
    total = sum(facility["reports"] for facility in figures["facilities"])
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
    args = {k: v for k, v in request.args.items()
            if k in EXPORT_QUERY.fields and k != "lang" and v}
    # The form names the headers' language "headers": ?lang= would switch the page's own
    # language (and the admin's saved one) to the file's.
    if request.args.get("headers"):
        args["lang"] = request.args["headers"]
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
            limit=query.get("limit", 100), scope=visible_audit(current_user))
        names = audit.actor_names(session, entries)
    older: dict[str, Any] = args | {"cursor": str(next_cursor)}
    older_url = url_for("admin.audit_page", **older) if next_cursor else None
    return render_template("admin/audit.html", result=result, entries=entries, names=names,
                           args=args, errors=errors, older_url=older_url), (
        422 if errors else 200)



# --- places -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceKind:
    """One kind of place on the page: its model, its two forms' schemas, its operations."""

    model: Any
    new: Obj
    change: Obj
    create: Callable[..., Any]
    update: Callable[..., Any]


PLACE_KINDS = {
    "district": PlaceKind(District, DISTRICT_NEW, DISTRICT_CHANGE, places.create_district,
                          places.change_district),
    "facility": PlaceKind(Facility, FACILITY_NEW, FACILITY_CHANGE, places.create_facility,
                          places.change_facility),
    "agency": PlaceKind(Agency, AGENCY_NEW, AGENCY_CHANGE, places.create_agency,
                        places.change_agency),
}


def _place_kind() -> tuple[str, PlaceKind]:
    name = request.values.get("place", "")
    if name not in PLACE_KINDS:
        raise NotFoundError()
    return name, PLACE_KINDS[name]


def _actor() -> places.Actor:
    return places.Actor(current_user.id, current_user.region_id)


@bp.get("/admin/places")
@allow(Role.ADMIN)
def places_page() -> Any:
    """The regions, districts, facilities and agencies an admin manages, and forms to add."""
    return _render_places({}, {}, 200)


@bp.post("/admin/places")
@allow(Role.ADMIN)
def add_place() -> Any:
    """Add a district, facility or agency (all of it validated before anything is saved)."""
    name, kind = _place_kind()
    data = posted(kind.new)
    try:
        cleaned = kind.new.clean(data)
        with writing() as session:
            place = kind.create(session, cleaned, _actor(), clock.now())
            code = place.code
    except ValidationError as exc:
        return _render_places({name: exc.fields}, {name: data}, 422)
    return redirect(url_for("admin.places_page", _anchor=f"{name}-{code}"), 303)


def _render_places(errors: dict[str, Any], posted: dict[str, Any], status: int) -> Any:
    region_id = current_user.region_id
    with reading() as session:
        listing = places.listing(session, region_id)
    return render_template("admin/places.html", listing=listing, errors=errors,
                           posted=posted, facility_kinds=FacilityKind.labels(),
                           agency_kinds=AgencyKind.labels()), status


@bp.get("/admin/places/edit")
@allow(Role.ADMIN)
def edit_place_page() -> Any:
    """One place's form (?place=district|facility|agency&code=C); outside scope: 404."""
    name, kind = _place_kind()
    with reading() as session:
        place = places.find(session, kind.model, request.args.get("code", ""),
                            current_user.region_id)
        return _render_edit(name, place, places.form_values(place), {}, 200)


@bp.post("/admin/places/edit")
@allow(Role.ADMIN)
def edit_place() -> Any:
    """Save one place's form: a new name, kind, jurisdiction, phone or deactivation."""
    name, kind = _place_kind()
    data = posted(kind.change)
    code = request.form.get("code", "")
    try:
        cleaned = kind.change.clean(data)
        with writing() as session:
            place = places.find(session, kind.model, code, current_user.region_id)
            kind.update(session, place, cleaned, _actor(), clock.now())
    except ValidationError as exc:
        with reading() as session:
            place = places.find(session, kind.model, code, current_user.region_id)
            return _render_edit(name, place, data, exc.fields, 422)
    return redirect(url_for("admin.places_page", _anchor=f"{name}-{code}"), 303)


def _render_edit(name: str, place: Any, values: dict[str, Any], errors: dict[str, Any],
                 status: int) -> Any:
    with reading() as session:
        listing = places.listing(session, current_user.region_id)
    return render_template("admin/place.html", place_kind=name, place=place, values=values,
                           errors=errors, listing=listing,
                           facility_kinds=FacilityKind.labels(),
                           agency_kinds=AgencyKind.labels()), status


# --- people -----------------------------------------------------------------------------------


@bp.get("/admin/users")
@allow(Role.ADMIN)
def users_page() -> Any:
    """The people an admin manages, and a form to add one."""
    return _render_users({}, {}, 200)


def _render_users(errors: dict[str, Any], posted: dict[str, Any], status: int) -> Any:
    with reading() as session:
        users = people.listing(session, current_user.region_id)
        listing = places.listing(session, current_user.region_id)
        return render_template("admin/users.html", users=users, listing=listing,
                               errors=errors, posted=posted, roles=Role.labels()), status


@bp.post("/admin/users")
@allow(Role.ADMIN)
def add_user() -> Any:
    """A new account; its one-time password is shown once, here, and never again."""
    data = posted(USER_NEW)
    try:
        cleaned = USER_NEW.clean(data)
        with writing() as session:
            user, password = people.create(session, cleaned, _actor(), clock.now())
            email = user.email
    except ValidationError as exc:
        return _render_users(exc.fields, data, 422)
    return render_template("admin/password.html", email=email, password=password,
                           is_new=True), 201


def _posted_user(session: Any) -> Any:
    return people.find(session, request.values.get("email", ""), current_user.region_id)


@bp.get("/admin/users/edit")
@allow(Role.ADMIN)
def edit_user_page() -> Any:
    """One person: role and where they belong, active or not, password, API tokens."""
    with reading() as session:
        user = _posted_user(session)
        return _render_user(session, user, _user_values(user), {}, 200)


def _user_values(user: Any) -> dict[str, Any]:
    return {"name": user.name, "role": user.role.value, "is_head": user.is_head,
            "facility": user.facility.code if user.facility else "",
            "agency": user.agency.code if user.agency else "",
            "region": user.region.code if user.region else ""}


def _render_user(session: Any, user: Any, values: dict[str, Any], errors: dict[str, Any],
                 status: int) -> Any:
    return render_template("admin/user.html", user=user, values=values, errors=errors,
                           tokens=people.tokens(session, user), roles=Role.labels(),
                           listing=places.listing(session, current_user.region_id)), status


@bp.post("/admin/users/edit")
@allow(Role.ADMIN)
def edit_user() -> Any:
    """Save a person's name, role, facility, agency, region or head flag."""
    data = posted(USER_CHANGE)
    try:
        cleaned = USER_CHANGE.clean(data)
        with writing() as session:
            people.change(session, _posted_user(session), cleaned, _actor(), clock.now())
    except ValidationError as exc:
        with reading() as session:
            return _render_user(session, _posted_user(session), data, exc.fields, 422)
    return redirect(url_for("admin.edit_user_page", email=request.form.get("email")), 303)


@bp.post("/admin/users/active")
@allow(Role.ADMIN)
def set_user_active() -> Any:
    """Deactivate (sessions and tokens stop at the next request) or reactivate a person."""
    with writing() as session:
        user = _posted_user(session)
        if user.id == current_user.id:
            raise ValidationError({"email": _("You cannot deactivate yourself.")})
        people.set_active(session, user, request.form.get("active") == "1", _actor(),
                          clock.now())
    return redirect(url_for("admin.edit_user_page", email=request.form.get("email")), 303)


@bp.post("/admin/users/password")
@allow(Role.ADMIN)
def reset_user_password() -> Any:
    """A new one-time password, shown once; the person's sessions end."""
    with writing() as session:
        user = _posted_user(session)
        password = people.reset_password(session, user, _actor(), clock.now())
        email = user.email
    return render_template("admin/password.html", email=email, password=password,
                           is_new=False)


@bp.post("/admin/users/tokens")
@allow(Role.ADMIN)
def revoke_user_tokens() -> Any:
    """Revoke one of the person's API tokens (token_id), or all of them."""
    which = request.form.get("token_id", "")
    with writing() as session:
        user = _posted_user(session)
        if which == "all":
            people.revoke_all_tokens(session, user, _actor(), clock.now())
        elif which.isdigit():
            people.revoke_token(session, user, int(which), _actor(), clock.now())
        else:
            raise NotFoundError()
    return redirect(url_for("admin.edit_user_page", email=request.form.get("email")), 303)
