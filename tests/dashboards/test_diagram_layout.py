"""System diagram layouts (dashboards/diagrams/layout.py) from small estate models: what is drawn, where it is
connected and with which labels and ids. Pure: no database."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from dashboards import i18n
from dashboards.diagrams.layout import build_scene
from dashboards.diagrams.scene import DeviceSpec, Node, PointSpec, Scene
from dashboards.i18n import Lang
from protocol.estate_file import RoomSpec, load_estate_file
from tests.support.world import SAMPLE_ESTATE_FILE

SAMPLE = load_estate_file(SAMPLE_ESTATE_FILE)


def sample_room(code: str) -> RoomSpec:
    return next(r for r in SAMPLE.rooms if r.code == code)


class Ids:
    """Device ids from 1000, point ids from 1, as a room's rows would have them."""

    def __init__(self) -> None:
        self.devices = itertools.count(1000)
        self.points = itertools.count(1)


def spec(
    ids: Ids,
    code: str,
    kind: str,
    points: Iterable[tuple[str, str, str, str]] = (),
    *,
    name: str = "",
    attrs: dict[str, Any] | None = None,
    lang: Lang = "zh",
) -> DeviceSpec:
    """A device as the room page gives it to the layout: (metric, label, unit, kind) per point."""
    return DeviceSpec(
        id=next(ids.devices),
        code=code,
        kind=kind,
        title=i18n.device_title(name, kind, code, lang),
        points=tuple(
            PointSpec(next(ids.points), m, i18n.point_label(m, label, lang), i18n.unit_display(u, lang), k)
            for m, label, u, k in points
        ),
        attrs=attrs or {},
    )


def room_specs(room: RoomSpec, lang: Lang = "zh") -> list[DeviceSpec]:
    ids = Ids()
    return [
        spec(
            ids,
            d.code,
            d.kind,
            [(p.metric, p.label, p.unit, p.kind) for p in d.points],
            name=d.name,
            attrs=d.attrs,
            lang=lang,
        )
        for d in room.devices
    ]


def codes(nodes: Iterable[Node]) -> list[str]:
    return [n.code for n in nodes]


def assert_tidy(scene: Scene, devices: Sequence[DeviceSpec]) -> None:
    """Every device drawn, every value inside its node and belonging to its device, nothing overlapping."""
    assert scene.device_ids == {d.id for d in devices}
    owner = {p.id: d.id for d in devices for p in d.points}
    for n in scene.nodes:
        assert n.x >= 0, n.key
        assert n.x + n.w <= scene.width, n.key
        assert n.y >= 0, n.key
        assert n.bottom <= scene.height, n.key
        for r in n.readings:
            assert n.y < r.y <= n.bottom, (n.key, r.label)
            assert n.x <= r.x, (n.key, r.label)
            assert r.x + r.w <= n.x + n.w, (n.key, r.label)
            if n.device_id is not None:
                assert owner[r.point_id] == n.device_id, (n.key, r.label)
    for a, b in itertools.combinations(scene.nodes, 2):
        apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.bottom <= b.y or b.bottom <= a.y
        assert apart, f"{a.key} overlaps {b.key}"
    for p in scene.pipes:
        for x, y in p.points:
            assert 0 <= x <= scene.width, p
            assert 0 <= y <= scene.height, p


def connects(scene: Scene, top: Node, below: Node) -> bool:
    """A cable runs from the bottom centre of ``top`` to the top centre of ``below``."""
    return any(p.points[0] == (top.cx, top.bottom) and p.points[-1] == (below.cx, below.y) for p in scene.pipes)


# --- power room -----------------------------------------------------------------------------------------


