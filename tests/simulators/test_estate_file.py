"""The sample estate file loads and describes the estate the issue asks for."""

from __future__ import annotations

from collections import Counter

from protocol.estate_file import EstateFile, ExpandedEstate


def test_sample_estate_has_300_households(estate_doc: EstateFile, expanded: ExpandedEstate) -> None:
    assert estate_doc.estate.code == "lvyuan"
    assert estate_doc.estate.timezone == "Asia/Shanghai"
    assert len(expanded.units) == 300
    occupancy = Counter(u.spec.occupancy for u in expanded.units)
    assert 0.06 <= occupancy["vacant"] / 300 <= 0.10
    assert 2 <= occupancy["renovating"] <= 8
    assert 1 <= sum(u.spec.has_pv for u in expanded.units) <= 3


def test_listed_unit_codes_exist(estate_doc: EstateFile, expanded: ExpandedEstate) -> None:
    # expand() silently ignores a vacant/renovating/pv code that matches no unit: catch typos here.
    codes = {u.spec.code for u in expanded.units}
    for b in estate_doc.buildings:
        assert set(b.vacant) | set(b.renovating) | set(b.pv) <= codes
    occupancy = {u.spec.code: u.spec.occupancy for u in expanded.units}
    for r in estate_doc.residents:
        assert occupancy[r.unit] != "vacant", r
    assert any(r.role == "tenant" and r.lease_end is not None for r in estate_doc.residents)


def test_every_unit_has_three_meters(expanded: ExpandedEstate) -> None:
    by_unit = Counter(d.unit for d in expanded.devices if d.unit)
    assert set(by_unit.values()) == {3}
    e = next(d.spec for d in expanded.devices if d.spec.code == "E-3-1-1201")
    assert (e.kind, str(e.register_max), str(e.resolution), e.expected_interval_s) == (
        "electricity_meter",
        "999999.99",
        "0.01",
        900,
    )
    cw = next(d.spec for d in expanded.devices if d.spec.code == "CW-3-1-1201")
    assert cw.has_valve
    assert str(cw.resolution) == "0.001"


def test_rooms_entrances_and_masters(estate_doc: EstateFile, expanded: ExpandedEstate) -> None:
    rooms = {r.code: r for r in estate_doc.rooms}
    assert set(rooms) == {"PR1", "HS1", "PUMP1", "FIRE1", "HWP1"}
    for room in rooms.values():
        for d in room.devices:
            if d.points:
                assert 10 <= d.expected_interval_s <= 60, d.code
    tr1 = next(d for d in rooms["PR1"].devices if d.code == "TR1")
    assert {p.metric for p in tr1.points} >= {"winding_temp_a_c", "winding_temp_b_c", "winding_temp_c_c", "fan_on"}
    doors = [d for d in expanded.devices if d.spec.kind == "door_controller"]
    entrances = {(u.building, u.spec.entrance) for u in expanded.units}
    assert {(d.building, str(d.spec.attrs["entrance"])) for d in doors} == entrances
    masters = {d.spec.code for d in expanded.devices if d.spec.attrs.get("master_of") == "cold_water_meter"}
    assert masters == {f"CW-MASTER-{b.code}" for b in estate_doc.buildings}
