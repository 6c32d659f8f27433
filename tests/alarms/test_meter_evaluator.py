"""MeterAnomalyEvaluator against PostgreSQL: meter batches in (through the real ingest writer), alarms out.

A small metered estate per test: one building, four flats (1-1-101 vacant, 1-1-103 with PV), an
electricity, cold-water (with valve) and hot-water meter each, and a building master cold-water meter.
Every test builds its own estate (unique codes) in the shared session database. The helpers here
are reused by test_meter_jobs.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session

from alarms.meter_evaluator import MeterAnomalyEvaluator
from alarms.meter_pack import METER_RULES, ensure_meter_rules
from core import clock
from facility.importer import import_estate
from ingest.decode import DecodedBatch
from ingest.writer import write_batch
from protocol.estate_file import EstateFile

T0 = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 2026-11-24 00:00 in Asia/Shanghai
VACANT, OCCUPIED, PV = "1-1-101", "1-1-102", "1-1-103"
UNITS = (VACANT, OCCUPIED, PV, "1-1-104")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def metered_estate(code: str) -> EstateFile:
    p = code.upper()
    return EstateFile.model_validate(
        {
            "estate": {"code": code, "name": f"测试小区 {code}"},
            "buildings": [
                {
                    "code": "1",
                    "name": "1幢",
                    "floors": 1,
                    "units_per_floor": 4,
                    "vacant": [VACANT],
                    "pv": [PV],
                }
            ],
            "unit_meters": [
                {
                    "kind": "electricity_meter",
                    "code": f"{p}-E-{{unit}}",
                    "register_max": "999999.99",
                    "resolution": "0.01",
                },
                {
                    "kind": "cold_water_meter",
                    "code": f"{p}-CW-{{unit}}",
                    "register_max": "99999.999",
                    "resolution": "0.001",
                    "has_valve": True,
                },
                {
                    "kind": "hot_water_meter",
                    "code": f"{p}-HW-{{unit}}",
                    "register_max": "99999.999",
                    "resolution": "0.001",
                },
            ],
            "devices": [
                {
                    "code": f"{p}-CW-MASTER",
                    "kind": "cold_water_meter",
                    "building": "1",
                    "register_max": "9999999.99",
                    "resolution": "0.01",
                    "attrs": {"master_of": "cold_water_meter"},
                }
            ],
        }
    )


class MeterEstate:
    def __init__(self, engine: Engine, prefix: str = "ma") -> None:
        self.engine = engine
        self.code = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with Session(engine) as session, session.begin():
            import_estate(session, metered_estate(self.code))
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT d.code, d.id FROM devices d JOIN estates e ON e.id = d.estate_id WHERE e.code = :c"),
                {"c": self.code},
            )
            self.ids: dict[str, int] = {str(c): int(i) for c, i in rows}
            self.estate_id = int(
                conn.execute(text("SELECT id FROM estates WHERE code = :c"), {"c": self.code}).scalar_one()
            )

    def device(self, kind: str, unit: str) -> int:
        return self.ids[f"{self.code.upper()}-{kind}-{unit}"]

    @property
    def master(self) -> int:
        return self.ids[f"{self.code.upper()}-CW-MASTER"]

    def unit_id(self, unit: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT u.id FROM units u JOIN buildings b ON b.id = u.building_id JOIN estates e "
                        "ON e.id = b.estate_id WHERE e.code = :e AND u.code = :u"
                    ),
                    {"e": self.code, "u": unit},
                ).scalar_one()
            )

    def set_occupancy(self, unit: str, occupancy: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE units SET occupancy = :o WHERE id = :id"), {"o": occupancy, "id": self.unit_id(unit)}
            )

    def alarms(self, device_id: int | None = None, *, subject: str | None = None) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT a.id, r.code, a.severity, a.state, a.raised_at, a.cleared_at, a.subject, a.device_id, "
                        "a.unit_id, a.estate_id, a.detail FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
                        "WHERE a.estate_id = :e AND (CAST(:d AS int) IS NULL OR a.device_id = :d) "
                        "AND (CAST(:s AS text) IS NULL OR a.subject = :s) ORDER BY a.id"
                    ),
                    {"e": self.estate_id, "d": device_id, "s": subject},
                )
            )

    def override(
        self, rule_code: str, scope: str, scope_id: int, params: dict[str, Any], enabled: bool | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO alarm_rule_overrides (rule_id, scope, scope_id, params, enabled) "
                    "SELECT id, :scope, :sid, CAST(:p AS jsonb), :en FROM alarm_rules WHERE code = :code"
                ),
                {"scope": scope, "sid": scope_id, "p": json.dumps(params), "en": enabled, "code": rule_code},
            )


Row = tuple[int, datetime, str] | tuple[int, datetime, str, str | None, list[str]]


def batch(*rows: Row) -> DecodedBatch:
    """(device, ts, register[, reverse, flags]) → a DecodedBatch with meter readings."""
    b = DecodedBatch()
    for row in rows:
        device, ts, register = row[0], row[1], row[2]
        reverse = row[3] if len(row) > 3 else None
        flags = row[4] if len(row) > 4 else []
        b.meters.append(
            (ts, device, Decimal(register), None if reverse is None else Decimal(reverse), None, list(flags), None, ts)
        )
        b.messages += 1
    return b


def write(conn: Connection, b: DecodedBatch) -> None:
    write_batch(conn, b, now=clock.now(), gaps=[], last_seq={}, keep_rollup=False)


def series(device: int, start: float, registers: list[str], every: float = 15) -> list[Row]:
    """Readings every ``every`` minutes from minute ``start``."""
    return [(device, at(start + i * every), r) for i, r in enumerate(registers)]


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def meter_rules(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_meter_rules(session)


@pytest.fixture
def est(engine: Engine) -> MeterEstate:
    return MeterEstate(engine)


class Hook:
    """The evaluator with an on_raised recorder, fed one transaction per batch like the Pipeline."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.raised: list[int] = []
        self.ev = MeterAnomalyEvaluator(on_raised=lambda conn, ids: self.raised.extend(ids))

    def feed(self, *rows: Row) -> list[int]:
        b = batch(*rows)
        with self.engine.begin() as conn:
            write(conn, b)
            return self.ev(conn, b, None)


