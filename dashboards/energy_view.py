"""The energy report as the page shows it, as each chart's CSV and as the monthly Excel workbook (能耗报表).

One formatting of `facility.energy_queries.EnergyReport` for all three, so the page, the CSV and the workbook
never disagree: quantities are rounded to the meters' resolution (kWh to 0.01, m³ to 0.001), percentages to
0.1 %. The workbook holds numbers, not text, so it sums and charts in Excel as it is.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dashboards import i18n
from dashboards.i18n import Lang
from facility.energy_queries import UNITS, EnergyReport, UnitUsage
from storage.models import Estate

QUANTUM = {
    "electricity_meter": Decimal("0.01"),
    "cold_water_meter": Decimal("0.001"),
    "hot_water_meter": Decimal("0.001"),
}


def q(kind: str, value: Decimal | None) -> Decimal | None:
    """A quantity rounded to its utility's resolution (None stays None)."""
    return None if value is None else value.quantize(QUANTUM[kind], rounding=ROUND_HALF_UP)


def text(kind: str, value: Decimal | None) -> str:
    v = q(kind, value)
    return "—" if v is None else f"{v:,}"


def pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:+} %"


def utility(kind: str, lang: Lang) -> str:
    return i18n.t(f"en_util_{kind}", lang)


def loss_label(kind: str, lang: Lang, *, rate: bool = False) -> str:
    which = "electricity_meter" if kind == "electricity_meter" else "water"
    return i18n.t(f"en_loss_rate_{which}" if rate else f"en_loss_{which}", lang)


def building_label(building_id: int | None, report: EnergyReport, lang: Lang) -> str:
    if building_id is None:
        return i18n.t("en_whole_estate", lang)
    b = next((b for b in report.buildings if b.id == building_id), None)
    return b.name if b is not None else str(building_id)


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    kind: str
    categories: list[str]
    series: list[dict[str, Any]]  # {"name": str, "data": [number | None]}
    stacked: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "unit": UNITS[self.kind],
            "categories": self.categories,
            "series": self.series,
            "stacked": self.stacked,
        }


def _num(value: Decimal | None, kind: str) -> float | None:
    v = q(kind, value)
    return None if v is None else float(v)  # JSON for the chart only; the CSV and the workbook keep Decimals


def charts(report: EnergyReport, lang: Lang) -> list[Chart]:
    """Per utility: each day's households by building (stacked), and each building this month / last month /
    last year (grouped)."""
    days = report.days()
    out: list[Chart] = []
    for kind in report.kinds:
        unit, util = UNITS[kind], utility(kind, lang)
        per_building = [u for u in report.usage if u.kind == kind and u.building_id is not None]
        by_day = {(d.day, d.building_id): d for d in report.daily if d.kind == kind}
        series = [
            {
                "name": building_label(u.building_id, report, lang),
                "data": [_raw(by_day.get((day, u.building_id)), kind) for day in days],
            }
            for u in per_building
        ]
        out.append(
            Chart(
                f"daily-{kind}",
                i18n.t("en_daily_of", lang, util=util, unit=unit),
                kind,
                [d.isoformat() for d in days],
                series,
                True,
            )
        )
        compare = [
            {"name": i18n.t("en_units_total", lang) + f" {report.windows.month:%Y-%m}", "field": "units"},
            {"name": i18n.t("en_previous", lang), "field": "previous"},
            {"name": i18n.t("en_last_year", lang), "field": "last_year"},
        ]
        out.append(
            Chart(
                f"compare-{kind}",
                i18n.t("en_compare_of", lang, util=util, unit=unit),
                kind,
                [building_label(u.building_id, report, lang) for u in per_building],
                [
                    {"name": c["name"], "data": [_num(getattr(u, c["field"]), kind) for u in per_building]}
                    for c in compare
                ],
                False,
            )
        )
    return out


def _raw(d: Any, kind: str) -> float | None:
    return 0.0 if d is None else _num(d.units, kind)  # no row that day: nothing was used


def chart_csv(report: EnergyReport, chart_id: str, lang: Lang) -> str | None:
    """One chart's data as CSV (UTF-8 with BOM, so Excel opens the Chinese headers): category, then one column
    a series. None: no such chart."""
    chart = next((c for c in charts(report, lang) if c.id == chart_id), None)
    if chart is None:
        return None
    exact = _exact_series(report, chart)
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\r\n")
    first = i18n.t("en_day", lang) if chart.id.startswith("daily-") else i18n.t("en_building", lang)
    w.writerow([f"{first}", *(f"{s['name']} ({UNITS[chart.kind]})" for s in chart.series)])
    for i, category in enumerate(chart.categories):
        w.writerow([category, *("" if col[i] is None else str(col[i]) for col in exact)])
    return buf.getvalue()


