"""Migration 0020: the threshold-era secondary-supply rule's open point alarms are ended and its states dropped,
so the multi-point emitter-cap rule that takes over its code starts clean; other rules untouched; down and up."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from facility.importer import import_estate
from protocol.estate_file import EstateFile
from storage.migrate import downgrade, upgrade

_ALARM = (
    "INSERT INTO alarms (rule_id, subject, estate_id, severity, state, raised_at) "
    "SELECT r.id, :subject, e.id, 'alarm', 'active', now() FROM alarm_rules r, estates e "
    "WHERE r.code = :rule AND e.code = 'm20'"
)


def test_0020_ends_the_threshold_eras_open_supply_alarms(fresh_database: str) -> None:
    engine = create_engine(fresh_database, poolclass=NullPool)
    try:
        downgrade(fresh_database, "0019")
        doc = {
            "estate": {"code": "m20", "name": "m20"},
            "rooms": [
                {
                    "code": "HS",
                    "name": "热力站",
                    "kind": "heat_station",
                    "devices": [
                        {
                            "code": "M20-HX",
                            "kind": "plate_heat_exchanger",
                            "points": [{"metric": "secondary_supply_temp_c"}],
                        }
                    ],
                }
            ],
        }
        with Session(engine) as session, session.begin():
            import_estate(session, EstateFile.model_validate(doc))
        with engine.begin() as conn:
            point = conn.scalar(
                text(
                    "SELECT p.id FROM points p JOIN devices d ON d.id = p.device_id "
                    "WHERE d.code = 'M20-HX' AND p.metric = 'secondary_supply_temp_c'"
                )
            )
            for code in ("heat_station.secondary_supply.high", "heat_station.return_pressure.low"):
                rule_id = conn.scalar(
                    text(
                        "INSERT INTO alarm_rules (code, kind, metric, params) "
                        "VALUES (:c, 'threshold', 'm', '{}') RETURNING id"
                    ),
                    {"c": code},
                )
                conn.execute(text(_ALARM), {"subject": f"point:{point}", "rule": code})
                conn.execute(
                    text("INSERT INTO alarm_states (rule_id, point_id, state) VALUES (:r, :p, '{\"active\": true}')"),
                    {"r": rule_id, "p": point},
                )
        upgrade(fresh_database)
        with engine.begin() as conn:
            alarms = dict(
                conn.execute(
                    text(
                        "SELECT r.code, a.state || '/' || coalesce(a.clear_reason, '-') FROM alarms a "
                        "JOIN alarm_rules r ON r.id = a.rule_id"
                    )
                ).all()
            )
            states = set(
                conn.execute(text("SELECT r.code FROM alarm_states s JOIN alarm_rules r ON r.id = s.rule_id")).scalars()
            )
        assert alarms == {
            "heat_station.secondary_supply.high": "cleared/rule_changed",
            "heat_station.return_pressure.low": "active/-",
        }
        assert states == {"heat_station.return_pressure.low"}
        downgrade(fresh_database, "0019")
        upgrade(fresh_database)
    finally:
        engine.dispose()