@pytest.fixture
def hook(engine: Engine) -> Hook:
    return Hook(engine)


def codes(rows: list[Any]) -> list[tuple[str, str, str]]:
    return [(r.code, r.severity, r.state) for r in rows]


# --- the pack -----------------------------------------------------------------------------------------


def test_meter_rules_are_idempotent_and_carry_their_meta(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_meter_rules(session)
        ensure_meter_rules(session)
        rows = session.execute(
            text(
                "SELECT code, kind, metric, device_kind, title_zh, ticket_policy, params FROM alarm_rules "
                "WHERE kind = 'meter'"
            )
        ).all()
    by_code = {r.code: r for r in rows}
    assert {s.code for s in METER_RULES} <= by_code.keys()
    vacant = by_code["meter.cold_water.vacant_flow"]
    assert (vacant.metric, vacant.device_kind, vacant.params) == (
        "register",
        "cold_water_meter",
        {"anomaly": "vacant_flow"},
    )
    assert vacant.ticket_policy["category"] == "water"
    assert vacant.ticket_policy["on_site_minutes"] == 20
    assert vacant.ticket_policy["priority"]["critical"] == "high"
    assert by_code["meter.hot_water.vacant_flow"].ticket_policy["category"] == "hot_water"
    assert "空置" in vacant.title_zh
    assert "meter.electricity.vacant_flow" not in by_code  # §3 vacant flow is about water


# --- vacant flow ----------------------------------------------------------------------------------------


def test_vacant_flow_raises_once_critical_with_valve_and_clears_when_dry(est: MeterEstate, hook: Hook) -> None:
    cw = est.device("CW", VACANT)
    hook.feed(*series(cw, 0, ["1.000", "1.000"]))
    assert hook.feed((cw, at(30), "1.015")) == []  # one step alone may be a drip
    ids = hook.feed((cw, at(45), "1.030"))
    [a] = est.alarms(cw)
    assert ids == [a.id]
    assert hook.raised == [a.id]
    assert (a.code, a.severity, a.state, a.raised_at) == ("meter.cold_water.vacant_flow", "critical", "active", at(45))
    assert (a.subject, a.unit_id, a.estate_id) == (f"device:{cw}", est.unit_id(VACANT), est.estate_id)
    assert a.detail["anomaly"] == "vacant_flow"
    assert a.detail["close_valve"] is True
    assert a.detail["evidence"]["volumes"] == "0.015,0.015"
    assert "vacant unit" in a.detail["message"]
    # Still flowing: the same episode, no second alarm.
    assert hook.feed((cw, at(60), "1.045")) == []
    # One dry interval does not end it (hysteresis) ...
    hook.feed((cw, at(75), "1.045"))
    assert codes(est.alarms(cw)) == [("meter.cold_water.vacant_flow", "critical", "active")]
    # ... two do.
    hook.feed((cw, at(90), "1.045"))
    [a] = est.alarms(cw)
    assert (a.state, a.cleared_at) == ("cleared", at(90))
    assert hook.raised == [a.id]


def test_redelivered_and_late_readings_raise_nothing_new(est: MeterEstate, hook: Hook) -> None:
    cw = est.device("CW", VACANT)
    flowing = series(cw, 0, ["1.000", "1.000", "1.015", "1.030"])
    hook.feed(*flowing)
    assert len(est.alarms(cw)) == 1
    assert hook.feed(*flowing) == []  # QoS 1 redelivery of the whole batch
    hook.feed(*series(cw, 60, ["1.030", "1.030"]))  # dry: cleared
    assert [a.state for a in est.alarms(cw)] == ["cleared"]
    # A duplicate of the flowing readings, and a late one from inside the old episode: still one episode.
    assert hook.feed(*flowing[-2:]) == []
    assert hook.feed((cw, at(40), "1.025")) == []
    assert [a.state for a in est.alarms(cw)] == ["cleared"]
    # Water running again later is a new episode.
    hook.feed(*series(cw, 90, ["1.040", "1.050"]))
    assert [a.state for a in est.alarms(cw)] == ["cleared", "active"]
    assert len(hook.raised) == 2


def test_flow_in_an_occupied_unit_raises_nothing(est: MeterEstate, hook: Hook) -> None:
    cw = est.device("CW", OCCUPIED)
    hook.feed(*series(cw, 0, ["1.000", "1.020", "1.040", "1.060", "1.080"]))
    assert est.alarms(cw) == []


def test_unit_let_while_water_runs_clears_the_alarm(est: MeterEstate, hook: Hook) -> None:
    hw = est.device("HW", VACANT)
    hook.feed(*series(hw, 0, ["1.000", "1.010", "1.020"]))
    [a] = est.alarms(hw)
    assert (a.code, a.state) == ("meter.hot_water.vacant_flow", "active")
    est.set_occupancy(VACANT, "occupied")
    hook.feed((hw, at(45), "1.030"))  # occupancy is read live, not from the cache
    [a] = est.alarms(hw)
    assert (a.state, a.cleared_at) == ("cleared", at(45))


def test_batch_without_watched_meter_readings_costs_no_query(engine: Engine, est: MeterEstate, hook: Hook) -> None:
    hook.feed(*series(est.device("CW", OCCUPIED), 0, ["1.000", "1.001"]))  # loads the cache
    statements: list[str] = []
    with engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert hook.ev(conn, DecodedBatch(), None) == []
    assert statements == []


def test_quiet_batch_costs_one_query(engine: Engine, est: MeterEstate, hook: Hook) -> None:
    cw = est.device("CW", OCCUPIED)
    hook.feed(*series(cw, 0, ["1.000", "1.001"]))
    b = batch((cw, at(30), "1.002"), (est.device("E", OCCUPIED), at(30), "10.00"))
    statements: list[str] = []
    with engine.begin() as conn:
        write(conn, b)
        event.listen(conn, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert hook.ev(conn, b, None) == []
    assert len(statements) == 1


# --- reverse energy ---------------------------------------------------------------------------------------


def test_reverse_power_flag_raises_and_clears_after_a_clean_day(est: MeterEstate, hook: Hook) -> None:
    e = est.device("E", OCCUPIED)
    hook.feed((e, at(0), "100.00", "0.00", []), (e, at(15), "100.00", "0.05", ["reverse_power"]))
    [a] = est.alarms(e)
    assert (a.code, a.severity, a.state) == ("meter.electricity.reverse_energy", "alarm", "active")
    assert a.detail["evidence"]["flag"] == "reverse_power"
    hook.feed((e, at(30), "100.10", "0.05", ["reverse_power"]))
    assert len(est.alarms(e)) == 1
    hook.feed((e, at(60 * 25), "101.00", "0.05", []))  # a day later, no flag, reverse register still
    [a] = est.alarms(e)
    assert (a.state, a.cleared_at) == ("cleared", at(60 * 25))


def test_reverse_register_rising_without_flag_raises(est: MeterEstate, hook: Hook) -> None:
    e = est.device("E", OCCUPIED)
    hook.feed((e, at(0), "100.00", "0.00", []), (e, at(60), "100.00", "0.20", []))
    [a] = est.alarms(e)
    assert a.code == "meter.electricity.reverse_energy"
    assert a.detail["evidence"]["increase_kwh"] == "0.20"


def test_reverse_on_a_pv_unit_raises_nothing(est: MeterEstate, hook: Hook) -> None:
    e = est.device("E", PV)
    hook.feed((e, at(0), "100.00", "0.00", []), (e, at(15), "100.00", "3.00", ["reverse_power"]))
    assert est.alarms(e) == []


# --- spike, reset, rollover ---------------------------------------------------------------------------------


def _steady(device: int, n: int, step: str = "0.010", start: str = "1.000") -> list[Row]:
    regs = [str(Decimal(start) + i * Decimal(step)) for i in range(n)]
    return series(device, 0, regs)


def test_spike_raises_once_with_billing_held(est: MeterEstate, hook: Hook) -> None:
    hw = est.device("HW", OCCUPIED)
    history = _steady(hw, 30)
    hook.feed(*history)
    assert est.alarms(hw) == []
    last = Decimal(history[-1][2])
    # The spike and a normal reading after it arrive in one batch (a backlog): still caught.
    hook.feed((hw, at(30 * 15), str(last + Decimal("2.5"))), (hw, at(31 * 15), str(last + Decimal("2.51"))))
    [a] = est.alarms(hw)
    assert (a.code, a.severity, a.state, a.raised_at) == ("meter.hot_water.spike", "alarm", "active", at(30 * 15))
    assert a.detail["hold_billing"] is True
    assert a.detail["evidence"]["volume"] == "2.500"
    hook.feed((hw, at(32 * 15), str(last + Decimal("2.52"))))
    assert [x.state for x in est.alarms(hw)] == ["active"]  # a review task: stays open until closed


def test_spike_on_a_usually_idle_meter_is_caught_by_the_supply_capacity(est: MeterEstate, hook: Hook) -> None:
    """No usual use to compare with (p95 = 0), yet 2.5 m³ of hot water in 15 min is beyond a DN15 branch."""
    hw = est.device("HW", OCCUPIED)
    hook.feed(*_steady(hw, 30, step="0.000"))
    hook.feed((hw, at(30 * 15), "3.500"))
    [a] = est.alarms(hw)
    assert (a.code, a.severity) == ("meter.hot_water.spike", "alarm")
    assert a.detail["evidence"]["capacity_limit"] == "0.375"  # 1.5 m³/h × 15 min
    assert a.detail["hold_billing"] is True


def test_reset_raises_a_billing_hold_task_and_rollover_raises_nothing(est: MeterEstate, hook: Hook) -> None:
    cw, e = est.device("CW", OCCUPIED), est.device("E", OCCUPIED)
    hook.feed(*series(cw, 0, ["500.000", "500.010", "3.000", "3.010"]))
    [a] = est.alarms(cw)
    assert (a.code, a.severity, a.state) == ("meter.cold_water.reset_or_replacement", "warning", "active")
    assert a.detail["hold_billing"] is True
    assert a.detail["evidence"]["kind"] == "reset"
    hook.feed((cw, at(60), "3.020"))
    assert len(est.alarms(cw)) == 1
    hook.feed(*series(e, 0, ["999999.50", "999999.90", "0.30", "0.70"]))
    assert est.alarms(e) == []


# --- overrides ------------------------------------------------------------------------------------------------


def test_device_override_changes_params_and_estate_override_disables(est: MeterEstate, hook: Hook) -> None:
    cw, hw = est.device("CW", VACANT), est.device("HW", VACANT)
    est.override("meter.cold_water.vacant_flow", "estate", est.estate_id, {"vacant_consecutive": 5})
    est.override("meter.cold_water.vacant_flow", "device", cw, {"vacant_consecutive": 3})
    est.override("meter.hot_water.vacant_flow", "estate", est.estate_id, {}, enabled=False)
    hook.feed(*series(cw, 0, ["1.000", "1.010", "1.020"]), *series(hw, 0, ["1.000", "1.010", "1.020"]))
    assert est.alarms(cw) == []
    assert est.alarms(hw) == []
    hook.feed((cw, at(45), "1.030"), (hw, at(45), "1.030"))
    assert codes(est.alarms(cw)) == [("meter.cold_water.vacant_flow", "critical", "active")]
    assert est.alarms(hw) == []