def test_the_sample_power_room_is_a_single_line_diagram() -> None:
    devices = room_specs(sample_room("PR1"))
    scene = build_scene("power_room", devices, "zh")
    assert_tidy(scene, devices)
    assert codes(scene.shapes("transformer")) == ["TR1", "TR2"]
    assert codes(scene.shapes("breaker")) == ["LV1", "LV2"]
    assert codes(scene.shapes("capacitor")) == ["CAP1"]
    assert codes(n for n in scene.nodes if n.group == "other") == ["PR1-ENV"]
    captions = [c.text for c in scene.captions]
    assert captions == ["10 kV 市电进线", "0.4 kV 低压母线", "其他设备"]

    tr1, tr2, lv1, lv2 = (scene.node(c) for c in ("TR1", "TR2", "LV1", "LV2"))
    assert tr1.title.startswith("1#干式变压器")
    assert tr1.tooltip == "1#干式变压器 SCB13-1000/10 · TR1"
    assert [r.label for r in tr1.readings] == ["A相绕组温度", "B相绕组温度", "C相绕组温度", "负载率", "风机运行"]
    assert [r.unit for r in tr1.readings] == ["°C", "°C", "°C", "%", ""]
    assert [r.label for r in lv1.readings] == ["AB线电压", "A相电流", "B相电流", "C相电流", "有功功率", "功率因数"]
    assert [r.label for r in scene.node("CAP1").readings] == ["投入组数", "电容器外壳温度"]
    assert scene.node("CAP1").readings[0].unit == "组"
    # Supply flows down the page: 10 kV bus, transformers, incomers, the LV busbar, the capacitor bank.
    assert tr1.bottom < lv1.y < scene.node("CAP1").y < scene.node("PR1-ENV").y
    # Each incomer hangs under the transformer its attrs name.
    assert connects(scene, tr1, lv1)
    assert connects(scene, tr2, lv2)
    assert not connects(scene, tr1, lv2)


def transformer(ids: Ids, n: int) -> DeviceSpec:
    return spec(
        ids,
        f"TR{n}",
        "dry_type_transformer",
        [("winding_temp_a_c", "A相绕组温度", "°C", "gauge"), ("load_pct", "负载率", "%", "gauge")],
        name=f"{n}#变压器",
    )


def incomer(ids: Ids, n: int, fed_by: str | None) -> DeviceSpec:
    return spec(
        ids,
        f"LV{n}",
        "lv_incomer",
        [("current_a_a", "A相电流", "A", "gauge"), ("active_power_kw", "有功功率", "kW", "gauge")],
        name=f"{n}#低压进线柜",
        attrs={"transformer": fed_by} if fed_by else {},
    )


def power_room(transformers: int, incomers: int, *, linked: bool = True) -> list[DeviceSpec]:
    ids = Ids()
    trs = [transformer(ids, i + 1) for i in range(transformers)]
    lvs = [incomer(ids, j + 1, f"TR{j + 1}" if linked else None) for j in range(incomers)]
    cap = spec(ids, "CAP1", "capacitor_cabinet", [("steps_on", "投入组数", "steps", "gauge")], name="电容柜")
    return [*trs, *lvs, cap]


def test_three_transformers_draw_three_columns_where_one_draws_one() -> None:
    one, three = power_room(1, 1), power_room(3, 3)
    s1, s3 = build_scene("power_room", one, "zh"), build_scene("power_room", three, "zh")
    assert_tidy(s1, one)
    assert_tidy(s3, three)
    assert codes(s1.shapes("transformer")) == ["TR1"]
    assert codes(s3.shapes("transformer")) == ["TR1", "TR2", "TR3"]
    assert len(s3.shapes("breaker")) == 3
    assert s3.width > s1.width
    # Side by side, left to right, each feeding its own incomer.
    xs = [n.x for n in s3.shapes("transformer")]
    assert xs == sorted(xs)
    assert len(set(xs)) == 3
    for k in (1, 2, 3):
        assert connects(s3, s3.node(f"TR{k}"), s3.node(f"LV{k}"))
    # The drawing is the model's: the same devices always give the same scene.
    assert build_scene("power_room", three, "zh") == s3


def test_incomers_without_a_named_transformer_share_them_in_turn() -> None:
    devices = power_room(2, 4, linked=False)
    scene = build_scene("power_room", devices, "zh")
    assert_tidy(scene, devices)
    tr1, tr2 = scene.node("TR1"), scene.node("TR2")
    assert [connects(scene, tr1, scene.node(f"LV{j}")) for j in (1, 2, 3, 4)] == [True, False, True, False]
    assert [connects(scene, tr2, scene.node(f"LV{j}")) for j in (1, 2, 3, 4)] == [False, True, False, True]


