"""Places: Kazakhstan's regions (installed by init-db), and the districts, facilities and
agencies administrators add, edit and deactivate. Nothing is deleted: reports, notices and
the audit log keep naming what was. A region's admin manages only that region's places.

Operations flush and audit (with before and after); the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .errors import NotFoundError, ValidationError
from .models import Agency, AgencyKind, District, Facility, Region

# (code, English, Russian, Kazakh): the 17 regions and the 3 cities of republican
# significance (2022 division). Astana's and Almaty city's codes are ISO 3166-2's old letters
# (AST, ALA), as are the others' where ISO had them; the three regions of 2022 got letters
# of their own (ABA, ZHT, ULY).
REGIONS: tuple[tuple[str, str, str, str], ...] = (
    ("AST", "Astana", "Астана", "Астана"),
    ("ALA", "Almaty", "Алматы", "Алматы"),
    ("SHY", "Shymkent", "Шымкент", "Шымкент"),
    ("ABA", "Abai Region", "Область Абай", "Абай облысы"),
    ("AKM", "Akmola Region", "Акмолинская область", "Ақмола облысы"),
    ("AKT", "Aktobe Region", "Актюбинская область", "Ақтөбе облысы"),
    ("ALM", "Almaty Region", "Алматинская область", "Алматы облысы"),
    ("ATY", "Atyrau Region", "Атырауская область", "Атырау облысы"),
    ("VOS", "East Kazakhstan Region", "Восточно-Казахстанская область",
     "Шығыс Қазақстан облысы"),
    ("ZHA", "Jambyl Region", "Жамбылская область", "Жамбыл облысы"),
    ("ZHT", "Jetisu Region", "Область Жетісу", "Жетісу облысы"),
    ("KAR", "Karaganda Region", "Карагандинская область", "Қарағанды облысы"),
    ("KUS", "Kostanay Region", "Костанайская область", "Қостанай облысы"),
    ("KZY", "Kyzylorda Region", "Кызылординская область", "Қызылорда облысы"),
    ("MAN", "Mangystau Region", "Мангистауская область", "Маңғыстау облысы"),
    ("SEV", "North Kazakhstan Region", "Северо-Казахстанская область",
     "Солтүстік Қазақстан облысы"),
    ("PAV", "Pavlodar Region", "Павлодарская область", "Павлодар облысы"),
    ("TUR", "Turkistan Region", "Туркестанская область", "Түркістан облысы"),
    ("ULY", "Ulytau Region", "Область Ұлытау", "Ұлытау облысы"),
    ("ZAP", "West Kazakhstan Region", "Западно-Казахстанская область",
     "Батыс Қазақстан облысы"),
)


def install_regions(session: Session, now: datetime) -> int:
    """Add the regions that are missing and fill in missing names (idempotent); the number
    of regions added."""
    existing = {r.code: r for r in session.scalars(select(Region))}
    added = []
    for code, english, russian, kazakh in REGIONS:
        region = existing.get(code)
        if region is None:
            session.add(Region(code=code, name=english, name_ru=russian, name_kk=kazakh))
            added.append(code)
            continue
        region.name_ru = region.name_ru or russian
        region.name_kk = region.name_kk or kazakh
    session.flush()
    if added:
        audit.record(session, "place:regions_installed", actor_id=None,
                     data={"regions": added}, now=now)
    return len(added)


def region_name(region: Region, locale: str) -> str:
    """A region's name in a language (English when that one is unknown)."""
    return {"kk": region.name_kk, "ru": region.name_ru}.get(locale) or region.name


# --- finding places within an admin's scope -------------------------------------------------


def _one(session: Session, model: Any, code: str, field: str) -> Any:
    found = session.scalars(select(model).where(model.code == code)).first()
    if found is None:
        raise ValidationError({field: _l("No such code: %(code)s.", code=code)})
    return found


def _region_of(place: Region | District | Facility | Agency) -> int:
    if isinstance(place, Region):
        return place.id
    if isinstance(place, District | Agency):
        return place.region_id
    return place.district.region_id


