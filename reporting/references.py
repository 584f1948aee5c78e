"""References (AST-2026-000123): allocated atomically, or reserved in advance by a phone."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from sqlalchemy import Insert, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import audit
from .deadlines import to_local
from .models import Facility, ReferenceCounter, ReservedReference, User, table_of

# Long enough for a clinic that is offline for weeks; phones top up while online.
RESERVATION_TTL = timedelta(days=30)


def next_reference(session: Session, region_code: str, now: datetime) -> str:
    """Allocate the next reference with one atomic upsert: no read-then-write race."""
    year = to_local(now).year
    upsert = _counter_upsert(session.get_bind().dialect.name)
    number = session.connection().execute(upsert, {"region": region_code, "year": year}
                                          ).scalar_one()
    return f"{region_code}-{year}-{number:06d}"


@functools.cache
def _counter_upsert(dialect: str) -> Insert:
    # Built once per dialect, on the table (Core): building and keying a statement, and the
    # ORM's bulk machinery, cost more than running it.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    counters = table_of(ReferenceCounter)
    upsert = insert(counters).values(region_code=bindparam("region"), year=bindparam("year"),
                                     last_value=1)
    return upsert.on_conflict_do_update(
        index_elements=["region_code", "year"],
        set_={"last_value": counters.c.last_value + 1},
    ).returning(counters.c.last_value)


def reserve(session: Session, user: User, facility: Facility, count: int,
            now: datetime) -> list[ReservedReference]:
    """Reserve `count` references for the user's facility; flushes and audits."""
    expires_at = now + RESERVATION_TTL
    region = facility.district.region.code
    rows = [ReservedReference(reference=next_reference(session, region, now),
                              facility_id=facility.id, reserved_by_id=user.id,
                              reserved_at=now, expires_at=expires_at) for _ in range(count)]
    session.add_all(rows)
    session.flush()
    audit.record(session, "reference:reserved", actor_id=user.id,
                 subject=f"facility:{facility.code}",
                 data={"references": [r.reference for r in rows]}, now=now)
    return rows


def claim(session: Session, reference: str, facility_id: int, report_id: str,
          now: datetime) -> bool:
    """Use a reservation once, for its own facility, before it expires (one atomic UPDATE)."""
    result = session.execute(
        update(ReservedReference)
        .where(ReservedReference.reference == reference,
               ReservedReference.facility_id == facility_id,
               ReservedReference.used_by_report_id.is_(None),
               ReservedReference.expires_at > now)
        .values(used_by_report_id=report_id, used_at=now)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]
