"""Lay out a room's system diagram from its devices and points, by room kind (pure: no database, no clock).

The drawing follows the estate model, not a per-estate picture: a power room with three transformers gets
three transformer columns, a pump set with three ``pump_N_running`` points gets three pumps. Device kinds a
layout does not place go in the "其他设备" strip at the bottom, so nothing a room has is left off.

- power room: 10 kV supply bus → (HV switchgear) → transformers → LV incomers (linked by ``attrs.transformer``)
  → 0.4 kV busbar → capacitor banks and feeders (kinds from alarms/round_defaults.py HV_KINDS / LV_KINDS);
- pump rooms (domestic and fire): tanks → suction header → duty / standby pumps → discharge header → the set's
  outlet pressure → the supply network;
- heat station: primary supply and return → plate exchangers (primary values left, secondary right) →
  secondary supply to the buildings; the buildings' return through the circulation pumps, make-up beside it;
- hot-water plant: heat pump ⇄ hot-water tank → supply (temperature, circulation pump, master meter) → users
  and the return back into the tank.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from alarms.round_defaults import HV_KINDS, LV_KINDS
from dashboards import i18n
from dashboards.diagrams.scene import Caption, DeviceSpec, Node, Pipe, PointSpec, Reading, Scene
from dashboards.i18n import Lang

MARGIN = 20.0
COL_W = 230.0  # one column of the power room's rows
BOX_W = 200.0
HEAD_H = 26.0  # a node's title band
ROW_H = 18.0  # one value row
PAD = 8.0
GAP = 40.0  # between rows of nodes (room for the connecting lines)
SYMBOL_H = 40.0  # the transformer's two-winding symbol above its title
PUMP_W, PUMP_H = 96.0, 86.0
VALVE_W, VALVE_H = 72.0, 58.0
TANK_W = 170.0
MAX_ROWS = 6

TRANSFORMERS = tuple(k for k in HV_KINDS if k.endswith("transformer"))
HV_GEAR = tuple(k for k in HV_KINDS if k not in TRANSFORMERS)
INCOMERS = ("lv_incomer",)
LV_LOADS = tuple(k for k in LV_KINDS if k not in INCOMERS and k != "room_environment")
PUMP_SETS = ("booster_pump_set", "fire_pump_controller")
TANKS = ("water_tank",)
EXCHANGERS = ("plate_heat_exchanger",)
CIRCULATION = ("circulation_pumps",)
MAKEUP = ("makeup_water",)
HOT_WATER_UNITS = ("hot_water_unit",)

# A running-state point of a pump: pump_1_running, circ_pump_2_running, jockey_pump_running, makeup_pump_running.
_PUMP_RUNNING = re.compile(r"pump(_\d+)?_running$")

# The values a node shows first (the rest follow in the estate file's order, up to MAX_ROWS).
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "dry_type_transformer": ("winding_temp_a_c", "winding_temp_b_c", "winding_temp_c_c", "load_pct", "fan_on"),
    "oil_immersed_transformer": ("oil_temp_c", "winding_temp_c", "load_pct"),
    "lv_incomer": ("voltage_ab_v", "current_a_a", "current_b_a", "current_c_a", "active_power_kw", "power_factor"),
    "capacitor_cabinet": ("steps_on", "case_temp_c", "power_factor"),
    "booster_pump_set": ("outlet_pressure_mpa", "inlet_pressure_mpa", "vfd_freq_hz", "fault"),
    "fire_pump_controller": ("fire_main_pressure_mpa", "fire_pump_fault"),
    "water_tank": ("tank_level_m", "fire_tank_level_m"),
    "hot_water_unit": ("tank_temp_c", "tank_level_m"),
}


def build_scene(room_kind: str, devices: Sequence[DeviceSpec], lang: Lang) -> Scene:
    """The diagram of a room of ``room_kind`` holding ``devices`` (in the room page's order)."""
    layout = LAYOUTS.get(room_kind, _grid)
    return layout(room_kind, list(devices), lang)


# --- building blocks ------------------------------------------------------------------------------------


def key_points(device: DeviceSpec, *, skip: set[int] | None = None, limit: int = MAX_ROWS) -> list[PointSpec]:
    """The points a device's node shows: its kind's key metrics first, then the others, counters never."""
    prefs = KEY_METRICS.get(device.kind, ())
    shown = [p for p in device.points if p.kind != "counter" and (skip is None or p.id not in skip)]
    order = {p.id: i for i, p in enumerate(shown)}
    shown.sort(key=lambda p: (prefs.index(p.metric) if p.metric in prefs else len(prefs), order[p.id]))
    return shown[:limit]


def pumps_of(device: DeviceSpec) -> list[PointSpec]:
    """The pumps a device reports on, one running-state point each (a heat pump is not a water pump)."""
    return [
        p for p in device.points if p.kind == "state" and _PUMP_RUNNING.search(p.metric) and "heat_pump" not in p.metric
    ]


def fit(text: str, width: float, size: float = 13.0) -> str:
    """``text`` shortened with … to about ``width`` units at ``size`` px (CJK glyphs are square, Latin about half)."""
    used = 0.0
    for i, ch in enumerate(text):
        used += size if ord(ch) > 0x2E80 else size * 0.64
        if used > width:
            return text[: max(1, i - 1)] + "…"
    return text


def valves_of(device: DeviceSpec) -> list[PointSpec]:
    """The valves a device reports open / closed, one state point each (outlet_valve_open, valve_open)."""
    return [p for p in device.points if p.kind == "state" and "valve" in p.metric]


def _valve_title(point: PointSpec) -> str:
    label = point.label
    for suffix in ("开启", "开关", "状态", "开", " open", " state"):
        label = label.removesuffix(suffix)
    return label.strip() or point.label


def valve_node(device: DeviceSpec, point: PointSpec, x: float, line_y: float) -> Node:
    """One valve on a pipe at ``line_y``, drawn from its state point: open or closed, grey when stale."""
    return Node(
        key=f"{device.code}/{point.metric}",
        shape="valve",
        x=x,
        y=line_y - 14,
        w=VALVE_W,
        h=VALVE_H,
        title=fit(_valve_title(point), VALVE_W, 12),
        state_point=point.id,
        readings=(Reading(point.id, "", "", "state", x + 4, line_y + 38, VALVE_W - 8),),
        title_y=line_y + 24,
        tooltip=point.label,
    )


def _rows(points: Sequence[PointSpec], x: float, top: float, w: float) -> tuple[Reading, ...]:
    return tuple(
        Reading(p.id, p.label, p.unit, p.kind, x + PAD, top + ROW_H * i + 13, w - 2 * PAD) for i, p in enumerate(points)
    )


def device_node(
    device: DeviceSpec,
    x: float,
    y: float,
    shape: str = "box",
    *,
    w: float = BOX_W,
    symbol_h: float = 0.0,
    points: Sequence[PointSpec] | None = None,
    group: str = "main",
    min_h: float = 0.0,
) -> Node:
    shown = key_points(device) if points is None else list(points)
    top = y + symbol_h + HEAD_H
    h = max(min_h, symbol_h + HEAD_H + ROW_H * len(shown) + PAD)
    return Node(
        key=device.code,
        shape=shape,
        x=x,
        y=y,
        w=w,
        h=h,
        title=fit(device.title, w - 2 * PAD),
        device_id=device.id,
        code=device.code,
        readings=_rows(shown, x, top, w),
        group=group,
        title_y=y + symbol_h + 18,
        tooltip=f"{device.title} · {device.code}",
    )


def _pump_title(point: PointSpec) -> str:
    return point.label.removesuffix("运行").removesuffix(" running").strip() or point.label


def pump_node(device: DeviceSpec, point: PointSpec, x: float, y: float, lang: Lang) -> Node:
    """One pump, drawn from its running-state point: coloured running / stopped, grey when the point is stale."""
    duty = device.attrs.get("duty")
    role = ""
    if isinstance(duty, str) and duty:
        role = i18n.t("diagram_duty" if point.metric.startswith(duty + "_") else "diagram_standby", lang)
    # The running state under the pump's name, after its duty / standby role.
    reading = Reading(point.id, role, "", "state", x + 4, y + 74, PUMP_W - 8)
    return Node(
        key=f"{device.code}/{point.metric}",
        shape="pump",
        x=x,
        y=y,
        w=PUMP_W,
        h=PUMP_H,
        title=fit(_pump_title(point), PUMP_W, 12),
        state_point=point.id,
        role=role,
        readings=(reading,),
        title_y=y + 60,
        tooltip=point.label,
    )


def _hline(x1: float, x2: float, y: float, css: str) -> Pipe:
    return Pipe(((x1, y), (x2, y)), css)


def _vline(x: float, y1: float, y2: float, css: str) -> Pipe:
    return Pipe(((x, y1), (x, y2)), css)


def _elbow(x1: float, y1: float, x2: float, y2: float, css: str) -> Pipe:
    """Down from (x1, y1), across half way, down to (x2, y2): a single-line diagram's cable."""
    if x1 == x2:
        return Pipe(((x1, y1), (x2, y2)), css)
    mid = (y1 + y2) / 2
    return Pipe(((x1, y1), (x1, mid), (x2, mid), (x2, y2)), css)


def other_strip(
    others: Sequence[DeviceSpec], y: float, width: float, lang: Lang
) -> tuple[list[Node], list[Pipe], list[Caption], float]:
    """The "其他设备" strip: devices the room's layout does not place, in rows of boxes; returns its bottom."""
    if not others:
        return [], [], [], y
    pipes = [_hline(MARGIN, width - MARGIN, y, "dg-strip")]
    captions = [Caption(MARGIN, y + 18, i18n.t("diagram_other", lang), "dg-caption dg-strip-title")]
    per_row = max(1, int((width - 2 * MARGIN) // COL_W))
    nodes: list[Node] = []
    top = y + 30
    for start in range(0, len(others), per_row):
        row = [
            device_node(d, MARGIN + i * COL_W, top, group="other")
            for i, d in enumerate(others[start : start + per_row])
        ]
        nodes.extend(row)
        top = max(n.bottom for n in row) + 16
    return nodes, pipes, captions, top


# --- power room -------------------------------------------------------------------------------------------


def _power_room(kind: str, devices: list[DeviceSpec], lang: Lang) -> Scene:
    trs = [d for d in devices if d.kind in TRANSFORMERS]
    hv = [d for d in devices if d.kind in HV_GEAR]
    inc = [d for d in devices if d.kind in INCOMERS]
    loads = [d for d in devices if d.kind in LV_LOADS]
    placed = {d.id for d in trs + hv + inc + loads}
    others = [d for d in devices if d.id not in placed]
    cols = max(len(trs), len(hv), len(inc), len(loads), 2)
    width = 2 * MARGIN + cols * COL_W

    def col_x(i: int, n: int) -> float:
        # A row of n nodes centred under the widest row.
        return MARGIN + (cols - n) * COL_W / 2 + i * COL_W + (COL_W - BOX_W) / 2

    nodes: list[Node] = []
    pipes: list[Pipe] = []
    captions = [Caption(MARGIN, MARGIN + 10, i18n.t("diagram_hv_supply", lang))]
    bus_y = MARGIN + 22
    pipes.append(_hline(MARGIN, width - MARGIN, bus_y, "dg-bus dg-hv"))
    y = bus_y + GAP

    hv_nodes = [device_node(d, col_x(i, len(hv)), y, "breaker") for i, d in enumerate(hv)]
    for n in hv_nodes:
        pipes.append(_vline(n.cx, bus_y, n.y, "dg-cable dg-hv"))
    nodes.extend(hv_nodes)
    if hv_nodes:
        y = max(n.bottom for n in hv_nodes) + GAP

    tr_nodes = [device_node(d, col_x(i, len(trs)), y, "transformer", symbol_h=SYMBOL_H) for i, d in enumerate(trs)]
    for i, n in enumerate(tr_nodes):
        # Through its switchgear when each transformer has one; straight from the bus otherwise.
        src = hv_nodes[i] if len(hv_nodes) == len(tr_nodes) else None
        pipes.append(_vline(n.cx, src.bottom if src else bus_y, n.y, "dg-cable dg-hv"))
    nodes.extend(tr_nodes)
    if tr_nodes:
        y = max(n.bottom for n in tr_nodes) + GAP * 1.25

    by_code = {n.code: n for n in tr_nodes}
    inc_nodes = [device_node(d, col_x(j, len(inc)), y, "breaker") for j, d in enumerate(inc)]
    for j, (d, n) in enumerate(zip(inc, inc_nodes, strict=True)):
        fed_by = by_code.get(str(d.attrs.get("transformer", "")))
        if fed_by is None and tr_nodes:
            fed_by = tr_nodes[j % len(tr_nodes)]
        if fed_by is not None:
            pipes.append(_elbow(fed_by.cx, fed_by.bottom, n.cx, n.y, "dg-cable dg-lv"))
    nodes.extend(inc_nodes)
    if inc_nodes:
        y = max(n.bottom for n in inc_nodes) + GAP * 0.75

    if inc_nodes or loads:
        lv_y = y
        captions.append(Caption(MARGIN, lv_y - 6, i18n.t("diagram_lv_bus", lang)))
        pipes.append(_hline(MARGIN, width - MARGIN, lv_y, "dg-bus dg-lv"))
        feeders = inc_nodes or ([] if inc else tr_nodes)
        for n in feeders:
            pipes.append(_vline(n.cx, n.bottom, lv_y, "dg-cable dg-lv"))
        y = lv_y + GAP
        load_nodes = [
            device_node(d, col_x(k, len(loads)), y, "capacitor" if d.kind == "capacitor_cabinet" else "feeder")
            for k, d in enumerate(loads)
        ]
        for n in load_nodes:
            pipes.append(_vline(n.cx, lv_y, n.y, "dg-cable dg-lv"))
        nodes.extend(load_nodes)
        if load_nodes:
            y = max(n.bottom for n in load_nodes) + GAP

    strip, strip_pipes, strip_caps, y = other_strip(others, y, width, lang)
    return Scene(
        kind, width, y + MARGIN, tuple(nodes + strip), tuple(pipes + strip_pipes), tuple(captions + strip_caps)
    )


# --- pump rooms -------------------------------------------------------------------------------------------


def _pump_room(kind: str, devices: list[DeviceSpec], lang: Lang) -> Scene:
    tanks = [d for d in devices if d.kind in TANKS]
    sets = [d for d in devices if d.kind in PUMP_SETS and pumps_of(d)]
    placed = {d.id for d in tanks + sets}
    others = [d for d in devices if d.id not in placed]
    x_tank = MARGIN
    x_suction = x_tank + TANK_W + 44
    x_pump = x_suction + 28
    x_discharge = x_pump + PUMP_W + 28
    x_box = x_discharge + 44
    # Valves a set reports sit on its outlet, between the set and the network.
    most_valves = max((len(valves_of(d)) for d in sets), default=0)
    width = x_box + BOX_W + 150 + most_valves * (VALVE_W + 12)
    nodes: list[Node] = []
    pipes: list[Pipe] = []
    captions: list[Caption] = []

    y = MARGIN + 24
    tank_nodes = []
    for d in tanks:
        n = device_node(d, x_tank, y, "tank", w=TANK_W, min_h=120)
        tank_nodes.append(n)
        y = n.bottom + GAP / 2

    y = MARGIN + 24
    bands: list[tuple[float, float]] = []  # (suction y, bottom) of each pump set
    for d in sets:
        pumps = pumps_of(d)
        valves = valves_of(d)
        pump_nodes = [pump_node(d, p, x_pump, y + i * PUMP_H, lang) for i, p in enumerate(pumps)]
        box = device_node(d, x_box, y, "box", points=key_points(d, skip={p.id for p in pumps + valves}))
        ys = [n.y + 22 for n in pump_nodes]
        captions.append(Caption(x_suction, y - 8, i18n.t("diagram_suction", lang), "dg-caption dg-small", "middle"))
        captions.append(Caption(x_discharge, y - 8, i18n.t("diagram_discharge", lang), "dg-caption dg-small", "middle"))
        pipes.append(_vline(x_suction, ys[0], ys[-1], "dg-pipe dg-water"))
        pipes.append(_vline(x_discharge, ys[0], ys[-1], "dg-pipe dg-water"))
        for n, py in zip(pump_nodes, ys, strict=True):
            pipes.append(_hline(x_suction, n.cx - 20, py, "dg-pipe dg-water"))
            pipes.append(_hline(n.cx + 20, x_discharge, py, "dg-pipe dg-water"))
        out_y = box.y + HEAD_H / 2
        pipes.append(Pipe(((x_discharge, ys[0]), (x_discharge, out_y), (box.x, out_y)), "dg-pipe dg-water"))
        pipes.append(_hline(box.x + box.w, width - MARGIN, out_y, "dg-pipe dg-water dg-flow"))
        valve_nodes = [valve_node(d, p, box.x + box.w + 16 + i * (VALVE_W + 12), out_y) for i, p in enumerate(valves)]
        nodes.extend(valve_nodes)
        captions.append(Caption(width - MARGIN, out_y - 8, i18n.t("diagram_outlet", lang), "dg-caption", "end"))
        nodes.extend(pump_nodes)
        nodes.append(box)
        bottom = max([n.bottom for n in pump_nodes + valve_nodes] + [box.bottom])
        bands.append((ys[0], bottom))
        y = bottom + GAP
    for i, n in enumerate(tank_nodes):
        if bands:
            suction_y = bands[min(i, len(bands) - 1)][0]
            pipes.append(
                Pipe(
                    (
                        (n.x + n.w, n.bottom - 18),
                        (x_suction - 14, n.bottom - 18),
                        (x_suction - 14, suction_y),
                        (x_suction, suction_y),
                    ),
                    "dg-pipe dg-water",
                )
            )
    nodes.extend(tank_nodes)
    y = max([y] + [n.bottom + GAP for n in tank_nodes])
    strip, strip_pipes, strip_caps, y = other_strip(others, y, width, lang)
    return Scene(
        kind, width, y + MARGIN, tuple(nodes + strip), tuple(pipes + strip_pipes), tuple(captions + strip_caps)
    )


# --- heat station -------------------------------------------------------------------------------------------

HX_W = 380.0


def _exchanger_node(d: DeviceSpec, x: float, y: float) -> Node:
    """Primary values down the left half, secondary down the right: the two sides of the plates."""
    shown = key_points(d, limit=12)
    primary = [p for p in shown if p.metric.startswith("primary_")]
    secondary = [p for p in shown if not p.metric.startswith("primary_")]
    half = HX_W / 2
    top = y + HEAD_H
    readings = _rows(primary, x, top, half - 8) + _rows(secondary, x + half + 8, top, half - 8)
    h = HEAD_H + ROW_H * max(len(primary), len(secondary), 1) + PAD
    return Node(
        d.code,
        "exchanger",
        x,
        y,
        HX_W,
        h,
        fit(d.title, HX_W - 2 * PAD),
        device_id=d.id,
        code=d.code,
        readings=readings,
        title_y=y + 18,
        tooltip=f"{d.title} · {d.code}",
    )


def _heat_station(kind: str, devices: list[DeviceSpec], lang: Lang) -> Scene:
    hxs = [d for d in devices if d.kind in EXCHANGERS]
    circ = [d for d in devices if d.kind in CIRCULATION]
    makeup = [d for d in devices if d.kind in MAKEUP]
    placed = {d.id for d in hxs + circ + makeup}
    others = [d for d in devices if d.id not in placed]
    x_ps, x_pr = MARGIN + 8, MARGIN + 30  # primary supply / return headers
    x_hx = MARGIN + 70
    x_ss = x_hx + HX_W + 36  # secondary supply header
    x_sr = x_ss + 24  # secondary return header
    x_pump = x_sr + 36
    x_users = x_pump + BOX_W + 24  # the buildings' return comes down here
    width = x_users + 40
    nodes: list[Node] = []
    pipes: list[Pipe] = []
    y_supply, y_return = MARGIN + 16, MARGIN + 40
    captions = [
        Caption(x_pr + 12, y_supply + 4, i18n.t("diagram_primary", lang)),
        Caption(width - MARGIN, y_supply - 4, i18n.t("diagram_secondary_out", lang), "dg-caption", "end"),
        Caption(width - MARGIN, y_return - 6, i18n.t("diagram_secondary_back", lang), "dg-caption", "end"),
    ]
    y = y_return + GAP
    hx_nodes = []
    for d in hxs:
        n = _exchanger_node(d, x_hx, y)
        hx_nodes.append(n)
        sy, ry = n.y + HEAD_H + 6, n.bottom - 8
        pipes.append(_hline(x_ps, n.x, sy, "dg-pipe dg-supply dg-primary"))
        pipes.append(_hline(x_pr, n.x, ry, "dg-pipe dg-return dg-primary"))
        pipes.append(_hline(n.x + n.w, x_ss, sy, "dg-pipe dg-supply"))
        pipes.append(_hline(n.x + n.w, x_sr, ry, "dg-pipe dg-return"))
        y = n.bottom + GAP / 2
    if hx_nodes:
        last = hx_nodes[-1]
        pipes.append(_vline(x_ps, y_supply, last.y + HEAD_H + 6, "dg-pipe dg-supply dg-primary"))
        pipes.append(_vline(x_pr, y_return, last.bottom - 8, "dg-pipe dg-return dg-primary"))
        pipes.append(
            Pipe(((x_ss, last.y + HEAD_H + 6), (x_ss, y_supply), (width - MARGIN, y_supply)), "dg-pipe dg-supply")
        )
    nodes.extend(hx_nodes)

    # The buildings' return: down the right, through the circulation pumps, into the return header.
    py = y_return + GAP
    return_ys: list[float] = []
    circ_pumps: list[Node] = []
    for d in circ:
        pumps = pumps_of(d)
        # Pumps in parallel on the return: one above the other, each piped across.
        row = [pump_node(d, p, x_pump + (BOX_W - PUMP_W) / 2, py + i * PUMP_H, lang) for i, p in enumerate(pumps)]
        circ_pumps.extend(row)
        return_ys.extend(n.y + 22 for n in row)
        box_y = (max(n.bottom for n in row) + 8) if row else py
        box = device_node(d, x_pump, box_y, points=key_points(d, skip={p.id for p in pumps}))
        nodes.extend(row)
        nodes.append(box)
        py = box.bottom + GAP / 2
    for d in makeup:
        pumps = pumps_of(d)
        row = [pump_node(d, p, x_pump + (BOX_W - PUMP_W) / 2, py + i * PUMP_H, lang) for i, p in enumerate(pumps)]
        for n in row:
            pipes.append(_hline(x_sr, n.cx - 20, n.y + 22, "dg-pipe dg-water"))
        box_y = (max(n.bottom for n in row) + 8) if row else py
        box = device_node(d, x_pump, box_y, points=key_points(d, skip={p.id for p in pumps}))
        captions.append(Caption(x_pump, py - 6, i18n.t("diagram_makeup", lang), "dg-caption dg-small"))
        nodes.extend(row)
        nodes.append(box)
        if not row:
            pipes.append(_hline(x_sr, box.x, box.y + HEAD_H / 2, "dg-pipe dg-water"))
        py = box.bottom + GAP / 2
    for n in circ_pumps:
        pipes.append(_hline(x_sr, n.cx - 20, n.y + 22, "dg-pipe dg-return"))
        pipes.append(_hline(n.cx + 20, x_users, n.y + 22, "dg-pipe dg-return"))
    if return_ys:
        pipes.append(
            Pipe(((width - MARGIN, y_return), (x_users, y_return), (x_users, max(return_ys))), "dg-pipe dg-return")
        )
    header_ys = (
        [n.bottom - 8 for n in hx_nodes]
        + return_ys
        + [n.y + 22 for n in nodes if n.shape == "pump" and n not in circ_pumps]
    )
    if header_ys:
        pipes.append(_vline(x_sr, min(header_ys), max(header_ys), "dg-pipe dg-return"))
    y = max([y, py] + [n.bottom + GAP / 2 for n in nodes])
    strip, strip_pipes, strip_caps, y = other_strip(others, y, width, lang)
    return Scene(
        kind, width, y + MARGIN, tuple(nodes + strip), tuple(pipes + strip_pipes), tuple(captions + strip_caps)
    )


# --- hot-water plant ------------------------------------------------------------------------------------------

_PIPE_TAGS = {"supply_temp_c": "supply", "return_temp_c": "return"}


def _hot_water_plant(kind: str, devices: list[DeviceSpec], lang: Lang) -> Scene:
    units = [d for d in devices if d.kind in HOT_WATER_UNITS]
    meters = [d for d in devices if d.kind == "hot_water_meter"]
    placed = {d.id for d in units + meters}
    others = [d for d in devices if d.id not in placed]
    x_hp = MARGIN
    x_tank = x_hp + 150 + 70
    x_pump = x_tank + TANK_W + 60
    x_meter = x_pump + PUMP_W + 40
    width = x_meter + 150 + 170
    nodes: list[Node] = []
    pipes: list[Pipe] = []
    captions: list[Caption] = []
    y = MARGIN + 30
    for u_i, d in enumerate(units):
        heat = next((p for p in d.points if p.kind == "state" and "heat_pump" in p.metric), None)
        circ = pumps_of(d)
        tags = {p.metric: p for p in d.points if p.metric in _PIPE_TAGS}
        skip = {p.id for p in circ} | {p.id for p in tags.values()} | ({heat.id} if heat else set())
        tank = device_node(d, x_tank, y, "tank", w=TANK_W, points=key_points(d, skip=skip), min_h=130)
        nodes.append(tank)
        supply_y, return_y = tank.y + HEAD_H + 10, tank.bottom - 14
        if heat is not None:
            hp = Node(
                f"{d.code}/{heat.metric}",
                "heat_pump",
                x_hp,
                y + 10,
                150,
                96,
                _pump_title(heat),
                title_y=y + 28,
                tooltip=heat.label,
                state_point=heat.id,
                readings=(Reading(heat.id, "", "", "state", x_hp + 8, y + 96, 134),),
            )
            nodes.append(hp)
            pipes.append(_hline(hp.x + hp.w, tank.x, hp.y + 26, "dg-pipe dg-supply"))
            pipes.append(_hline(tank.x, hp.x + hp.w, hp.bottom - 26, "dg-pipe dg-return"))
        x_after = tank.x + tank.w
        if circ:
            pn = pump_node(d, circ[0], x_pump, supply_y - 22, lang)
            nodes.append(pn)
            pipes.append(_hline(x_after, pn.cx - 20, supply_y, "dg-pipe dg-supply"))
            x_after = pn.cx + 20
        meter_nodes = []
        if u_i == 0:
            for m_i, m in enumerate(meters):
                mn = device_node(m, x_meter, supply_y - 14 + m_i * 70, "meter", w=150, points=[], min_h=52)
                meter_nodes.append(mn)
        if meter_nodes:
            first = meter_nodes[0]
            pipes.append(_hline(x_after, first.x, supply_y, "dg-pipe dg-supply"))
            x_after = first.x + first.w
            nodes.extend(meter_nodes)
        pipes.append(_hline(x_after, width - MARGIN, supply_y, "dg-pipe dg-supply dg-flow"))
        pipes.append(_hline(width - MARGIN, tank.x + tank.w, return_y, "dg-pipe dg-return"))
        captions.append(Caption(width - MARGIN, supply_y - 8, i18n.t("diagram_hot_supply", lang), "dg-caption", "end"))
        captions.append(Caption(width - MARGIN, return_y + 18, i18n.t("diagram_hot_return", lang), "dg-caption", "end"))
        # Supply and return temperatures sit on their pipes, as on the plant's own panel.
        for metric, p in tags.items():
            on_supply = _PIPE_TAGS[metric] == "supply"
            py = supply_y if on_supply else return_y
            tx = (x_meter + 160 if meter_nodes else x_meter) if on_supply else x_pump
            reading = Reading(p.id, p.label, p.unit, p.kind, tx + 6, py + 24, 138, tag=True)
            nodes.append(Node(f"{d.code}/{p.metric}", "tag", tx, py + 6, 150, 26, "", readings=(reading,)))
        y = max(n.bottom for n in nodes) + GAP
    if not units:
        for m_i, m in enumerate(meters):
            nodes.append(device_node(m, MARGIN + m_i * COL_W, y, "meter", points=[], min_h=52))
        if meters:
            y = max(n.bottom for n in nodes) + GAP
    strip, strip_pipes, strip_caps, y = other_strip(others, y, width, lang)
    return Scene(
        kind, width, y + MARGIN, tuple(nodes + strip), tuple(pipes + strip_pipes), tuple(captions + strip_caps)
    )


# --- any other room: its devices in a grid ---------------------------------------------------------------------


def _grid(kind: str, devices: list[DeviceSpec], lang: Lang) -> Scene:
    cols = max(1, min(4, len(devices)))
    width = 2 * MARGIN + cols * COL_W
    nodes: list[Node] = []
    y = MARGIN
    for start in range(0, len(devices), cols):
        row = [device_node(d, MARGIN + i * COL_W, y) for i, d in enumerate(devices[start : start + cols])]
        nodes.extend(row)
        y = max(n.bottom for n in row) + 16
    return Scene(kind, width, y + MARGIN, tuple(nodes))


LAYOUTS: dict[str, Callable[[str, list[DeviceSpec], Lang], Scene]] = {
    "power_room": _power_room,
    "pump_room": _pump_room,
    "fire_pump_room": _pump_room,
    "heat_station": _heat_station,
    "hot_water_plant": _hot_water_plant,
}
