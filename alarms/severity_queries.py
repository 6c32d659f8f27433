"""Open-alarm severity per point and per device: what drawings of equipment colour themselves by (the room's
system diagram, dashboards/diagrams/). One read per room, so a live diagram costs one query a refresh."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

# Worse is higher; a point or device shows the worst of its open alarms.
SEVERITY_RANK = {"warning": 1, "alarm": 2, "critical": 3}

# A composite (multi-point) alarm's point_id is only its state's anchor (alarms/multipoint_evaluator.py): it
# colours the device, not one of its points.
_OPEN = text(
    "SELECT CASE WHEN r.kind = 'composite' THEN NULL ELSE a.point_id END AS point_id, a.device_id, a.severity, "
    "a.state FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id "
    "WHERE a.device_id = ANY(:devices) AND a.state <> 'cleared'"
)


@dataclass
class OpenSeverity:
    """The worst severity of a subject's open alarms, how many are open and how many nobody acknowledged."""

    severity: str
    count: int = 0
    unacknowledged: int = 0

    def add(self, severity: str, state: str) -> None:
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(self.severity, 0):
            self.severity = severity
        self.count += 1
        if state == "active":
            self.unacknowledged += 1


@dataclass
class SeverityMap:
    points: dict[int, OpenSeverity] = field(default_factory=dict)
    devices: dict[int, OpenSeverity] = field(default_factory=dict)


def open_severities(session: Session, device_ids: Sequence[int]) -> SeverityMap:
    """Worst open alarm per point and per device of these devices (a device counts its points' alarms too)."""
    out = SeverityMap()
    if not device_ids:
        return out
    for point_id, device_id, severity, state in session.execute(_OPEN, {"devices": list(device_ids)}).all():
        if point_id is not None:
            out.points.setdefault(int(point_id), OpenSeverity(severity)).add(severity, state)
        out.devices.setdefault(int(device_id), OpenSeverity(severity)).add(severity, state)
    return out
