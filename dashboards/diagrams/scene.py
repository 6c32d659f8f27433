"""The plain data of a system diagram: what the layout decides and the SVG template draws.

Coordinates are in the SVG's user units (the template sets ``viewBox="0 0 width height"``), so the drawing
scales with the page. Every node of a device carries its device id and every value its point id: the page
script finds them by ``data-device-id`` / ``data-point-id`` and recolours them in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One point as the layout sees it: label and unit already in the page's language."""

    id: int
    metric: str
    label: str
    unit: str
    kind: str = "gauge"  # gauge | counter | state


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of the room: its kind decides where it goes, its points what it shows."""

    id: int
    code: str
    kind: str
    title: str
    points: tuple[PointSpec, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """A live value drawn as "label ……… value unit" across ``w`` from (x, y) (the text baseline)."""

    point_id: int
    label: str
    unit: str
    kind: str
    x: float
    y: float
    w: float
    tag: bool = False  # drawn on a pipe, on its own background, rather than inside a node


@dataclass(frozen=True, slots=True)
class Node:
    """One drawn element. A device's node carries ``device_id``; a node drawn from one state point of a device
    (a pump of a pump set) carries ``state_point`` instead and follows that point (running / stopped, stale)."""

    key: str
    shape: str  # transformer | breaker | capacitor | feeder | box | pump | tank | exchanger | heat_pump | meter
    x: float
    y: float
    w: float
    h: float
    title: str
    device_id: int | None = None
    code: str = ""
    state_point: int | None = None
    role: str = ""  # 主用 / 备用 under a pump
    readings: tuple[Reading, ...] = ()
    group: str = "main"  # main | other (the 其他设备 strip)
    title_y: float = 0.0  # the title's baseline (below the symbol, if the shape has one)
    tooltip: str = ""  # the full name and code, when the title had to be shortened

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass(frozen=True, slots=True)
class Pipe:
    """A polyline: a busbar, a cable or a pipe (``css`` says which; supply and return differ in colour)."""

    points: tuple[tuple[float, float], ...]
    css: str


@dataclass(frozen=True, slots=True)
class Caption:
    x: float
    y: float
    text: str
    css: str = "dg-caption"
    anchor: str = "start"


@dataclass(frozen=True, slots=True)
class Scene:
    kind: str
    width: float
    height: float
    nodes: tuple[Node, ...]
    pipes: tuple[Pipe, ...] = ()
    captions: tuple[Caption, ...] = ()

    def shapes(self, shape: str) -> list[Node]:
        return [n for n in self.nodes if n.shape == shape]

    def node(self, key: str) -> Node:
        for n in self.nodes:
            if n.key == key:
                return n
        raise KeyError(key)

    @property
    def device_ids(self) -> set[int]:
        return {n.device_id for n in self.nodes if n.device_id is not None}

    @property
    def point_ids(self) -> set[int]:
        out = {r.point_id for n in self.nodes for r in n.readings}
        return out | {n.state_point for n in self.nodes if n.state_point is not None}