def _exact_series(report: EnergyReport, chart: Chart) -> list[list[Decimal | None]]:
    """The chart's series as Decimals (the chart itself carries floats for the browser)."""
    kind = chart.kind
    per_building = [u for u in report.usage if u.kind == kind and u.building_id is not None]
    if chart.id.startswith("daily-"):
        by_day = {(d.day, d.building_id): d.units for d in report.daily if d.kind == kind}
        return [[q(kind, by_day.get((day, u.building_id), Decimal(0))) for day in report.days()] for u in per_building]
    return [[q(kind, getattr(u, f)) for u in per_building] for f in ("units", "previous", "last_year")]


# --- the page's tables ------------------------------------------------------------------------------


def summary_rows(report: EnergyReport, lang: Lang) -> list[dict[str, Any]]:
    rows = []
    for u in report.usage:
        rows.append(
            {
                "kind": u.kind,
                "utility": utility(u.kind, lang),
                "unit": UNITS[u.kind],
                "building": building_label(u.building_id, report, lang),
                "building_code": u.building_code or "",
                "estate_row": u.building_id is None,
                "units": text(u.kind, u.units),
                "master": text(u.kind, u.master),
                "loss": text(u.kind, u.loss),
                "loss_rate": "—" if u.loss_rate is None else f"{u.loss_rate} %",
                "previous": text(u.kind, u.previous),
                "mom": pct(u.mom),
                "last_year": text(u.kind, u.last_year),
                "yoy": pct(u.yoy),
                "held": u.held,
            }
        )
    return rows


def unit_rows(items: tuple[UnitUsage, ...], lang: Lang) -> list[dict[str, Any]]:
    return [
        {
            "kind": u.kind,
            "utility": utility(u.kind, lang),
            "unit_code": u.unit_code,
            "occupancy": i18n.t(f"en_occ_{u.occupancy}", lang),
            "volume": text(u.kind, u.volume),
            "unit": UNITS[u.kind],
        }
        for u in items
    ]


# --- the monthly workbook ---------------------------------------------------------------------------------


def workbook(report: EnergyReport, estate: Estate, lang: Lang) -> bytes:
    """The monthly 能耗报表 as an .xlsx: the summary, each day's figures, vacant units, top consumers."""
    from openpyxl import Workbook  # imported here: only the export needs it
    from openpyxl.styles import Font

    def t(key: str, **fmt: object) -> str:
        return i18n.t(key, lang, **fmt)

    w = report.windows
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = t("en_sheet_summary")
    ws.append([f"{estate.name} {t('en_title')} {w.month:%Y-%m}"])
    ws["A1"].font = Font(bold=True, size=14)
    last = w.current.end.toordinal() - 1
    ws.append([t("en_period"), f"{w.current.start.isoformat()} – {date.fromordinal(last).isoformat()}"])
    ws.append([])
    header = [
        t("en_utility"),
        t("en_unit_of"),
        t("en_building"),
        t("en_units_total"),
        t("en_master"),
        t("en_loss"),
        t("en_loss_rate") + " (%)",
        t("en_previous"),
        t("en_mom") + " (%)",
        t("en_last_year"),
        t("en_yoy") + " (%)",
        t("en_held"),
    ]
    ws.append(header)
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    for u in report.usage:
        ws.append(
            [
                utility(u.kind, lang),
                UNITS[u.kind],
                building_label(u.building_id, report, lang),
                q(u.kind, u.units),
                q(u.kind, u.master),
                q(u.kind, u.loss),
                u.loss_rate,
                q(u.kind, u.previous),
                u.mom,
                q(u.kind, u.last_year),
                u.yoy,
                u.held,
            ]
        )
    _widths(ws, [10, 6, 14, 14, 14, 12, 10, 14, 10, 14, 10, 10])

    daily = wb.create_sheet(t("en_sheet_daily"))
    columns = [(u.kind, u.building_id) for u in report.usage]
    daily.append(
        [
            t("en_day"),
            *(f"{utility(k, lang)} {building_label(b, report, lang)} ({UNITS[k]})" for k, b in columns),
        ]
    )
    for cell in daily[1]:
        cell.font = Font(bold=True)
    by_day = {(d.day, d.kind, d.building_id): d.units for d in report.daily}
    for day in report.days():
        daily.append([day, *(q(k, by_day.get((day, k, b), Decimal(0))) for k, b in columns)])
        daily.cell(row=daily.max_row, column=1).number_format = "yyyy-mm-dd"
    _widths(daily, [12, *([18] * len(columns))])

    for title, items in ((t("en_sheet_vacant"), report.vacant), (t("en_sheet_top"), report.top)):
        sheet = wb.create_sheet(title)
        sheet.append([t("en_utility"), t("en_unit_code"), t("en_occupancy"), t("en_volume"), t("en_unit_of")])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for one in items:
            sheet.append(
                [
                    utility(one.kind, lang),
                    one.unit_code,
                    t(f"en_occ_{one.occupancy}"),
                    q(one.kind, one.volume),
                    UNITS[one.kind],
                ]
            )
        _widths(sheet, [10, 14, 10, 14, 6])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _widths(ws: Any, widths: list[int]) -> None:
    from openpyxl.utils import get_column_letter

    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