def in_scope(place: Any, scope_region_id: int | None) -> Any:
    """`place` if the admin whose region is `scope_region_id` (None: the country) may manage
    it; NotFoundError otherwise, as for any record outside scope."""
    if scope_region_id is not None and _region_of(place) != scope_region_id:
        raise NotFoundError()
    return place


def find(session: Session, model: Any, code: str, scope_region_id: int | None) -> Any:
    """A place by code within scope, else NotFoundError."""
    found = session.scalars(select(model).where(model.code == code)).first()
    if found is None:
        raise NotFoundError()
    return in_scope(found, scope_region_id)


def scoped(session: Session, model: Any, code: str | None, field: str,
           scope_region_id: int | None) -> Any:
    """A place named in a form (None when none is named): an unknown code, or one outside
    the admin's region, is that field's error."""
    if not code:
        return None
    place = _one(session, model, code, field)
    if scope_region_id is not None and _region_of(place) != scope_region_id:
        raise ValidationError({field: _l("No such code: %(code)s.", code=code)})
    return place


def _free_code(session: Session, model: Any, code: str) -> None:
    if session.scalars(select(model.id).where(model.code == code)).first() is not None:
        raise ValidationError({"code": _l("This code is already taken.")})


# --- creating and changing -----------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who changes places: the user (None: the command line) and their region (None: all)."""

    user_id: int | None
    region_id: int | None


def _snapshot(place: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: _plain(getattr(place, name)) for name in fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Region | District | Facility | Agency):
        return value.code
    return value.value if isinstance(value, AgencyKind) else value


def _audit_change(session: Session, tag: str, place: Any, before: dict[str, Any],
                  after: dict[str, Any], actor: Actor, now: datetime) -> None:
    changes = audit.changes(before, after)
    if changes:
        audit.record(session, tag, actor_id=actor.user_id, subject=f"{tag.split(':')[0]}:"
                     f"{place.code}", data={"changes": changes}, now=now)


DISTRICT_FIELDS = ("name", "region", "is_active")
FACILITY_FIELDS = ("name", "kind", "district", "is_active")
AGENCY_FIELDS = ("name", "kind", "district", "region", "phone", "is_active")


def create_district(session: Session, data: dict[str, Any], actor: Actor,
                    now: datetime) -> District:
    """A new district in a region (data: code, name, region)."""
    region = scoped(session, Region, data["region"], "region", actor.region_id)
    _free_code(session, District, data["code"])
    district = District(code=data["code"], name=data["name"], region=region)
    session.add(district)
    session.flush()
    _audit_change(session, "district:created", district, {}, _snapshot(
        district, DISTRICT_FIELDS), actor, now)
    return district


def change_district(session: Session, district: District, data: dict[str, Any], actor: Actor,
                    now: datetime) -> District:
    """Rename or (de)activate a district (data: name, is_active)."""
    before = _snapshot(district, DISTRICT_FIELDS)
    district.name, district.is_active = data["name"], data["is_active"]
    session.flush()
    _audit_change(session, "district:changed", district, before,
                  _snapshot(district, DISTRICT_FIELDS), actor, now)
    return district


def create_facility(session: Session, data: dict[str, Any], actor: Actor,
                    now: datetime) -> Facility:
    """A new facility in a district (data: code, name, kind, district)."""
    district = scoped(session, District, data["district"], "district", actor.region_id)
    _free_code(session, Facility, data["code"])
    facility = Facility(code=data["code"], name=data["name"], kind=str(data["kind"]),
                        district=district)
    session.add(facility)
    session.flush()
    _audit_change(session, "facility:created", facility, {},
                  _snapshot(facility, FACILITY_FIELDS), actor, now)
    return facility


