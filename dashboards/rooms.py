"""Equipment pages: the estate overview, an equipment room, a device, and their live streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from core import clock, glossary
from dashboards import device_history, i18n, rooms_view
from dashboards.diagrams.view import diagram_view, severity_payload
from dashboards.i18n import Lang
from dashboards.lookups import device_of, estate_of, room_of
from dashboards.render import page_data, render, render_fragment
from dashboards.streaming import stream
from dashboards.viewer import EquipmentViewer, Viewer, ViewerDep
from facility import series
from facility.queries import visible_estates
from storage.models import DeviceState, Room
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)

# A whole estate's summary is re-read at most this often per viewer (a room's values: every second).
ESTATE_MIN_INTERVAL_S = 2.0
HOME_MIN_INTERVAL_S = 5.0


def _bucket_note(bucket: series.Bucket, lang: Lang) -> str:
    return i18n.t("bucket_note", lang, bucket=i18n.lookup(i18n.BUCKET_NAMES, bucket.value, lang))


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: ReadSessionDep, viewer: ViewerDep) -> Response:
    estates = visible_estates(session, viewer.visible)
    if len(estates) == 1 and viewer.sees_equipment:
        # Most staff work at one estate: take them straight to it rather than to a list of one.
        return RedirectResponse(f"/estates/{quote(estates[0].code)}", status_code=303)
    summaries = (
        [rooms_view.estate_summary(session, e, viewer.lang, detail=False) for e in estates]
        if viewer.sees_equipment
        else []
    )
    return render(
        request,
        "home.html",
        viewer.lang,
        viewer,
        estates=estates,
        summaries=summaries,
        # Estate cards follow their alarms live (issue 15 §1); only the equipment roles see the cards at all.
        page_data=page_data(viewer.lang, "/live/home", "html") if summaries else None,
    )


@router.get("/estates/{code}", response_class=HTMLResponse)
def estate_page(code: str, request: Request, session: ReadSessionDep, viewer: EquipmentViewer) -> HTMLResponse:
    estate = estate_of(session, code, viewer)
    summary = rooms_view.estate_summary(session, estate, viewer.lang)
    return render(
        request,
        "rooms/estate.html",
        viewer.lang,
        viewer,
        estate=estate,
        s=summary,
        page_data=page_data(viewer.lang, f"/live/estates/{estate.code}", "html"),
    )


@router.get("/rooms/{room_id}", response_class=HTMLResponse)
def room_page(room_id: int, request: Request, session: ReadSessionDep, viewer: EquipmentViewer) -> HTMLResponse:
    room, estate = room_of(session, room_id, viewer)
    tz = i18n.zone(estate.timezone)
    devices = rooms_view.room_devices(session, room)
    views = rooms_view.device_views(session, devices, viewer.lang, tz)
    span, bucket = rooms_view.ROOM_RANGE
    charts = rooms_view.charts(session, devices, viewer.lang, tz, span=span, bucket=bucket)
    window = rooms_view.chart_window([c for cs in charts.values() for c in cs], clock.now(), span, tz, viewer.lang)
    return render(
        request,
        "rooms/room.html",
        viewer.lang,
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang),
        room_kind=i18n.lookup(i18n.ROOM_KINDS, room.kind, viewer.lang, fallback=room.kind),
        devices=views,
        dv=diagram_view(session, room, devices, views, viewer.lang),
        charts=charts,
        tz=tz.key,
        page_data=page_data(
            viewer.lang,
            f"/live/rooms/{room.id}",
            "values",
            charts=[c for cs in charts.values() for c in cs],
            span_ms=int(span.total_seconds() * 1000),
            x_min=window.x_min,
            append=True,
        ),
        trend_label=window.label,
        bucket_note=_bucket_note(bucket, viewer.lang),
    )


@router.get("/rooms/{room_id}/diagram", response_class=HTMLResponse)
def room_diagram_page(room_id: int, request: Request, session: ReadSessionDep, viewer: EquipmentViewer) -> HTMLResponse:
    """The room's system diagram alone (the control room's screen shows it full size)."""
    room, estate = room_of(session, room_id, viewer)
    tz = i18n.zone(estate.timezone)
    devices = rooms_view.room_devices(session, room)
    views = rooms_view.device_views(session, devices, viewer.lang, tz)
    return render(
        request,
        "rooms/diagram.html",
        viewer.lang,
        viewer,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang),
        dv=diagram_view(session, room, devices, views, viewer.lang),
        # The room's own stream: the same values and severities the room page follows.
        page_data=page_data(viewer.lang, f"/live/rooms/{room.id}", "values", charts=[], append=False),
    )


@dataclass(frozen=True)
class HistoryAsked:
    """The history range a device page or its CSV was asked for (device_history.resolve reads it)."""

    range: str | None
    first: str | None
    last: str | None


def history_asked(
    range_: Annotated[str | None, Query(alias="range", pattern=device_history.RANGE_PATTERN)] = None,
    first: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=20)] = None,
) -> HistoryAsked:
    return HistoryAsked(range_, first, last)


HistoryAskedDep = Annotated[HistoryAsked, Depends(history_asked)]


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    device_id: int,
    request: Request,
    session: ReadSessionDep,
    viewer: EquipmentViewer,
    asked: HistoryAskedDep,
) -> HTMLResponse:
    device, estate = device_of(session, device_id, viewer)
    tz = i18n.zone(estate.timezone)
    room = session.get(Room, device.room_id) if device.room_id else None
    view = rooms_view.device_views(session, [device], viewer.lang, tz)[0]
    now = clock.now()
    error = None
    try:
        rng = device_history.resolve(asked.range, asked.first, asked.last, tz, now)
    except device_history.RangeError as exc:
        # The page still opens (the device's values, the picker with what was typed) and says what is wrong.
        error = exc.text(viewer.lang)
        rng = device_history.resolve("day", None, None, tz, now)
    charts = rooms_view.charts(
        session, [device], viewer.lang, tz, span=rng.span, bucket=rng.bucket, end=rng.end, band=True
    )[device.id]
    has_history = bool(charts)
    if error:
        charts = []
    state = session.get(DeviceState, device.id)
    readings = rooms_view.meter_readings(session, device, tz) if device.kind.endswith("_meter") else None
    window = rooms_view.chart_window(charts, now, rng.span, tz, viewer.lang)
    return render(
        request,
        "rooms/device.html",
        viewer.lang,
        viewer,
        status=400 if error else 200,
        estate=estate,
        room=room,
        room_title=i18n.room_title(room.name, room.kind, room.code, viewer.lang) if room else "",
        device=device,
        d=view,
        state=state,
        charts=charts,
        has_history=has_history,
        readings=readings,
        # 反向有功示数 on an electricity meter, 反向累计流量 on a water meter (core/glossary.py)
        reverse_label=i18n.pick(
            glossary.REVERSE_REGISTER if device.kind == "electricity_meter" else glossary.REVERSE_FLOW, viewer.lang
        ),
        range=rng.kind if not error else "custom",
        presets=list(device_history.PRESETS),
        first=asked.first if error else rng.first.isoformat(),
        last=asked.last if error else rng.last.isoformat(),
        max_date=now.astimezone(tz).date().isoformat(),
        range_error=error,
        csv_url=f"/devices/{device.id}/history.csv?{rng.query()}",
        tz=tz.key,
        page_data=page_data(
            viewer.lang,
            f"/live/devices/{device.id}",
            "values",
            charts=charts,
            span_ms=int(rng.span.total_seconds() * 1000),
            # A preset's axis spans the data (a device watched for two hours fills its chart); a custom range starts
            # and ends where it does (a past month is not stretched to today).
            x_min=i18n.chart_ms(rng.start, tz) if rng.kind == "custom" else window.x_min,
            x_max=i18n.chart_ms(rng.end, tz) if rng.kind == "custom" else None,
            # Raw live values only sit well on the day chart; hourly or daily averages wait for a reload.
            append=rng.kind == "day",
            band_label=i18n.t("band_label", viewer.lang),
        ),
        installed=device.installed_at.astimezone(tz).strftime("%Y-%m-%d") if device.installed_at else "",
        bucket_note=_bucket_note(rng.bucket, viewer.lang) + i18n.t("band_note", viewer.lang),
        trend_label=window.label if rng.kind != "custom" else f"{rng.first.isoformat()} — {rng.last.isoformat()}",
    )


@router.get("/devices/{device_id}/history.csv")
def device_history_csv(
    device_id: int,
    session: ReadSessionDep,
    viewer: EquipmentViewer,
    asked: HistoryAskedDep,
) -> Response:
    """The chart's buckets as CSV: the same scoping as the page (another estate's device is 404)."""
    device, estate = device_of(session, device_id, viewer)
    tz = i18n.zone(estate.timezone)
    try:
        rng = device_history.resolve(asked.range, asked.first, asked.last, tz, clock.now())
    except device_history.RangeError as exc:
        return PlainTextResponse(exc.text(viewer.lang), status_code=400)
    name = device_history.csv_filename(device, rng)
    return Response(
        device_history.history_csv(session, device, rng, viewer.lang, tz),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


# --- live streams -------------------------------------------------------------------------------------


def _can_equipment(v: Viewer) -> bool:
    return v.sees_equipment


@router.get("/live/rooms/{room_id}")
async def live_room(room_id: int, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        room, estate = room_of(session, room_id, viewer)
        devices = rooms_view.room_devices(session, room)
        payload = rooms_view.live_payload(session, devices, viewer.lang, i18n.zone(estate.timezone))
        # The diagram's alarm colours: worst open alarm per point and per device.
        payload["severity"] = severity_payload(session, [d.id for d in devices])
        return payload

    return await stream(request, build, _can_equipment, min_interval=1.0)


@router.get("/live/devices/{device_id}")
async def live_device(device_id: int, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        device, estate = device_of(session, device_id, viewer)
        return rooms_view.live_payload(session, [device], viewer.lang, i18n.zone(estate.timezone))

    return await stream(request, build, _can_equipment, min_interval=1.0)


@router.get("/live/estates/{code}")
async def live_estate(code: str, request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        estate = estate_of(session, code, viewer)
        summary = rooms_view.estate_summary(session, estate, viewer.lang)
        tz = i18n.zone(estate.timezone)
        return {
            "now": i18n.format_time(clock.now(), tz, date=False),
            "html": render_fragment("rooms/_estate_body.html", viewer.lang, estate=estate, s=summary),
        }

    # The summary counts a whole estate: refresh it at a calmer pace than a room's values, yet quickly enough
    # that a new alarm colours its room within 5 s of its commit (issue 15 §1).
    return await stream(request, build, _can_equipment, min_interval=ESTATE_MIN_INTERVAL_S)


@router.get("/live/home")
async def live_home(request: Request) -> Response:
    def build(session: Session, viewer: Viewer) -> dict[str, Any]:
        estates = visible_estates(session, viewer.visible)
        summaries = [rooms_view.estate_summary(session, e, viewer.lang, detail=False) for e in estates]
        return {"html": render_fragment("_home_estates.html", viewer.lang, summaries=summaries)}

    # Every visible estate at once (head office: many): at the calmer pace the overview had before.
    return await stream(request, build, _can_equipment, min_interval=HOME_MIN_INTERVAL_S)
