"""Estate import from YAML: the sample estate, re-import in place, and inconsistent files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import EstateFileError
from facility.importer import import_estate
from protocol.estate_file import EstateFile, load_estate_file
from storage.models import Device, Estate, Point, Resident, Room, Unit

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"


def test_sample_estate_imports_with_every_part(session: Session) -> None:
    summary = import_estate(session, load_estate_file(SAMPLE))
    assert summary.units == 300
    assert session.scalar(select(func.count()).select_from(Unit)) >= 300
    kinds = {k for (k,) in session.execute(select(Room.kind))}
    assert {"power_room", "heat_station", "pump_room", "fire_pump_room", "hot_water_plant"} <= kinds
    # Only this estate's: other tests import estates with unit meters into the same session database.
    estate_id = session.scalars(select(Estate.id).where(Estate.code == summary.estate)).one()
    meters = session.scalars(
        select(Device.kind).where(Device.unit_id.is_not(None), Device.estate_id == estate_id)
    ).all()
    assert {m: meters.count(m) for m in set(meters)} == {
        "electricity_meter": 300,
        "cold_water_meter": 300,
        "hot_water_meter": 300,
    }
    vacant = session.scalar(select(func.count()).select_from(Unit).where(Unit.occupancy == "vacant"))
    assert (vacant or 0) > 0
    assert session.scalar(select(func.count()).select_from(Device).where(Device.kind == "door_controller")) >= 9
    assert session.scalar(select(func.count()).select_from(Resident)) == summary.residents


def test_reimport_updates_in_place(session: Session) -> None:
    doc = load_estate_file(SAMPLE)
    import_estate(session, doc)
    counts = [session.scalar(select(func.count()).select_from(t)) for t in (Unit, Device, Point)]
    data = doc.model_dump(mode="json")
    data["buildings"][0]["vacant"] = [*data["buildings"][0]["vacant"], "1-1-101"]
    import_estate(session, EstateFile.model_validate(data))
    assert [session.scalar(select(func.count()).select_from(t)) for t in (Unit, Device, Point)] == counts
    assert session.scalar(select(Unit.occupancy).where(Unit.code == "1-1-101")) == "vacant"


def test_device_code_of_another_estate_is_refused(session: Session) -> None:
    base = {
        "rooms": [{"code": "R", "name": "r", "kind": "pump_room", "devices": [{"code": "SHARED-1", "kind": "pump"}]}]
    }
    import_estate(session, EstateFile.model_validate({"estate": {"code": "ea", "name": "A"}, **base}))
    with pytest.raises(EstateFileError, match="SHARED-1"):
        import_estate(session, EstateFile.model_validate({"estate": {"code": "eb", "name": "B"}, **base}))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"buildings": [{"code": "1", "name": "1幢", "floors": 2, "vacant": ["1-1-901"]}]}, "1-1-901"),
        ({"residents": [{"unit": "9-9-999", "name": "张三", "phone": "13800000000"}]}, "9-9-999"),
        ({"devices": [{"code": "X", "kind": "k"}, {"code": "X", "kind": "k"}]}, "duplicate device codes"),
        ({"rooms": [{"code": "R", "name": "r", "kind": "pump_room", "building": "7"}]}, "unknown building"),
    ],
)
def test_inconsistent_files_are_refused_with_the_reason(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EstateFile.model_validate({"estate": {"code": "bad", "name": "坏"}, **patch})
