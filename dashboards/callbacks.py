"""The monthly callback report page (``/callbacks``, 回访统计): per visible estate, one month's callbacks, the share
made in person (target ≥ 70 %) and the share of satisfied residents (target ≥ 95 %).

Who sees it is ``tickets.policy.may_view_callback_report`` — the same rule as the JSON route
``/api/estates/{code}/callback-report``; the figures are ``tickets.callback_report.monthly``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from core import clock
from dashboards import i18n
from dashboards.lookups import viewer_tz
from dashboards.render import render
from dashboards.viewer import Viewer, ViewerDep, require
from facility.queries import visible_estates
from tickets import callback_report, policy
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)
MONTH = re.compile(r"^[12]\d{3}-(0[1-9]|1[0-2])$")


def report_viewer(viewer: ViewerDep) -> Viewer:
    return require(viewer, policy.may_view_callback_report(viewer.role))


ReportViewer = Annotated[Viewer, Depends(report_viewer)]


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value} %"


@router.get("/callbacks", response_class=HTMLResponse)
def callbacks_page(
    request: Request,
    session: ReadSessionDep,
    viewer: ReportViewer,
    month: Annotated[str | None, Query(max_length=7)] = None,
) -> HTMLResponse:
    tz = viewer_tz(session, viewer)
    if month and MONTH.match(month):
        first = date(int(month[:4]), int(month[5:7]), 1)
    else:  # the viewer's current month; a malformed month falls back to it rather than erroring
        local = clock.now().astimezone(tz)
        first = date(local.year, local.month, 1)
    rows = []
    for estate in visible_estates(session, viewer.visible):
        r = callback_report.monthly(session, estate.id, first)
        rows.append(
            {
                "code": estate.code,
                "name": estate.name,
                "callbacks": r.callbacks,
                "in_person": r.in_person,
                "phone": r.by_channel.get("phone", 0),
                "other": r.callbacks - r.in_person - r.by_channel.get("phone", 0),
                "satisfied": r.satisfied,
                "in_person_pct": _pct(r.in_person_pct),
                "satisfaction_pct": _pct(r.satisfaction_pct),
                "in_person_met": r.in_person_met,
                "satisfaction_met": r.satisfaction_met,
            }
        )
    return render(
        request,
        "tickets/callbacks.html",
        viewer.lang,
        viewer,
        rows=rows,
        month=first.strftime("%Y-%m"),
        in_person_target=callback_report.IN_PERSON_TARGET,
        satisfaction_target=callback_report.SATISFACTION_TARGET,
        tz=tz.key,
        met_label={True: i18n.t("cbr_met", viewer.lang), False: i18n.t("cbr_missed", viewer.lang)},
    )
