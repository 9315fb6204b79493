"""Reference places: Morocco's regions and provinces, and where units are.

The data file `fleet_server/data/morocco_admin.json` holds the 2015 division
(12 regions, 75 provinces and prefectures, official French names, ISO
3166-2:MA codes) and an EDITABLE seed placement of the program's 100 units
(U001..U100) over 39 provinces in 9 regions: the program's own list is not
in this repository, so the placement is plausible, not published data.

Migration 0003 seeds `regions` and `provinces` from the file; from then on
the tables are the truth (an admin edits them through /api/v1/places).
Units keep their place as names in `units.region` and `units.province`
(every report groups by those two columns): `place_units` fills them from the
seed placement for registered units that have none, `set_unit_place`
changes one after checking the name, and renaming a region or a province
renames it on the units too. The seed file names provinces by name; they are
matched to the tables by code, so a renamed province still takes its units.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import Unit
from fleet_server.registry_models import Province, Region

DATA_FILE = Path(__file__).resolve().parent / "data" / "morocco_admin.json"
KINDS = ("province", "prefecture")


class PlaceError(ValueError):
    """A place name that is not in the reference tables; `field` names the
    request field it came from (for the API's 422)."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(msg)
        self.field = field


@dataclass(frozen=True)
class SeedProvince:
    code: str
    name: str
    kind: str
    region_code: str
    name_ar: str | None = None


@dataclass(frozen=True)
class SeedRegion:
    code: str
    name: str
    name_ar: str | None


@dataclass(frozen=True)
class Seed:
    regions: tuple[SeedRegion, ...]
    provinces: tuple[SeedProvince, ...]
    placement: dict[str, str]  # unit code -> province name (seed file)

    def province_by_name(self, name: str) -> SeedProvince:
        for p in self.provinces:
            if p.name == name:
                return p
        raise KeyError(name)


@cache
def load_seed(path: Path = DATA_FILE) -> Seed:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("format") != 1:
        raise ValueError(f"{path}: unsupported format {doc.get('format')!r}")
    regions, provinces = [], []
    for r in doc["regions"]:
        regions.append(SeedRegion(r["code"], r["name"], r.get("name_ar")))
        provinces += [SeedProvince(p["code"], p["name"], p["kind"], r["code"], p.get("name_ar"))
                      for p in r["provinces"]]
    placement = dict(doc["unit_placement"]["units"])
    seed = Seed(tuple(regions), tuple(provinces), placement)
    for name in placement.values():
        seed.province_by_name(name)  # KeyError: the placement names an unknown province
    return seed


# --- the tables --------------------------------------------------------------------------


def seed_places(session: Session, seed: Seed | None = None) -> int:
    """Insert the seed's regions and provinces that are missing (by code);
    never changes existing rows (an admin's edits stay). Returns rows added."""
    seed = seed or load_seed()
    added = 0
    regions = {r.code: r for r in session.scalars(select(Region))}
    for sr in seed.regions:
        if sr.code not in regions:
            regions[sr.code] = Region(code=sr.code, name=sr.name, name_ar=sr.name_ar)
            session.add(regions[sr.code])
            added += 1
    session.flush()
    known = set(session.scalars(select(Province.code)))
    for sp in seed.provinces:
        if sp.code not in known:
            session.add(Province(code=sp.code, name=sp.name, name_ar=sp.name_ar, kind=sp.kind,
                                 region_id=regions[sp.region_code].id))
            added += 1
    session.flush()
    return added


def list_regions(session: Session) -> list[Region]:
    return list(session.scalars(select(Region).options(joinedload(Region.provinces))
                                .order_by(Region.code)).unique())


def list_provinces(session: Session, *, region: str | None = None) -> list[Province]:
    q = select(Province).join(Province.region).options(joinedload(Province.region))
    if region is not None:
        q = q.where(Region.name == region)
    return list(session.scalars(q.order_by(Region.code, Province.name)))


def region_by_code(session: Session, code: str) -> Region | None:
    return session.scalar(select(Region).where(Region.code == code))


def province_by_code(session: Session, code: str) -> Province | None:
    return session.scalar(select(Province).options(joinedload(Province.region))
                          .where(Province.code == code))


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_province(session: Session, name: str, *, field: str = "province") -> Province:
    """The province or prefecture of that exact official name, or PlaceError."""
    p = session.scalar(select(Province).options(joinedload(Province.region))
                       .where(Province.name == name))
    if p is None:
        names = list(session.scalars(select(Province.name)))
        raise PlaceError(field, f"unknown province or prefecture {name!r}"
                                f"{_suggest(name, names)}")
    return p


def resolve_region(session: Session, name: str, *, field: str = "region") -> Region:
    r = session.scalar(select(Region).where(Region.name == name))
    if r is None:
        names = list(session.scalars(select(Region.name)))
        raise PlaceError(field, f"unknown region {name!r}{_suggest(name, names)}")
    return r


def check_place(session: Session, *, province: str | None,
                region: str | None) -> tuple[str | None, str | None]:
    """Validate a (province, region) pair of names as units carry them: each
    must be known and the province must lie in the region. A province alone
    gives its region. Returns the (province, region) to store."""
    if province is None:
        if region is not None:
            resolve_region(session, region)
        return None, region
    p = resolve_province(session, province)
    if region is not None and region != p.region.name:
        raise PlaceError("region", f"{province!r} is in {p.region.name!r}, not {region!r}")
    return p.name, p.region.name


def update_region(session: Session, region: Region, *, name: str | None = None,
                  name_ar: str | None = None) -> None:
    """Rename (units follow) and/or set the Arabic name."""
    if name is not None and name != region.name:
        if session.scalar(select(Region.id).where(Region.name == name)) is not None:
            raise PlaceError("name", f"a region is already named {name!r}")
        session.execute(update(Unit).where(Unit.region == region.name).values(region=name))
        region.name = name
    if name_ar is not None:
        region.name_ar = name_ar or None
    session.flush()


def update_province(session: Session, province: Province, *, name: str | None = None,
                    name_ar: str | None = None, kind: str | None = None,
                    region_code: str | None = None) -> None:
    """Rename, re-kind or move a province to another region; its units follow."""
    if region_code is not None and region_code != province.region.code:
        target = region_by_code(session, region_code)
        if target is None:
            raise PlaceError("region_code", f"unknown region code {region_code!r}")
        session.execute(update(Unit).where(Unit.province == province.name)
                        .values(region=target.name))
        province.region = target
    if name is not None and name != province.name:
        if session.scalar(select(Province.id).where(Province.name == name)) is not None:
            raise PlaceError("name", f"a province or prefecture is already named {name!r}")
        session.execute(update(Unit).where(Unit.province == province.name).values(province=name))
        province.name = name
    if name_ar is not None:
        province.name_ar = name_ar or None
    if kind is not None:
        province.kind = kind
    session.flush()


def create_province(session: Session, *, code: str, name: str, kind: str, region_code: str,
                    name_ar: str | None = None) -> Province:
    region = region_by_code(session, region_code)
    if region is None:
        raise PlaceError("region_code", f"unknown region code {region_code!r}")
    if session.scalar(select(Province.id).where(Province.code == code)) is not None:
        raise PlaceError("code", f"province code {code!r} exists")
    if session.scalar(select(Province.id).where(Province.name == name)) is not None:
        raise PlaceError("name", f"a province or prefecture is already named {name!r}")
    p = Province(code=code, name=name, kind=kind, name_ar=name_ar, region=region)
    session.add(p)
    session.flush()
    return p


# --- units --------------------------------------------------------------------------------


@dataclass
class PlaceResult:
    placed: list[str] = field(default_factory=list)  # unit codes given a place now
    kept: int = 0  # units that already had a province
    not_in_seed: list[str] = field(default_factory=list)


def place_units(session: Session, *, force: bool = False,
                seed: Seed | None = None) -> PlaceResult:
    """Give registered units their seed province and region (by the
    province's code, so a renamed province still matches). Units that have a
    province keep it unless `force`."""
    seed = seed or load_seed()
    result = PlaceResult()
    by_code = {p.code: p for p in session.scalars(
        select(Province).options(joinedload(Province.region)))}
    for unit in session.scalars(select(Unit).order_by(Unit.code)):
        name = seed.placement.get(unit.code)
        if name is None:
            result.not_in_seed.append(unit.code)
            continue
        if unit.province is not None and not force:
            result.kept += 1
            continue
        p = by_code.get(seed.province_by_name(name).code)
        if p is None:  # deleted by hand: leave the unit alone
            result.not_in_seed.append(unit.code)
            continue
        if (unit.province, unit.region) != (p.name, p.region.name):
            unit.province, unit.region = p.name, p.region.name
            result.placed.append(unit.code)
        else:
            result.kept += 1
    session.flush()
    return result


def set_unit_place(session: Session, unit: Unit, *, province: str) -> Province:
    p = resolve_province(session, province)
    unit.province, unit.region = p.name, p.region.name
    session.flush()
    return p


@dataclass(frozen=True)
class Coverage:
    region: str | None
    province: str | None
    units: int


def coverage(session: Session) -> list[Coverage]:
    """Registered units per region and province (None: not placed), sorted."""
    counts = Counter((u.region, u.province) for u in session.scalars(select(Unit)))
    return [Coverage(r, p, n) for (r, p), n in sorted(
        counts.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1] or ""))]


def place_sort_key(region: str | None, province: str | None, *rest: Any) -> tuple[Any, ...]:
    """Reports: by region, then province; unplaced units last."""
    return (region is None, region or "", province is None, province or "", *rest)
