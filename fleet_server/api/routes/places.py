"""/places — Morocco's regions and provinces (reference data) and where the
units are. Everyone reads; an admin edits (renames follow onto the units).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from fleet_server import reference_data as ref
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import ALL, PLACES_EDIT, SafeText, raise_http
from fleet_server.models import Unit, User
from fleet_server.protocol import ID_PATTERN
from fleet_server.registry_models import Province, Region

router = APIRouter(prefix="/places", tags=["places"])

RegionCode = Annotated[str, Path(pattern=r"^MA-[0-9]{2}$", description="e.g. MA-08")]
ProvinceCode = Annotated[str, Path(pattern=r"^[A-Z]{2}-[A-Z0-9]{2,5}$",
                                   description="ISO 3166-2:MA code, e.g. MA-ZAG")]
Name = Annotated[str, Field(min_length=2, max_length=64), SafeText]
NameAr = Annotated[str, Field(max_length=128, description="empty to clear"), SafeText]
Kind = Literal["province", "prefecture"]


class ProvincePublic(BaseModel):
    code: str
    name: str
    name_ar: str | None
    kind: str
    region_code: str
    region: str
    units: int = Field(description="registered units placed in it")

    @classmethod
    def of(cls, p: Province, units: int) -> ProvincePublic:
        return cls(code=p.code, name=p.name, name_ar=p.name_ar, kind=p.kind,
                   region_code=p.region.code, region=p.region.name, units=units)


class RegionPublic(BaseModel):
    code: str
    name: str
    name_ar: str | None
    units: int
    provinces: list[ProvincePublic]


class CoveragePublic(BaseModel):
    region: str | None
    province: str | None
    units: int


class RegionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    name_ar: NameAr | None = None


class ProvinceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    name_ar: NameAr | None = None
    kind: Kind | None = None
    region_code: Annotated[str, Field(pattern=r"^MA-[0-9]{2}$")] | None = None


class ProvinceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}-[A-Z0-9]{2,5}$")]
    name: Name
    kind: Kind
    region_code: Annotated[str, Field(pattern=r"^MA-[0-9]{2}$")]
    name_ar: NameAr | None = None


class UnitPlace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    province: Name = Field(description="official name of a province or prefecture")


class UnitPlacePublic(BaseModel):
    unit: str
    province: str | None
    region: str | None


class PlaceResultPublic(BaseModel):
    placed: list[str]
    kept: int
    not_in_seed: list[str]


def _unit_counts(session: SessionDep) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in session.scalars(select(Unit.province)):
        if p is not None:
            counts[p] = counts.get(p, 0) + 1
    return counts


def _region_public(r: Region, counts: dict[str, int]) -> RegionPublic:
    provinces = [ProvincePublic.of(p, counts.get(p.name, 0)) for p in r.provinces]
    return RegionPublic(code=r.code, name=r.name, name_ar=r.name_ar,
                        units=sum(p.units for p in provinces), provinces=provinces)


@router.get("/regions", response_model=list[RegionPublic], description=roles_note(*ALL))
def list_regions(session: SessionDep,
                 _user: Annotated[User, allow(*ALL)]) -> list[RegionPublic]:
    counts = _unit_counts(session)
    return [_region_public(r, counts) for r in ref.list_regions(session)]


@router.patch("/regions/{code}", response_model=RegionPublic,
              description=roles_note(*PLACES_EDIT) + " Renaming renames it on the units.")
def update_region(session: SessionDep, _user: Annotated[User, allow(*PLACES_EDIT)],
                  code: RegionCode, body: RegionUpdate) -> RegionPublic:
    region = ref.region_by_code(session, code)
    if region is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no region {code}")
    try:
        ref.update_region(session, region, name=body.name, name_ar=body.name_ar)
    except ref.PlaceError as e:
        raise_http(e)
    session.commit()
    return _region_public(region, _unit_counts(session))


@router.get("/provinces", response_model=list[ProvincePublic], description=roles_note(*ALL))
def list_provinces(
    session: SessionDep, _user: Annotated[User, allow(*ALL)],
    region: Annotated[str | None, Query(max_length=64, description="region name"), SafeText] = None,
) -> list[ProvincePublic]:
    counts = _unit_counts(session)
    return [ProvincePublic.of(p, counts.get(p.name, 0))
            for p in ref.list_provinces(session, region=region)]


@router.post("/provinces", response_model=ProvincePublic, status_code=status.HTTP_201_CREATED,
             description=roles_note(*PLACES_EDIT))
def create_province(session: SessionDep, _user: Annotated[User, allow(*PLACES_EDIT)],
                    body: ProvinceCreate) -> ProvincePublic:
    try:
        p = ref.create_province(session, code=body.code, name=body.name, kind=body.kind,
                                region_code=body.region_code, name_ar=body.name_ar)
    except ref.PlaceError as e:
        raise_http(e)
    session.commit()
    return ProvincePublic.of(p, 0)


@router.patch("/provinces/{code}", response_model=ProvincePublic,
              description=roles_note(*PLACES_EDIT) + " Units follow a rename or a move.")
def update_province(session: SessionDep, _user: Annotated[User, allow(*PLACES_EDIT)],
                    code: ProvinceCode, body: ProvinceUpdate) -> ProvincePublic:
    p = ref.province_by_code(session, code)
    if p is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no province {code}")
    try:
        ref.update_province(session, p, name=body.name, name_ar=body.name_ar, kind=body.kind,
                            region_code=body.region_code)
    except ref.PlaceError as e:
        raise_http(e)
    session.commit()
    return ProvincePublic.of(p, _unit_counts(session).get(p.name, 0))


@router.get("/coverage", response_model=list[CoveragePublic], description=roles_note(*ALL))
def coverage(session: SessionDep,
             _user: Annotated[User, allow(*ALL)]) -> list[CoveragePublic]:
    """Registered units per region and province (null: not placed yet)."""
    return [CoveragePublic(region=c.region, province=c.province, units=c.units)
            for c in ref.coverage(session)]


@router.put("/units/{code}", response_model=UnitPlacePublic,
            description=roles_note(*PLACES_EDIT) + " Sets the unit's province (by its "
                        "official name) and so its region.")
def place_unit(session: SessionDep, _user: Annotated[User, allow(*PLACES_EDIT)],
               code: Annotated[str, Path(pattern=ID_PATTERN)],
               body: UnitPlace) -> UnitPlacePublic:
    unit = session.scalar(select(Unit).where(Unit.code == code))
    if unit is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no unit {code}")
    try:
        ref.set_unit_place(session, unit, province=body.province)
    except ref.PlaceError as e:
        raise_http(e)
    session.commit()
    return UnitPlacePublic(unit=unit.code, province=unit.province, region=unit.region)


@router.post("/units/apply-seed", response_model=PlaceResultPublic,
             description=roles_note(*PLACES_EDIT) + " Places registered units from the seed "
                         "placement (only those without a province unless force=true).")
def apply_seed(session: SessionDep, _user: Annotated[User, allow(*PLACES_EDIT)],
               force: Annotated[bool, Body(embed=True)] = False) -> PlaceResultPublic:
    result = ref.place_units(session, force=force)
    session.commit()
    return PlaceResultPublic(placed=result.placed, kept=result.kept,
                             not_in_seed=result.not_in_seed)
