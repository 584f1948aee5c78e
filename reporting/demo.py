"""The demo data of CONTRACT §4 (idempotent)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .models import Agency, AgencyKind, District, Facility, Region, Role, User
from .passwords import hash_password

T = TypeVar("T", Region, District, Facility, Agency)
DEMO_PASSWORD = "besik-demo-2026"  # noqa: S105 - the published demo password
DISTRICTS = {"AST-ALM": "Almaty", "AST-BAI": "Baikonyr", "AST-YES": "Yesil",
             "AST-SAR": "Saryarka", "AST-NUR": "Nura"}
FACILITIES = {"PC1": ("Perinatal Centre No. 1", "perinatal", "AST-YES"),
              "CP4": ("City Polyclinic No. 4", "polyclinic", "AST-SAR")}
# email: (name, role, facility, agency, is_head)
USERS = {
    "nurse@besik.example": ("Aigerim Nurlanovna", Role.REPORTER, "PC1", None, False),
    "nurse2@besik.example": ("Saule Bekovna", Role.REPORTER, "CP4", None, False),
    "officer@besik.example": ("Dana Serikovna", Role.OFFICER, None, "GRD-AST-YES", False),
    "head@besik.example": ("Marat Askarovich", Role.OFFICER, None, "GRD-AST-YES", True),
    "officer2@besik.example": ("Erlan Tokhtarovich", Role.OFFICER, None, "GRD-AST-SAR", False),
    "police@besik.example": ("Captain Ruslan Abenov", Role.OFFICER, None, "POL-AST", False),
    "admin@besik.example": ("Gulnara Admin", Role.ADMIN, None, None, False),
}


def is_empty(session: Session) -> bool:
    """True when no user exists yet."""
    return not session.scalar(select(func.count()).select_from(User))


def seed_demo(session: Session, now: datetime) -> None:
    """Create whatever of the demo data is missing; flushes and audits."""
    region = _get_or_add(session, Region, "AST", name="Astana")
    districts = {code: _get_or_add(session, District, code, name=name, region=region)
                 for code, name in DISTRICTS.items()}
    facilities = {code: _get_or_add(session, Facility, code, name=name, kind=kind,
                                    district=districts[district])
                  for code, (name, kind, district) in FACILITIES.items()}
    agencies = {f"GRD-{code}": _get_or_add(
        session, Agency, f"GRD-{code}", name=f"Guardianship of {name} district",
        kind=AgencyKind.GUARDIANSHIP, region=region, district=districts[code],
        phone="+7 7172 00 00 00") for code, name in DISTRICTS.items()}
    agencies["POL-AST"] = _get_or_add(session, Agency, "POL-AST", name="Astana Police",
                                      kind=AgencyKind.POLICE, region=region, district=None,
                                      phone="102")
    for email, (name, role, facility, agency, is_head) in USERS.items():
        if session.scalar(select(User).where(User.email == email)) is not None:
            continue
        session.add(User(email=email, name=name, role=role, password_hash=_demo_hash(),
                         facility=facilities.get(facility or ""),
                         agency=agencies.get(agency or ""), is_head=is_head, created_at=now))
    session.flush()
    audit.record(session, "demo:seeded", actor_id=None, now=now)


@functools.cache
def _demo_hash() -> str:
    # One argon2 run per process: the demo users share a published password anyway.
    return hash_password(DEMO_PASSWORD)


def _get_or_add(session: Session, model: type[T], code: str, **values: object) -> T:
    found = session.scalar(select(model).where(model.code == code))
    if found is None:
        found = model(code=code, **values)
        session.add(found)
        session.flush()
    return found
