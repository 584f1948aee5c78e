"""The coverage monitor: every gap through which a report could fall before any is filed —
districts nobody would hear, facilities routed nowhere or only to a fallback, devices that
stopped receiving alerts, phones holding reports unsent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Exists, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from .models import (
    Agency,
    AgencyKind,
    Device,
    District,
    Facility,
    PushSubscription,
    Role,
    User,
)

SILENT_AFTER = timedelta(days=7)
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Gap:
    """One gap: its kind (CONTRACT §5), the code of what has it, and a readable detail."""

    kind: str
    code: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "code": self.code, "detail": self.detail}


def gaps(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    """Every gap in the region (None: the whole country), in a stable order."""
    return [*_routing_gaps(session, region_id, now), *_silent_devices(session, region_id, now),
            *_stuck_phones(session, region_id, now)]


def _routing_gaps(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    own, regional = aliased(Agency), aliased(Agency)
    has_own = exists().where(own.district_id == District.id,
                             own.kind == AgencyKind.GUARDIANSHIP)
    has_regional = exists().where(regional.district_id.is_(None),
                                  regional.region_id == District.region_id,
                                  regional.kind == AgencyKind.GUARDIANSHIP)
    heard = _reachable_guardianship(now)
    districts = select(District.id, District.code, District.name, has_own.label("has_own"),
                       has_regional.label("has_regional"), heard.label("heard"))
    if region_id is not None:
        districts = districts.where(District.region_id == region_id)
    found: list[Gap] = []
    by_district = {}
    for row in session.execute(districts.order_by(District.code)):
        by_district[row.id] = row
        if not row.heard:
            found.append(Gap("district_unreachable", row.code,
                             f"{row.name}: no guardianship officer whose device received an "
                             f"alert in the last {SILENT_AFTER.days} days"))
    facilities = select(Facility.code, Facility.name, Facility.district_id)
    for facility in session.execute(facilities.order_by(Facility.code)):
        district = by_district.get(facility.district_id)
        if district is None:
            continue  # outside the region
        if not district.has_own and not district.has_regional:
            found.append(Gap("facility_unrouted", facility.code,
                             f"{facility.name}: no guardianship agency for its district "
                             f"{district.code} nor its region"))
        elif not district.has_own:
            found.append(Gap("facility_fallback", facility.code,
                             f"{facility.name}: routed to the region's guardianship agency; "
                             f"district {district.code} has none"))
    return found


def _reachable_guardianship(now: datetime) -> Exists:
    """SQL: the district's guardianship agency (its own, else the region's) has an active
    officer with a device that received an alert within SILENT_AFTER."""
    agency, officer, device = aliased(Agency), aliased(User), aliased(PushSubscription)
    routed = or_(agency.district_id == District.id,
                 and_(agency.district_id.is_(None), agency.region_id == District.region_id,
                      ~exists().where(Agency.district_id == District.id,
                                      Agency.kind == AgencyKind.GUARDIANSHIP)))
    return exists().where(
        agency.kind == AgencyKind.GUARDIANSHIP, routed,
        officer.agency_id == agency.id, officer.role == Role.OFFICER,
        officer.is_active.is_(True), device.user_id == officer.id,
        device.last_success_at >= now - SILENT_AFTER)


def _silent_devices(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    agency = aliased(Agency)
    query = (select(PushSubscription.id, PushSubscription.last_success_at, User.name,
                    agency.code)
             .join(User, User.id == PushSubscription.user_id)
             .join(agency, agency.id == User.agency_id)
             .where(User.is_active.is_(True), User.role == Role.OFFICER,
                    or_(PushSubscription.last_success_at < now - SILENT_AFTER,
                        and_(PushSubscription.last_success_at.is_(None),
                             PushSubscription.created_at < now - SILENT_AFTER))))
    if region_id is not None:
        query = query.where(agency.region_id == region_id)
    found = []
    for row in session.execute(query.order_by(PushSubscription.id)):
        since = (f"since {row.last_success_at:%Y-%m-%d}" if row.last_success_at
                 else "ever")
        found.append(Gap("subscription_stale", f"subscription:{row.id}",
                         f"{row.name} ({row.code}): no alert delivered {since}"))
    return found


def _stuck_phones(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    query = (select(Device.id, Device.outbox_depth, Device.oldest_unsent_at, Facility.code,
                    User.name)
             .join(Facility, Facility.id == Device.facility_id)
             .join(District, District.id == Facility.district_id)
             .join(User, User.id == Device.user_id)
             .where(Device.outbox_depth > 0, Device.oldest_unsent_at < now - STUCK_AFTER))
    if region_id is not None:
        query = query.where(District.region_id == region_id)
    return [Gap("phone_stuck", f"device:{row.id}",
                f"{row.name} ({row.code}): {row.outbox_depth} report(s) unsent since "
                f"{row.oldest_unsent_at:%Y-%m-%d %H:%M} UTC")
            for row in session.execute(query.order_by(Device.id))]