def test_unknown_device_kinds_go_in_the_other_strip() -> None:
    ids = Ids()
    devices = [
        transformer(ids, 1),
        spec(ids, "UPS1", "ups", [("battery_v", "电池电压", "V", "gauge")], name="直流屏"),
        spec(ids, "GEN1", "diesel_generator", [("running", "运行", "", "state")], name="柴油发电机"),
    ]
    scene = build_scene("power_room", devices, "zh")
    assert_tidy(scene, devices)
    strip = [n for n in scene.nodes if n.group == "other"]
    assert codes(strip) == ["UPS1", "GEN1"]
    assert [r.label for r in strip[0].readings] == ["电池电压"]
    assert "其他设备" in [c.text for c in scene.captions]
    assert all(n.y > scene.node("TR1").bottom for n in strip)


# --- pump rooms, heat station, hot-water plant -------------------------------------------------------------


def test_the_pump_room_draws_tank_duty_and_standby_pumps_and_the_outlet() -> None:
    devices = room_specs(sample_room("PUMP1"))
    scene = build_scene("pump_room", devices, "zh")
    assert_tidy(scene, devices)
    pumps = scene.shapes("pump")
    assert [p.title for p in pumps] == ["1#泵", "2#泵", "3#泵"]
    assert [p.role for p in pumps] == ["主用", "备用", "备用"]
    vfd = next(d for d in devices if d.code == "PUMP1-VFD")
    by_metric = {p.metric: p.id for p in vfd.points}
    assert [p.state_point for p in pumps] == [by_metric[f"pump_{k}_running"] for k in (1, 2, 3)]
    assert codes(scene.shapes("tank")) == ["PUMP1-TANK"]
    assert [(r.label, r.unit) for r in scene.node("PUMP1-TANK").readings] == [("水箱液位", "m")]
    # The set's box shows its pressures, not its pumps again.
    box = scene.node("PUMP1-VFD")
    assert [r.label for r in box.readings] == ["出水压力", "进水压力", "变频器频率", "故障"]
    assert codes(n for n in scene.nodes if n.group == "other") == ["PUMP1-SUMP"]
    # tank → pumps → outlet, left to right
    tank = scene.node("PUMP1-TANK")
    assert tank.x + tank.w < pumps[0].x < box.x
    assert "出水 → 供水管网" in [c.text for c in scene.captions]


def test_the_fire_pump_room_draws_its_jockey_and_main_pumps() -> None:
    devices = room_specs(sample_room("FIRE1"))
    scene = build_scene("fire_pump_room", devices, "zh")
    assert_tidy(scene, devices)
    assert [p.title for p in scene.shapes("pump")] == ["稳压泵", "消防主泵"]
    assert [p.role for p in scene.shapes("pump")] == ["", ""]  # no duty named: no roles guessed
    assert [r.label for r in scene.node("FIRE1-PUMPS").readings] == ["消防管网压力", "消防泵故障"]
    assert codes(scene.shapes("tank")) == ["FIRE1-TANK"]


def test_the_heat_station_draws_both_loops_exchangers_and_pumps() -> None:
    devices = room_specs(sample_room("HS1"))
    scene = build_scene("heat_station", devices, "zh")
    assert_tidy(scene, devices)
    assert codes(scene.shapes("exchanger")) == ["HS1-HX1", "HS1-HX2"]
    hx1 = scene.node("HS1-HX1")
    left = [r.label for r in hx1.readings if r.x < hx1.cx]
    right = [r.label for r in hx1.readings if r.x > hx1.cx]
    assert left == ["一次供水温度", "一次回水温度", "一次供水压力", "一次回水压力"]
    assert right == ["二次供水温度", "二次回水温度", "二次供水压力", "二次回水压力"]
    assert [p.title for p in scene.shapes("pump")] == ["1#循环泵", "2#循环泵", "补水泵"]
    assert [r.label for r in scene.node("HS1-PUMPS").readings] == ["循环泵故障", "运行频率"]
    assert [r.label for r in scene.node("HS1-MU").readings] == ["补水箱液位"]
    assert codes(n for n in scene.nodes if n.group == "other") == ["HS1-OT", "HS1-MU-M"]
    css = {p.css for p in scene.pipes}
    assert {
        "dg-pipe dg-supply dg-primary",
        "dg-pipe dg-return dg-primary",
        "dg-pipe dg-supply",
        "dg-pipe dg-return",
    } <= css


