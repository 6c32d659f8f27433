"""Default rule packs (domain-defaults §2) and the mapping between `alarm_rules` rows and rule objects.

A rule row applies to every point whose metric equals `alarm_rules.metric`. `params` holds the rule
kind's fields as plain JSON (durations in seconds), so `build_rule` turns a row back into the pure
`alarms.rules` dataclass the evaluator runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import Direction, RuleKind, Severity, Trend
from alarms.rules import PointRule, RateOfChangeRule, RepeatRule, StaleRule, ThresholdRule
from storage.models import AlarmRuleRow


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One default rule: a stable code (the upsert key), the point metric it watches, kind and params."""

    code: str
    metric: str
    kind: RuleKind
    params: dict[str, Any]
    severity_policy: dict[str, Any] = field(default_factory=dict)


def _threshold(
    code: str,
    metric: str,
    *,
    direction: Direction = Direction.above,
    warning: float | None = None,
    alarm: float | None = None,
    critical: float | None = None,
    clear_band: float = 0.0,
    min_duration_s: float = 0.0,
) -> RuleSpec:
    params: dict[str, Any] = {"direction": str(direction), "clear_band": clear_band, "min_duration_s": min_duration_s}
    for name, level in (("warning", warning), ("alarm", alarm), ("critical", critical)):
        if level is not None:
            params[name] = level
    spec = RuleSpec(code, metric, RuleKind.threshold, params)
    build_rule(spec.code, spec.kind, spec.params)  # validate the pack at import time
    return spec


def build_rule(code: str, kind: str, params: Mapping[str, Any]) -> PointRule:
    """Rebuild the pure rule object of an `alarm_rules` row; raises ValueError/KeyError on bad params."""
    match RuleKind(kind):
        case RuleKind.threshold:
            return ThresholdRule(
                id=code,
                direction=Direction(params.get("direction", Direction.above)),
                warning=_opt_float(params.get("warning")),
                alarm=_opt_float(params.get("alarm")),
                critical=_opt_float(params.get("critical")),
                clear_band=float(params.get("clear_band", 0.0)),
                min_duration=timedelta(seconds=float(params.get("min_duration_s", 0.0))),
            )
        case RuleKind.repeat:
            return RepeatRule(
                id=code,
                direction=Direction(params.get("direction", Direction.above)),
                level=float(params["level"]),
                count=int(params["count"]),
                severity=Severity(params["severity"]),
                clear_band=float(params.get("clear_band", 0.0)),
            )
        case RuleKind.rate_of_change:
            return RateOfChangeRule(
                id=code,
                trend=Trend(params.get("trend", Trend.either)),
                max_delta=float(params["max_delta"]),
                window=timedelta(seconds=float(params["window_s"])),
                severity=Severity(params["severity"]),
                clear_band=float(params.get("clear_band", 0.0)),
            )
        case RuleKind.stale:
            return StaleRule(
                id=code,
                expected_interval=timedelta(seconds=float(params["expected_interval_s"])),
                severity=Severity(params["severity"]),
                **({"factor": float(params["factor"])} if "factor" in params else {}),
            )
        case RuleKind.composite:
            raise ValueError("composite rules are not evaluated per point reading")


def _opt_float(raw: object) -> float | None:
    return None if raw is None else float(raw)  # type: ignore[arg-type]


# Metric names are the sample estate's (examples/estate.yaml). Temperature levels are instantaneous
# (min duration 0): the values are already smoothed by the sensors and a dry-type controller trips
# on the first reading past 170 °C, so waiting would only delay the alarm that matters most.
DEFAULT_RULES: tuple[RuleSpec, ...] = (
    # Dry-type transformer winding temperature, class F insulation: 130 / 155 / 170 °C, 5 K band.
    *(
        _threshold(
            f"dry_transformer.winding_temp_{phase}.high",
            f"winding_temp_{phase}_c",
            warning=130.0,
            alarm=155.0,
            critical=170.0,
            clear_band=5.0,
        )
        for phase in ("a", "b", "c")
    ),
    # Distribution-room temperature (GB/T 7251.1 service conditions): 35 / 40 / 45 °C.
    _threshold("power_room.room_temp.high", "room_temp_c", warning=35.0, alarm=40.0, critical=45.0, clear_band=2.0),
    # Distribution-room humidity: warning above 80 % RH.
    _threshold("power_room.humidity.high", "humidity_pct", warning=80.0, clear_band=5.0),
    # Capacitor case temperature: alarm above 60 °C.
    _threshold("capacitor.case_temp.high", "case_temp_c", alarm=60.0, clear_band=3.0),
    # Water ingress and smoke are state points (0/1): any activation is critical.
    _threshold("power_room.water_ingress", "water_ingress", critical=0.5),
    _threshold("power_room.smoke", "smoke", critical=0.5),
    # Domestic hot water (hot-water plant supply): warning above 65 °C (scald risk).
    _threshold("hot_water.supply_temp.high", "supply_temp_c", warning=65.0, clear_band=2.0),
)


def ensure_default_rules(session: Session, specs: tuple[RuleSpec, ...] = DEFAULT_RULES) -> int:
    """Insert the default rules, or refresh kind/metric/params of existing ones by code; returns the count.

    `enabled` is left alone on existing rows, so an operator who switched a default rule off keeps it off.
    Idempotent; flushes, never commits.
    """
    if not specs:
        return 0
    stmt = insert(AlarmRuleRow).values(
        [
            {
                "code": s.code,
                "kind": str(s.kind),
                "metric": s.metric,
                "params": s.params,
                "severity_policy": s.severity_policy,
                "enabled": True,
            }
            for s in specs
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[AlarmRuleRow.code],
        set_={
            "kind": stmt.excluded.kind,
            "metric": stmt.excluded.metric,
            "params": stmt.excluded.params,
            "severity_policy": stmt.excluded.severity_policy,
        },
        # Skip the write (and the dead tuple) when nothing changed.
        where=func.row(AlarmRuleRow.kind, AlarmRuleRow.metric, AlarmRuleRow.params, AlarmRuleRow.severity_policy).op(
            "IS DISTINCT FROM"
        )(func.row(stmt.excluded.kind, stmt.excluded.metric, stmt.excluded.params, stmt.excluded.severity_policy)),
    )
    session.execute(stmt)
    session.flush()
    return len(specs)


__all__ = ["DEFAULT_RULES", "RuleSpec", "build_rule", "ensure_default_rules"]
