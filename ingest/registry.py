"""In-memory map of device code → ids, so a batch resolves devices and points without a query each."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

# How often an unknown device code may trigger a reload: a flood of messages from an unregistered
# device must not turn into a flood of registry queries.
RELOAD_COOLDOWN_S = 5.0


@dataclass(slots=True)
class DeviceInfo:
    id: int
    code: str
    estate: str
    kind: str
    interval_s: int = 60  # expected reporting interval (the per-device rate limit, ingest/ratelimit.py)
    points: dict[str, int] = field(default_factory=dict)


class DeviceRegistry:
    def __init__(self) -> None:
        self._devices: dict[str, DeviceInfo] = {}
        self._loaded_at = float("-inf")

    def __len__(self) -> int:
        return len(self._devices)

    def load(self, conn: Connection) -> None:
        devices: dict[str, DeviceInfo] = {}
        rows = conn.execute(
            text(
                "SELECT d.id, d.code, e.code, d.kind, d.expected_interval_s "
                "FROM devices d JOIN estates e ON e.id = d.estate_id"
            )
        )
        by_id: dict[int, DeviceInfo] = {}
        for dev_id, code, estate, kind, interval_s in rows:
            info = DeviceInfo(id=dev_id, code=code, estate=estate, kind=kind, interval_s=interval_s)
            devices[code] = info
            by_id[dev_id] = info
        for point_id, device_id, metric in conn.execute(text("SELECT id, device_id, metric FROM points")):
            if device_id in by_id:
                by_id[device_id].points[metric] = point_id
        self._devices = devices
        self._loaded_at = time.monotonic()
        log.info("device registry: %d devices", len(devices))

    def get(self, code: str) -> DeviceInfo | None:
        return self._devices.get(code)

    def resolve(self, conn: Connection, codes: set[str]) -> None:
        """Reload once (rate limited) if any of ``codes`` is unknown: the estate may have just been imported."""
        if any(c not in self._devices for c in codes) and time.monotonic() - self._loaded_at > RELOAD_COOLDOWN_S:
            self.load(conn)

    def expire(self) -> None:
        """Let the next unknown code reload at once, cooldown or not: an estate was just imported (its devices
        are about to report; quarantining their first messages as unknown would be wrong)."""
        self._loaded_at = float("-inf")

    def point_missing(self, info: DeviceInfo, metric: str) -> bool:
        return metric not in info.points
