"""The energy page (``/energy?estate=&month=``, 能耗报表), each chart's data as CSV and the monthly Excel export.

Who sees them is `facility.energy_policy.may_read_energy` — the rule of the JSON route
``/api/estates/{code}/energy`` too; the figures are `facility.energy_queries.report`, formatted once in
dashboards/energy_view.py for the page, the CSV and the workbook.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session

from core import clock
from dashboards import energy_view, i18n
from dashboards.lookups import estate_of
from dashboards.render import CSP, render
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility import energy_queries
from facility.energy_policy import may_read_energy
from facility.queries import visible_estates
from storage.models import Estate
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def energy_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, may_read_energy(viewer.role))


EnergyViewer = Annotated[Viewer, Depends(energy_viewer)]
EstateParam = Annotated[str | None, Query(max_length=32)]
MonthParam = Annotated[str | None, Query(max_length=7)]


def _estate(session: Session, code: str | None, viewer: Viewer) -> Estate:
    if code:
        return estate_of(session, code, viewer)
    estates = visible_estates(session, viewer.visible)
    if not estates:
        raise PageError(404, viewer)
    return estates[0]


def _report(session: Session, estate: Estate, month: str | None) -> energy_queries.EnergyReport:
    now = clock.now()
    today = energy_queries.estate_today(estate, now)
    try:
        first = energy_queries.parse_month(month, today)
    except ValueError:  # a malformed month falls back to this month rather than erroring, as /callbacks does
        first = energy_queries.month_start(today)
    return energy_queries.report(session, estate, first, now)


def _download(body: bytes, media_type: str, filename: str) -> Response:
    # RFC 6266/5987: the Chinese file name for browsers that read filename*, an ASCII one for the rest.
    ascii_name = filename.encode("ascii", "ignore").decode() or "report"
    headers = {
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
    }
    return Response(body, media_type=media_type, headers=headers)


@router.get("/energy", response_class=HTMLResponse)
def energy_page(
    request: Request,
    session: ReadSessionDep,
    viewer: EnergyViewer,
    estate: EstateParam = None,
    month: MonthParam = None,
) -> HTMLResponse:
    place = _estate(session, estate, viewer)
    report = _report(session, place, month)
    lang = viewer.lang
    tz = i18n.zone(place.timezone)
    w = report.windows
    last_day = report.days()[-1] if report.days() else w.current.start
    charts = energy_view.charts(report, lang)
    return render(
        request,
        "energy/energy.html",
        lang,
        viewer,
        estate=place,
        estates=visible_estates(session, viewer.visible),
        month=f"{w.month:%Y-%m}",
        report=report,
        partial=w.partial,
        last_day=last_day.isoformat(),
        dom=last_day.day,
        rows=energy_view.summary_rows(report, lang),
        vacant=energy_view.unit_rows(report.vacant, lang),
        top=energy_view.unit_rows(report.top, lang),
        kinds=[(k, energy_view.utility(k, lang)) for k in report.kinds],
        held=sum(u.held for u in report.usage if u.building_id is None),
        charts=charts,
        as_of=i18n.format_time(report.as_of, tz, seconds=False) if report.as_of else None,
        tz=str(tz),
        energy_data={"lang": lang, "charts": [c.as_json() for c in charts], "empty": i18n.t("chart_empty", lang)},
    )


@router.get("/energy/report.xlsx")
def energy_xlsx(
    session: ReadSessionDep, viewer: EnergyViewer, estate: EstateParam = None, month: MonthParam = None
) -> Response:
    place = _estate(session, estate, viewer)
    report = _report(session, place, month)
    body = energy_view.workbook(report, place, viewer.lang)
    return _download(body, XLSX, f"{place.code}-energy-{report.windows.month:%Y-%m}.xlsx")


@router.get("/energy/chart.csv")
def energy_csv(
    session: ReadSessionDep,
    viewer: EnergyViewer,
    chart: Annotated[str, Query(max_length=64)],
    estate: EstateParam = None,
    month: MonthParam = None,
) -> Response:
    place = _estate(session, estate, viewer)
    report = _report(session, place, month)
    body = energy_view.chart_csv(report, chart, viewer.lang)
    if body is None:
        raise PageError(404, viewer)
    return _download(
        body.encode("utf-8"), "text/csv; charset=utf-8", f"{place.code}-{chart}-{report.windows.month:%Y-%m}.csv"
    )
