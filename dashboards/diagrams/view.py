"""A room's diagram for the page: the scene laid out from the room's devices, with the values, device status
and open-alarm severity the SVG is first drawn with. The live stream re-sends values and status
(dashboards/rooms_view.live_payload) and the severities below; the page script applies them in place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from alarms.severity_queries import open_severities
from dashboards.diagrams.layout import build_scene
from dashboards.diagrams.scene import DeviceSpec, PointSpec, Scene
from dashboards.i18n import Lang
from storage.models import Device, Room


@dataclass(frozen=True)
class DiagramView:
    scene: Scene
    values: dict[int, dict[str, Any]]  # point id → the point's view (text, css, stale), as the tiles show it
    status: dict[int, str]  # device id → online | stale | offline | never
    point_sev: dict[int, str]  # point id → worst open alarm severity
    device_sev: dict[int, str]  # device id → worst open alarm severity (its points' alarms included)


def device_specs(devices: Sequence[Device], views: Sequence[dict[str, Any]]) -> list[DeviceSpec]:
    """The layout's input from the room page's device views (labels and units already in the page's language)."""
    by_id = {v["id"]: v for v in views}
    return [
        DeviceSpec(
            id=d.id,
            code=d.code,
            kind=d.kind,
            title=by_id[d.id]["title"],
            points=tuple(
                PointSpec(p["id"], p["metric"], p["label"], p["unit"], p["kind"]) for p in by_id[d.id]["points"]
            ),
            attrs=d.attrs or {},
        )
        for d in devices
    ]


def severity_payload(session: Session, device_ids: Sequence[int]) -> dict[str, dict[int, str]]:
    """Worst open alarm per point and per device: the ``severity`` part of the room's live update."""
    found = open_severities(session, device_ids)
    return {
        "points": {pid: s.severity for pid, s in found.points.items()},
        "devices": {did: s.severity for did, s in found.devices.items()},
    }


def diagram_view(
    session: Session, room: Room, devices: Sequence[Device], views: Sequence[dict[str, Any]], lang: Lang
) -> DiagramView:
    """The room's diagram as first drawn; ``views`` are rooms_view.device_views of ``devices``."""
    scene = build_scene(room.kind, device_specs(devices, views), lang)
    sev = severity_payload(session, [d.id for d in devices])
    return DiagramView(
        scene=scene,
        values={p["id"]: p for v in views for p in v["points"]},
        status={v["id"]: v["status"] for v in views},
        point_sev=sev["points"],
        device_sev=sev["devices"],
    )
