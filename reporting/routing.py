"""Routing: which agencies a report goes to, as notices with their deadlines (PRODUCT §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, or_, select
from sqlalchemy.orm import Session, aliased

from . import audit
from .deadlines import Calendar, Event, Rule, due_at
from .models import Agency, AgencyKind, Deadline, Notice, Report, new_uuid

# The district's active agency of a kind first, then the region's (built once; run per
# filing). A deactivated agency is notified no more: the coverage monitor shows the gap.
_AGENCIES_FOR = select(Agency).where(
    Agency.kind == bindparam("kind"), Agency.is_active.is_(True),
    or_(Agency.district_id == bindparam("district_id"),
        and_(Agency.district_id.is_(None), Agency.region_id == bindparam("region_id"))),
).order_by(Agency.district_id.is_(None), Agency.id).limit(1)


def chosen_agency_id(kind: AgencyKind, district_id: Any, region_id: Any
                     ) -> ColumnElement[int]:
    """_AGENCIES_FOR as a scalar subquery on the given district and region columns, for a
    statement that reads the routes together with the facility (filing)."""
    candidate = aliased(Agency, name=f"{kind.value}_candidate")
    return (select(candidate.id).where(
        candidate.kind == kind, candidate.is_active.is_(True),
        or_(candidate.district_id == district_id,
            and_(candidate.district_id.is_(None), candidate.region_id == region_id)))
        .order_by(candidate.district_id.is_(None), candidate.id).limit(1)
        .scalar_subquery())


def route_to(agency: Agency | None) -> tuple[Agency, bool] | None:
    """(agency, is_fallback) for the agency chosen by _AGENCIES_FOR or chosen_agency_id."""
    if agency is None:
        return None
    # Police commonly serve a whole region: that is their jurisdiction, not a gap.
    return agency, agency.kind is AgencyKind.GUARDIANSHIP and agency.district_id is None


def _agency_for(session: Session, kind: AgencyKind, district_id: int,
                region_id: int) -> tuple[Agency, bool] | None:
    """The district's agency of this kind, else the region's (a fallback: a config gap)."""
    return route_to(session.scalars(_AGENCIES_FOR, {"kind": kind, "district_id": district_id,
                                                    "region_id": region_id}).first())


def routes_for(session: Session, district_id: int, region_id: int, *, has_risk: bool
               ) -> list[tuple[Agency, bool]]:
    """The (agency, is_fallback) pairs a report from a facility in this district goes to."""
    kinds = [AgencyKind.GUARDIANSHIP] + ([AgencyKind.POLICE] if has_risk else [])
    found = (_agency_for(session, kind, district_id, region_id) for kind in kinds)
    return [route for route in found if route is not None]


def open_notices(report: Report, routes: list[tuple[Agency, bool]], rules: dict[str, Rule],
                 calendar: Calendar, now: datetime) -> list[Notice]:
    """One notice per route, with its deadlines, attached to `report` (not yet added)."""
    notices = []
    for agency, is_fallback in routes:
        notice = Notice(id=new_uuid(), report=report, report_id=report.id, agency=agency,
                        agency_id=agency.id, is_fallback=is_fallback,
                        report_received_at=report.received_at, sent_at=now,
                        ack_due_at=due_at(now, rules["acknowledge_notice"].duration, calendar),
                        escalation_level=0)
        for rule in rules.values():
            if rule.starts_on is not Event.NOTICE_SENT:
                continue
            if rule.name == "examine_child" and agency.kind is not AgencyKind.GUARDIANSHIP:
                continue
            Deadline(report=report, report_id=report.id, notice=notice, notice_id=notice.id,
                     rule=rule.name, due_at=due_at(now, rule.duration, calendar),
                     basis=rule.basis, is_basis_verified=rule.is_basis_verified)
        notices.append(notice)
    return notices


def notice_audit_entries(notices: list[Notice]) -> list[audit.Entry]:
    """The notice:created entries for freshly opened notices."""
    return [audit.Entry("notice:created", actor_id=None, subject=f"notice:{n.id}",
                        data={"report": n.report_id or n.report.id, "agency": n.agency.code,
                              "is_fallback": n.is_fallback, "ack_due_at": n.ack_due_at})
            for n in notices]
