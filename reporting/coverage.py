"""The coverage monitor: every gap through which a report could fall before any is filed —
districts nobody would hear, facilities routed nowhere or only to a fallback, devices that
stopped receiving alerts, phones holding reports unsent."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Exists, Insert, and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from . import audit
from .models import (
    Agency,
    AgencyKind,
    CoverageGap,
    Device,
    District,
    Facility,
    PushSubscription,
    Role,
    User,
    table_of,
)

SILENT_AFTER = timedelta(days=7)
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Gap:
    """One gap: its kind (CONTRACT §5), the code of what has it, and a readable detail."""

    kind: str
    code: str
    detail: str
    region_id: int | None = None  # whose admins hear of it

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "code": self.code, "detail": self.detail}


def gaps(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    """Every gap in the region (None: the whole country), in a stable order."""
    return [*_routing_gaps(session, region_id, now), *_silent_devices(session, region_id, now),
            *_stuck_phones(session, region_id, now)]


def _routing_gaps(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    own, regional = aliased(Agency), aliased(Agency)
    has_own = exists().where(own.district_id == District.id, own.is_active.is_(True),
                             own.kind == AgencyKind.GUARDIANSHIP)
    has_regional = exists().where(regional.district_id.is_(None),
                                  regional.region_id == District.region_id,
                                  regional.is_active.is_(True),
                                  regional.kind == AgencyKind.GUARDIANSHIP)
    heard = _reachable_guardianship(now)
    districts = select(District.id, District.code, District.name, District.region_id,
                       has_own.label("has_own"),
                       has_regional.label("has_regional"), heard.label("heard")
                       ).where(District.is_active.is_(True))
    if region_id is not None:
        districts = districts.where(District.region_id == region_id)
    found: list[Gap] = []
    by_district = {}
    for row in session.execute(districts.order_by(District.code)):
        by_district[row.id] = row
        if not row.heard:
            found.append(Gap("district_unreachable", row.code,
                             f"{row.name}: no guardianship officer whose device received an "
                             f"alert in the last {SILENT_AFTER.days} days", row.region_id))
    facilities = select(Facility.code, Facility.name, Facility.district_id).where(
        Facility.is_active.is_(True))
    for facility in session.execute(facilities.order_by(Facility.code)):
        district = by_district.get(facility.district_id)
        if district is None:
            continue  # outside the region
        if not district.has_own and not district.has_regional:
            found.append(Gap("facility_unrouted", facility.code,
                             f"{facility.name}: no guardianship agency for its district "
                             f"{district.code} nor its region", district.region_id))
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
                                      Agency.is_active.is_(True),
                                      Agency.kind == AgencyKind.GUARDIANSHIP)))
    return exists().where(
        agency.kind == AgencyKind.GUARDIANSHIP, agency.is_active.is_(True), routed,
        officer.agency_id == agency.id, officer.role == Role.OFFICER,
        officer.is_active.is_(True), device.user_id == officer.id,
        device.last_success_at >= now - SILENT_AFTER)


def _silent_devices(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    agency = aliased(Agency)
    query = (select(PushSubscription.id, PushSubscription.last_success_at, User.name,
                    agency.code, agency.region_id)
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
                         f"{row.name} ({row.code}): no alert delivered {since}",
                         row.region_id))
    return found


def _stuck_phones(session: Session, region_id: int | None, now: datetime) -> list[Gap]:
    query = (select(Device.id, Device.outbox_depth, Device.oldest_unsent_at, Facility.code,
                    User.name, District.region_id)
             .join(Facility, Facility.id == Device.facility_id)
             .join(District, District.id == Facility.district_id)
             .join(User, User.id == Device.user_id)
             .where(Device.outbox_depth > 0, Device.oldest_unsent_at < now - STUCK_AFTER))
    if region_id is not None:
        query = query.where(District.region_id == region_id)
    return [Gap("phone_stuck", f"device:{row.id}",
                f"{row.name} ({row.code}): {row.outbox_depth} report(s) unsent since "
                f"{row.oldest_unsent_at:%Y-%m-%d %H:%M} UTC", row.region_id)
            for row in session.execute(query.order_by(Device.id))]


CHECK_EVERY = timedelta(minutes=15)
_OPEN = table_of(CoverageGap)


def refresh(session: Session, now: datetime) -> tuple[list[CoverageGap], list[CoverageGap]]:
    """Open a row for each gap found now that is not open yet, and close the open rows no
    longer found; flushes and audits. Returns (opened, closed): each gap opens once, even
    with several workers (the insert skips a gap another worker opened first)."""
    found = {(gap.kind, gap.code): gap for gap in gaps(session, None, now)}
    open_rows = {(row.kind, row.code): row for row in session.scalars(
        select(CoverageGap).where(CoverageGap.closed_at.is_(None)))}
    closed = [row for key, row in open_rows.items() if key not in found]
    for row in closed:
        row.closed_at = now
    new = [gap for key, gap in found.items() if key not in open_rows]
    opened_ids: list[int] = []
    if new:
        statement = _open_ignoring_duplicates(session.get_bind().dialect.name)
        opened_ids = list(session.connection().execute(statement, [
            {"kind": g.kind, "code": g.code, "region_id": g.region_id,
             "detail": g.detail[:500], "opened_at": now} for g in new]).scalars())
    session.flush()
    opened = list(session.scalars(select(CoverageGap).where(CoverageGap.id.in_(opened_ids)))
                  ) if opened_ids else []
    changes = [*(("coverage:gap_opened", row) for row in opened),
               *(("coverage:gap_closed", row) for row in closed)]
    if changes:
        audit.record_all(session, [audit.Entry(tag, actor_id=None, subject=f"gap:{row.id}",
                                               data={"kind": row.kind, "code": row.code})
                                   for tag, row in changes], now=now)
    return opened, closed


@functools.cache
def _open_ignoring_duplicates(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_OPEN).on_conflict_do_nothing(index_elements=["kind", "code"],
                                                 index_where=_OPEN.c.closed_at.is_(None))
            .returning(_OPEN.c.id))
