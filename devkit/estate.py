"""Small estates built in code, for tests that need devices without the full sample estate."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from facility.importer import import_estate
from protocol.estate_file import EstateFile

METRICS = ("winding_temp_a_c", "winding_temp_b_c", "winding_temp_c_c", "load_pct", "room_temp_c")


def sensor_code(estate: str, i: int) -> str:
    return f"{estate.upper()}-S{i:04d}"


def meter_code(estate: str, i: int) -> str:
    return f"{estate.upper()}-M{i:04d}"


def small_estate(code: str = "t1", *, sensors: int = 20, meters: int = 5) -> EstateFile:
    """One power room with ``sensors`` 5-point devices, ``meters`` hot-water meters and a door controller."""
    return EstateFile.model_validate(
        {
            "estate": {"code": code, "name": f"测试小区 {code}"},
            "rooms": [
                {
                    "code": "PR1",
                    "name": "配电房",
                    "kind": "power_room",
                    "devices": [
                        {
                            "code": sensor_code(code, i),
                            "kind": "transformer",
                            "points": [{"metric": m, "unit": "°C"} for m in METRICS],
                        }
                        for i in range(sensors)
                    ],
                }
            ],
            "devices": [
                {
                    "code": meter_code(code, i),
                    "kind": "hot_water_meter",
                    "register_max": "99999.999",
                    "resolution": "0.001",
                }
                for i in range(meters)
            ]
            + [{"code": f"{code.upper()}-AC1", "kind": "door_controller", "attrs": {"doors": ["1-1-main"]}}],
        }
    )


def load_small_estate(engine: Engine, code: str = "t1", **kw: int) -> EstateFile:
    doc = small_estate(code, **kw)
    with Session(engine) as session, session.begin():
        import_estate(session, doc)
    return doc