def test_the_hot_water_plant_draws_heat_pump_tank_supply_and_return() -> None:
    devices = room_specs(sample_room("HWP1"))
    scene = build_scene("hot_water_plant", devices, "zh")
    assert_tidy(scene, devices)
    unit = next(d for d in devices if d.code == "HWP1-CTRL")
    pid = {p.metric: p.id for p in unit.points}
    [heat] = scene.shapes("heat_pump")
    assert heat.state_point == pid["heat_pump_running"]
    assert heat.title == "热泵"
    [tank] = scene.shapes("tank")
    assert tank.device_id == unit.id
    assert [r.label for r in tank.readings] == ["水箱温度", "热水箱液位"]
    tags = {r.label: r.point_id for n in scene.shapes("tag") for r in n.readings}
    assert tags == {"供水温度": pid["supply_temp_c"], "回水温度": pid["return_temp_c"]}
    assert [p.title for p in scene.shapes("pump")] == ["热水循环泵"]
    assert codes(scene.shapes("meter")) == ["HW-MASTER"]
    assert heat.x < tank.x < scene.shapes("pump")[0].x < scene.node("HW-MASTER").x


def test_a_room_kind_without_a_layout_draws_its_devices_in_a_grid() -> None:
    ids = Ids()
    devices = [spec(ids, f"B{k}", "boiler", [("water_temp_c", "出水温度", "°C", "gauge")]) for k in range(5)]
    scene = build_scene("boiler_room", devices, "zh")
    assert_tidy(scene, devices)
    assert len(scene.shapes("box")) == 5


@pytest.mark.parametrize("room", ["PR1", "HS1", "PUMP1", "FIRE1", "HWP1"])
def test_every_sample_room_in_english(room: str) -> None:
    kind = sample_room(room).kind
    devices = room_specs(sample_room(room), "en")
    scene = build_scene(kind, devices, "en")
    assert_tidy(scene, devices)
    text = " ".join([c.text for c in scene.captions] + [r.label for n in scene.nodes for r in n.readings])
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in text), text
    if room == "PUMP1":
        assert [p.role for p in scene.shapes("pump")] == ["duty", "standby", "standby"]


def test_a_valve_a_point_reports_is_drawn_on_the_outlet_open_or_closed() -> None:
    ids = Ids()
    devices = [
        spec(ids, "T1", "water_tank", [("tank_level_m", "水箱液位", "m", "gauge")], name="水箱"),
        spec(
            ids,
            "P1",
            "booster_pump_set",
            [
                ("outlet_pressure_mpa", "出水压力", "MPa", "gauge"),
                ("pump_1_running", "1#泵运行", "", "state"),
                ("pump_2_running", "2#泵运行", "", "state"),
                ("outlet_valve_open", "出水阀开启", "", "state"),
            ],
            name="变频供水设备",
            attrs={"duty": "pump_2"},
        ),
    ]
    scene = build_scene("pump_room", devices, "zh")
    assert_tidy(scene, devices)
    [valve] = scene.shapes("valve")
    assert valve.title == "出水阀"
    assert valve.state_point == devices[1].points[3].id
    box = scene.node("P1")
    assert [r.label for r in box.readings] == ["出水压力"]  # pumps and valve are drawn, not listed
    assert valve.x > box.x + box.w
    assert [p.role for p in scene.shapes("pump")] == ["备用", "主用"]
    assert i18n.state_text("outlet_valve_open", 1.0, "zh") == ("开启", "run")
    assert i18n.state_text("outlet_valve_open", 0.0, "zh") == ("关闭", "off")
    assert i18n.state_text("outlet_valve_open", 0.0, "en") == ("Closed", "off")
