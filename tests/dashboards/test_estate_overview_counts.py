"""The estate overview's figures from rows written here under a pinned clock: device counts by status, each room
card's points and stale points (the points of its devices that are not reporting), and the data rate — counted
exactly on a small estate over the shortest fair window, and on a sample of the points (shown with ≈) on a large
one (rooms_view.RATE_WINDOWS, RATE_POINTS_COUNTED)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from dashboards import rooms_view
from dashboards.render import render_fragment
from storage.models import Device, DeviceState, Estate, MeterReading, Point, Room
from tests.support.clock import pinned

NOW = datetime(2026, 11, 26, 3, 0, 0, 500_000, tzinfo=UTC)


@pytest.fixture
def at_now() -> Iterator[None]:
    with pinned(NOW):
        yield


def _estate(session: Session) -> Estate:
    code = f"ov-{uuid.uuid4().hex[:8]}"
    estate = Estate(code=code, name="概览测试小区")
    session.add(estate)
    session.flush()
    return estate


def _device(
    session: Session,
    estate: Estate,
    code: str,
    *,
    room: Room | None,
    points: int,
    seen_ago: timedelta | None,
    online: bool | None = True,
    kind: str = "sensor",
) -> Device:
    device = Device(
        estate_id=estate.id,
        code=f"{estate.code}-{code}",
        kind=kind,
        room_id=room.id if room else None,
        expected_interval_s=60,
    )
    session.add(device)
    session.flush()
    for i in range(points):
        session.add(Point(device_id=device.id, metric=f"m{i}", unit="°C"))
    if seen_ago is not None:
        session.add(DeviceState(device_id=device.id, last_seen_at=NOW - seen_ago, online=online))
    session.flush()
    return device


def _samples_every(
    session: Session, devices: list[Device], step: timedelta, span: timedelta, *, first_point_only: bool = False
) -> int:
    """One sample per point (or only per device's first point) every ``step`` back from NOW (whole seconds) over
    ``span``; returns how many."""
    ts = [NOW.replace(microsecond=0) - step * k for k in range(int(span / step) + 1)]
    points = (
        "SELECT min(id) AS id FROM points WHERE device_id = ANY(:d) GROUP BY device_id"
        if first_point_only
        else "SELECT id FROM points WHERE device_id = ANY(:d)"
    )
    n = session.execute(
        text(
            f"INSERT INTO samples (point_id, ts, value) SELECT p.id, t, 1.0 FROM ({points}) p,"
            " unnest(CAST(:ts AS timestamptz[])) t"
        ),
        {"ts": ts, "d": [d.id for d in devices]},
    ).rowcount
    return int(n)


def _room_of_sensors(session: Session, estate: Estate, n: int) -> list[Device]:
    """A power room of ``n`` five-point sensors, all seen a second ago."""
    room = Room(estate_id=estate.id, code="PR1", name="1号配电室", kind="power_room")
    session.add(room)
    session.flush()
    return [_device(session, estate, f"s{i}", room=room, points=5, seen_ago=timedelta(seconds=1)) for i in range(n)]


def test_room_cards_count_the_points_of_devices_that_are_not_reporting(session: Session, at_now: None) -> None:
    estate = _estate(session)
    r1 = Room(estate_id=estate.id, code="PR1", name="1号配电室", kind="power_room")
    r2 = Room(estate_id=estate.id, code="PR2", name="2号配电室", kind="power_room")
    session.add_all([r1, r2])
    session.flush()
    online = _device(session, estate, "a", room=r1, points=4, seen_ago=timedelta(seconds=5))
    _device(session, estate, "b", room=r1, points=2, seen_ago=timedelta(minutes=10))  # silent past 1.5 × 60 s
    _device(session, estate, "c", room=r1, points=3, seen_ago=None)  # never reported
    replaced = _device(session, estate, "old", room=r1, points=7, seen_ago=timedelta(days=3))
    replaced.replaced_by_id = online.id  # stays for its history, no longer reports: not counted at all
    _device(session, estate, "d", room=r2, points=2, seen_ago=timedelta(seconds=5), online=False)  # says offline
    meter = _device(session, estate, "m", room=None, points=0, seen_ago=timedelta(seconds=30), kind="meter")
    session.flush()
    # A quiet estate: a sample every 10 s on the online device's points, a meter reading a minute.
    _samples_every(session, [online], timedelta(seconds=10), timedelta(minutes=3))
    for k in range(4):
        session.add(MeterReading(device_id=meter.id, ts=NOW.replace(microsecond=0) - timedelta(minutes=k), register=1))
    session.flush()

    s = rooms_view.estate_summary(session, estate, "zh")

    assert (s.devices.total, s.devices.online, s.devices.stale, s.devices.never) == (5, 2, 2, 1)
    cards = {r["code"]: r for r in s.rooms}
    assert (cards["PR1"]["points"], cards["PR1"]["stale_points"]) == (9, 5)
    assert (cards["PR1"]["devices"].online, cards["PR1"]["devices"].stale, cards["PR1"]["devices"].never) == (1, 1, 1)
    assert (cards["PR2"]["points"], cards["PR2"]["stale_points"]) == (2, 2)
    # Fewer than a fair sample in 1 s and in 10 s: the whole minute ending 2 s ago, (02:58:58.5, 02:59:58.5]:
    # samples at :00 … :50 of 02:59 (6 per point × 4 points) and the meter reading at 02:59:00.
    assert s.rate_per_min == 6 * 4 + 1
    assert not s.rate_estimated
    assert s.rate_hint == "近 1 分钟，按设备时间"
    html = render_fragment("rooms/_estate_body.html", "zh", estate=estate, s=s)
    assert "测点 9 · " in html
    assert "超时测点 5" in html
    assert "≈" not in html


def test_a_large_estate_counts_a_sample_of_its_points_and_says_so(session: Session, at_now: None) -> None:
    estate = _estate(session)
    devices = _room_of_sensors(session, estate, 100)
    # 500 points, each with a sample every second for the last 12 s: 500 readings a second.
    assert _samples_every(session, devices, timedelta(seconds=1), timedelta(seconds=11)) == 500 * 12

    s = rooms_view.estate_summary(session, estate, "zh")

    # The points of every 2nd device (250 of 500) counted over 1 s, which holds a fair sample, and scaled by 2.
    assert s.rate_per_min == 500 * 60
    assert s.rate_estimated
    assert s.rate_hint == "近 1 秒，按设备时间"
    html = render_fragment("rooms/_estate_body.html", "zh", estate=estate, s=s)
    assert "≈ 30,000" in html
    en = rooms_view.estate_summary(session, estate, "en")
    assert en.rate_hint == "last 1 s, by device time"


def test_the_sample_takes_whole_devices_so_a_point_that_reports_alone_is_not_missed_or_multiplied(
    session: Session, at_now: None
) -> None:
    """250 devices of 5 points where only each device's first point reports (every second): 250 readings a
    second. Counting every 5th point by id would count one metric of every device: all the reporting points (5×
    the rate) or none (0). Every 5th device holds them in their true share."""
    estate = _estate(session)
    devices = _room_of_sensors(session, estate, 250)
    assert (
        _samples_every(session, devices, timedelta(seconds=1), timedelta(seconds=14), first_point_only=True) == 250 * 15
    )

    s = rooms_view.estate_summary(session, estate, "zh")

    # ~50 readings a second among the sampled devices: too few in 1 s, a fair sample in 10 s.
    assert s.rate_hint == "近 10 秒，按设备时间"
    assert s.rate_estimated
    assert s.rate_per_min == 250 * 60
