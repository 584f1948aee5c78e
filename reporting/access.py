"""Who may do what: every endpoint declares it (deny by default), CSRF for cookie callers,
and the scope of records (outside it: 404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import ColumnElement, Select, String, cast, exists, literal, or_, select

from .errors import ForbiddenError
from .models import Agency, AuditEntry, District, Facility, Notice, Report, Role, User
from .tokens import bearer_token

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
SIGNED_IN = "signed_in"
ACCESS_ATTR = "besik_access"
TOKEN_ATTR = "besik_token_authenticated"  # noqa: S105 - an attribute name
# Flask's own static file route carries no personal data.
PUBLIC_ENDPOINTS = frozenset({"static"})
csrf = CSRFProtect()


def allow(*roles: Role | str) -> Callable[[F], F]:
    """Declare who may call a view: roles, SIGNED_IN (any role) or PUBLIC."""

    def mark(view: F) -> F:
        setattr(view, ACCESS_ATTR, frozenset(str(r) for r in roles))
        return view

    return mark


def token_authenticated(view: F) -> F:
    """Mark a view whose request carries its own proof (a single-use token), so a forged
    cross-site request gains nothing: no CSRF token is required."""
    setattr(view, TOKEN_ATTR, True)
    return view


def is_token_authenticated(app: Flask, endpoint: str | None) -> bool:
    """Whether the endpoint authenticates each request by a token in its body."""
    view = app.view_functions.get(endpoint or "")
    return bool(getattr(view, TOKEN_ATTR, False))


def declared_access(app: Flask, endpoint: str) -> frozenset[str] | None:
    """What an endpoint declared, or None when it declared nothing."""
    if endpoint in PUBLIC_ENDPOINTS:
        return frozenset({PUBLIC})
    view = app.view_functions.get(endpoint)
    return getattr(view, ACCESS_ATTR, None)


def is_allowed(declared: frozenset[str], user: Any) -> bool:
    """Whether `user` (possibly anonymous) passes a declaration."""
    if PUBLIC in declared:
        return True
    if not user.is_authenticated:
        return False
    return SIGNED_IN in declared or str(user.role) in declared


def gate() -> Any:
    """before_request: refuse any endpoint without a declaration, then check the role."""
    if request.endpoint is None:
        return None  # 404/405 from routing itself
    declared = declared_access(current_app, request.endpoint)
    if declared is None:
        raise ForbiddenError()
    if PUBLIC in declared:
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if not is_allowed(declared, current_user):
        raise ForbiddenError()
    return None


def check_csrf() -> None:
    """before_request, after the gate: cookie-authenticated unsafe requests need the token."""
    # Bearer-token callers are not browsers: no ambient cookie, so no CSRF to fear.
    if request.method in ("GET", "HEAD", "OPTIONS") or bearer_token(request) is not None:
        return
    if is_token_authenticated(current_app, request.endpoint):
        return
    csrf.protect()


def init_access(app: Flask) -> None:
    """The gate, then CSRF, before every request."""
    csrf.init_app(app)
    app.before_request(gate)
    app.before_request(check_csrf)


def visible_audit(user: User) -> ColumnElement[bool] | None:
    """Which audit entries an admin may read: the country's admins all (None); a region's
    admin those about the region's reports, their notices and its people, and those its
    people wrote (never another region's, nor the country's policy and calendar)."""
    if user.region_id is None:
        return None
    facilities = select(Facility.id).join(District).where(District.region_id == user.region_id)
    agencies = select(Agency.id).where(Agency.region_id == user.region_id)
    people = select(User.id).where(or_(User.region_id == user.region_id,
                                       User.facility_id.in_(facilities),
                                       User.agency_id.in_(agencies)))
    reports = select(Report.id).where(Report.facility_id.in_(facilities))
    notices = select(Notice.id).where(or_(Notice.agency_id.in_(agencies),
                                          Notice.report_id.in_(reports)))
    return or_(AuditEntry.actor_id.in_(people),
               AuditEntry.subject.in_(_subjects("report", reports)),
               AuditEntry.subject.in_(_subjects("notice", notices)),
               AuditEntry.subject.in_(_subjects("user", people)))


def _subjects(kind: str, ids: Select[Any]) -> Select[Any]:
    """`ids` as audit subjects of one kind ('report:<id>')."""
    column = ids.selected_columns[0]
    return ids.with_only_columns(literal(f"{kind}:") + cast(column, String))


def visible_reports(user: User) -> Select[Report]:
    """Reports within the user's scope (PRODUCT §1)."""
    query = select(Report)
    if user.role is Role.REPORTER:
        return query.where(Report.facility_id == user.facility_id)
    if user.role is Role.OFFICER:
        routed = exists().where(Notice.report_id == Report.id,
                                Notice.agency_id == user.agency_id)
        return query.where(routed)
    if user.region_id is None:
        return query
    in_region = select(Facility.id).join(District).where(District.region_id == user.region_id)
    return query.where(Report.facility_id.in_(in_region))
