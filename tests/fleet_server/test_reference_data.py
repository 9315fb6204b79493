"""Reference places: Morocco's 12 regions and 75 provinces and prefectures
(official names), seeded by the migration; the program's 100 units placed
in 39 provinces of 9 regions; names checked on every edit, renames followed
by the units."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server import crud
from fleet_server import reference_data as ref
from fleet_server.models import Role, Unit
from fleet_server.registry_models import Province, Region
from tests.fleet_server.helpers import NOW
from tests.fleet_server.routes_registry import call
from tests.fleet_server.test_api import Api, api  # noqa: F401  (fixture)

REGIONS = {
    "MA-01": "Tanger-Tétouan-Al Hoceïma", "MA-02": "L'Oriental", "MA-03": "Fès-Meknès",
    "MA-04": "Rabat-Salé-Kénitra", "MA-05": "Béni Mellal-Khénifra",
    "MA-06": "Casablanca-Settat", "MA-07": "Marrakech-Safi", "MA-08": "Drâa-Tafilalet",
    "MA-09": "Souss-Massa", "MA-10": "Guelmim-Oued Noun", "MA-11": "Laâyoune-Sakia El Hamra",
    "MA-12": "Dakhla-Oued Ed-Dahab",
}
# provinces + prefectures per region (decree 2-15-40)
PER_REGION = {"MA-01": 8, "MA-02": 8, "MA-03": 9, "MA-04": 7, "MA-05": 5, "MA-06": 9,
              "MA-07": 8, "MA-08": 5, "MA-09": 6, "MA-10": 4, "MA-11": 4, "MA-12": 2}


def test_seed_file_is_the_2015_division_with_a_39_province_placement() -> None:
    seed = ref.load_seed()
    assert {r.code: r.name for r in seed.regions} == REGIONS
    assert all(r.name_ar for r in seed.regions)
    assert len(seed.provinces) == 75
    assert sum(p.kind == "prefecture" for p in seed.provinces) == 13
    # every province in exactly one region; names and codes unique
    assert len({p.name for p in seed.provinces}) == 75
    assert len({p.code for p in seed.provinces}) == 75
    by_region: dict[str, int] = {}
    for p in seed.provinces:
        by_region[p.region_code] = by_region.get(p.region_code, 0) + 1
    assert by_region == PER_REGION
    assert {"Zagora", "Errachidia", "Tinghir", "Chefchaouen", "Al Hoceïma", "Figuig",
            "Azilal", "Al Haouz", "Taroudant", "Assa-Zag"} <= {p.name for p in seed.provinces}

    placement = seed.placement
    assert sorted(placement) == [f"U{i:03d}" for i in range(1, 101)]
    served = {seed.province_by_name(n) for n in placement.values()}
    assert len(served) == 39
    assert len({p.region_code for p in served}) == 9
    assert all(p.kind == "province" for p in served)  # rural provinces, no prefecture


def test_migration_seeds_regions_and_provinces(session: Session) -> None:
    regions = ref.list_regions(session)
    assert {r.code: r.name for r in regions} == REGIONS
    assert {r.code: len(r.provinces) for r in regions} == PER_REGION
    zagora = ref.province_by_code(session, "MA-ZAG")
    assert zagora is not None and zagora.region.name == "Drâa-Tafilalet"
    assert ref.seed_places(session) == 0  # idempotent: nothing missing
    session.delete(session.scalars(select(Province).where(Province.code == "MA-AOU")).one())
    session.flush()
    assert ref.seed_places(session) == 1


def test_units_are_placed_from_the_seed(session: Session) -> None:
    entries = [crud.Registration(unit=f"U{i:03d}", gateway=f"gw-u{i:03d}")
               for i in range(1, 101)]
    entries[0] = crud.Registration(unit="U001", gateway="gw-u001", province="Tan-Tan",
                                   region="Guelmim-Oued Noun")  # registered with a place
    crud.register(session, entries=entries, now=NOW)
    result = ref.place_units(session)
    assert len(result.placed) == 99 and result.kept == 1 and result.not_in_seed == []
    cov = ref.coverage(session)
    assert sum(c.units for c in cov) == 100
    assert len({c.province for c in cov}) == 39 + 1  # U001 in Tan-Tan, by hand
    assert len({c.region for c in cov}) == 9
    assert ref.place_units(session).placed == []  # idempotent
    forced = ref.place_units(session, force=True)
    assert forced.placed == ["U001"]
    assert len({c.province for c in ref.coverage(session)}) == 39


def test_names_are_checked_with_a_suggestion(session: Session) -> None:
    assert ref.check_place(session, province="Zagora", region=None) == \
        ("Zagora", "Drâa-Tafilalet")
    with pytest.raises(ref.PlaceError) as e:
        ref.check_place(session, province="Zagorra", region=None)
    assert e.value.field == "province" and "did you mean 'Zagora'" in str(e.value)
    with pytest.raises(ref.PlaceError) as e:
        ref.check_place(session, province="Zagora", region="Souss-Massa")
    assert e.value.field == "region" and "Drâa-Tafilalet" in str(e.value)
    with pytest.raises(ref.PlaceError):
        ref.check_place(session, province=None, region="Oriental")


def test_renames_and_moves_follow_onto_units(session: Session) -> None:
    crud.register(session, entries=[crud.Registration(unit="U050", gateway="gw-u050")],
                  now=NOW)
    ref.place_units(session)
    unit = session.scalars(select(Unit).where(Unit.code == "U050")).one()
    province = ref.province_by_code(session, ref.load_seed().province_by_name(
        unit.province or "").code)
    assert province is not None
    ref.update_province(session, province, name="Renamed")
    region = session.scalars(select(Region).where(Region.code == "MA-12")).one()
    ref.update_province(session, province, region_code="MA-12")
    session.refresh(unit)
    assert (unit.province, unit.region) == ("Renamed", "Dakhla-Oued Ed-Dahab")
    ref.update_region(session, region, name="Dakhla")
    session.refresh(unit)
    assert unit.region == "Dakhla"
    with pytest.raises(ref.PlaceError) as e:
        ref.update_region(session, region, name="Souss-Massa")
    assert e.value.field == "name"
    # the seed still finds the renamed province by its code
    assert ref.place_units(session, force=True).placed == []


def test_places_api(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    regions = call(c, t, "GET", "/api/v1/places/regions", Role.reception).json()
    assert [r["name"] for r in regions] == list(REGIONS.values())
    assert regions[7]["name_ar"] == "درعة - تافيلالت"

    r = call(c, t, "PUT", "/api/v1/places/units/U002", json={"province": "Tinghir"})
    assert r.status_code == 200
    assert r.json() == {"unit": "U002", "province": "Tinghir", "region": "Drâa-Tafilalet"}
    r = call(c, t, "PUT", "/api/v1/places/units/U002", json={"province": "Tinghier"})
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "province"] and "did you mean 'Tinghir'" in err["msg"]
    assert call(c, t, "PUT", "/api/v1/places/units/U404",
                json={"province": "Tinghir"}).status_code == 404

    r = call(c, t, "POST", "/api/v1/places/units/apply-seed", json={"force": False})
    assert r.json() == {"placed": ["U001"], "kept": 1, "not_in_seed": []}
    cov = call(c, t, "GET", "/api/v1/places/coverage", Role.logistics).json()
    assert cov == [{"region": "Drâa-Tafilalet", "province": "Tinghir", "units": 1},
                   {"region": "Tanger-Tétouan-Al Hoceïma", "province": "Chefchaouen",
                    "units": 1}]

    r = call(c, t, "PATCH", "/api/v1/places/provinces/MA-TIN", json={"name": "Tinghir (T)"})
    assert r.status_code == 200 and r.json()["units"] == 1
    units = call(c, t, "GET", "/api/v1/units").json()
    assert units[1]["province"] == "Tinghir (T)"
    r = call(c, t, "PATCH", "/api/v1/places/provinces/MA-TIN", json={"region_code": "MA-99"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "region_code"]
    r = call(c, t, "PATCH", "/api/v1/places/provinces/MA-TIN", json={"nom": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "nom"]
    provinces = call(c, t, "GET", "/api/v1/places/provinces", Role.nurse,
                     region="Dakhla-Oued Ed-Dahab").json()
    assert [p["name"] for p in provinces] == ["Aousserd", "Oued Ed-Dahab"]


def test_cli_places_units_after_registration(sqlite_url: str, tmp_path: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from fleet_server.cli import main
    accounts = tmp_path / "accounts.json"
    accounts.write_text('[{"unit": "U007", "gateway": "gw-u007"},'
                        ' {"unit": "X1", "gateway": "gw-x1"}]')
    assert main(["register", "--accounts", str(accounts), "--database-url", sqlite_url]) == 0
    assert main(["seed-places", "--database-url", sqlite_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        "places added 0, units placed 1, kept 0, not in the seed 1"
    from fleet_server.db import make_engine
    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        u = s.scalars(select(Unit).where(Unit.code == "U007")).one()
        assert (u.province, u.region) == ("Ouezzane", "Tanger-Tétouan-Al Hoceïma")
    engine.dispose()