def change_facility(session: Session, facility: Facility, data: dict[str, Any], actor: Actor,
                    now: datetime) -> Facility:
    """Rename, re-kind, move or (de)activate a facility (data: name, kind, district,
    is_active). Its reports keep the district they were routed by."""
    before = _snapshot(facility, FACILITY_FIELDS)
    facility.district = scoped(session, District, data["district"], "district",
                                actor.region_id)
    facility.name, facility.kind = data["name"], str(data["kind"])
    facility.is_active = data["is_active"]
    session.flush()
    _audit_change(session, "facility:changed", facility, before,
                  _snapshot(facility, FACILITY_FIELDS), actor, now)
    return facility


def _jurisdiction(session: Session, data: dict[str, Any], actor: Actor
                  ) -> tuple[Region, District | None]:
    """An agency serves one district or a whole region: exactly one of the two."""
    if bool(data.get("district")) == bool(data.get("region")):
        raise ValidationError({"district": _l("Choose a district or a region, not both.")})
    if data.get("district"):
        district = scoped(session, District, data["district"], "district", actor.region_id)
        return district.region, district
    return scoped(session, Region, data["region"], "region", actor.region_id), None


def create_agency(session: Session, data: dict[str, Any], actor: Actor,
                  now: datetime) -> Agency:
    """A new agency (data: code, name, kind, district or region, phone)."""
    region, district = _jurisdiction(session, data, actor)
    _free_code(session, Agency, data["code"])
    agency = Agency(code=data["code"], name=data["name"], kind=AgencyKind(str(data["kind"])),
                    region=region, district=district, phone=data.get("phone"))
    session.add(agency)
    session.flush()
    _audit_change(session, "agency:created", agency, {}, _snapshot(agency, AGENCY_FIELDS),
                  actor, now)
    return agency


def change_agency(session: Session, agency: Agency, data: dict[str, Any], actor: Actor,
                  now: datetime) -> Agency:
    """Rename, re-kind, move, renumber or (de)activate an agency. A deactivated agency is
    no longer notified: the coverage monitor shows the gap it leaves at once."""
    before = _snapshot(agency, AGENCY_FIELDS)
    agency.region, agency.district = _jurisdiction(session, data, actor)
    agency.name, agency.kind = data["name"], AgencyKind(str(data["kind"]))
    agency.phone, agency.is_active = data.get("phone"), data["is_active"]
    session.flush()
    _audit_change(session, "agency:changed", agency, before, _snapshot(agency, AGENCY_FIELDS),
                  actor, now)
    return agency


# --- what the page shows -------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The places an admin manages: regions, and their districts, facilities and agencies."""

    regions: list[Region]
    districts: list[District]
    facilities: list[Facility]
    agencies: list[Agency]


def listing(session: Session, scope_region_id: int | None) -> Listing:
    """Every place within the scope (None: the country), active ones first, by code."""
    regions = select(Region).order_by(Region.code)
    districts = select(District).join(Region).order_by(District.is_active.desc(),
                                                      District.code)
    facilities = (select(Facility).join(District, District.id == Facility.district_id)
                  .order_by(Facility.is_active.desc(), Facility.code))
    agencies = select(Agency).order_by(Agency.is_active.desc(), Agency.code)
    if scope_region_id is not None:
        regions = regions.where(Region.id == scope_region_id)
        districts = districts.where(District.region_id == scope_region_id)
        facilities = facilities.where(District.region_id == scope_region_id)
        agencies = agencies.where(Agency.region_id == scope_region_id)
    return Listing(list(session.scalars(regions)), list(session.scalars(districts)),
                   list(session.scalars(facilities)), list(session.scalars(agencies)))


def form_values(place: District | Facility | Agency) -> dict[str, Any]:
    """A place's current values, as its change form shows them."""
    values: dict[str, Any] = {"name": place.name, "is_active": place.is_active}
    if isinstance(place, Facility):
        values |= {"kind": place.kind, "district": place.district.code}
    if isinstance(place, Agency):
        values |= {"kind": place.kind.value, "phone": place.phone or "",
                   "district": place.district.code if place.district else "",
                   "region": "" if place.district else place.region.code}
    return values
