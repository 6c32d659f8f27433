"""A device's history (issue 15 §7): the range picker's choice (日 / 周 / 月 / 自定义), the bucket its span
takes, and the CSV export of the same min/avg/max buckets the chart draws and /api/points/{id}/series serves.

Custom ranges are whole estate-local days, both ends included: 2026-11-01 → 2026-11-30 is November, and
one date twice is that one day.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dashboards import i18n
from dashboards.i18n import Lang
from facility import queries, series
from storage.models import Device

PRESETS: dict[str, timedelta] = {
    "day": timedelta(hours=24),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
}
KINDS = (*PRESETS, "custom")
# Links saved before the picker (?range=24h) still open the range they meant.
ALIASES = {"24h": "day", "7d": "week", "30d": "month"}
RANGE_PATTERN = "^(" + "|".join((*KINDS, *ALIASES)) + ")$"
MAX_DAYS = 400

CSV_HEADER = ("时间", "点位", "单位", "最小", "平均", "最大", "样本数")
CSV_HEADER_EN = ("Time", "Point", "Unit", "Min", "Avg", "Max", "Samples")


class RangeError(Exception):
    """A custom range the picker cannot show; carries the UI string to explain why, in either language."""

    def __init__(self, key: str, **fmt: object) -> None:
        super().__init__(key)
        self.key = key
        self.fmt = fmt

    def text(self, lang: Lang) -> str:
        return i18n.t(self.key, lang, **self.fmt)


@dataclass(frozen=True)
class HistoryRange:
    kind: str  # day | week | month | custom
    start: datetime
    end: datetime
    bucket: series.Bucket
    first: date  # the estate-local dates the picker's inputs show
    last: date

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def query(self) -> str:
        """The query string that asks for this range again (the CSV link, the preset links' neighbour)."""
        if self.kind == "custom":
            return f"range=custom&from={self.first.isoformat()}&to={self.last.isoformat()}"
        return f"range={self.kind}"


def _parse(value: str, which: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise RangeError("history_bad_date", which=which, value=value[:20]) from None


def resolve(kind: str | None, first: str | None, last: str | None, tz: ZoneInfo, now: datetime) -> HistoryRange:
    """The range asked for: a preset ending now, or whole local days (custom, or when only dates are given)."""
    kind = ALIASES.get(kind or "", kind)
    if kind is None:
        kind = "custom" if (first or last) else "day"
    if kind != "custom":
        span = PRESETS[kind]
        start = now - span
        return HistoryRange(
            kind, start, now, series.bucket_for_span(span), start.astimezone(tz).date(), now.astimezone(tz).date()
        )
    if not first or not last:
        raise RangeError("history_need_dates")
    lo, hi = _parse(first, "from"), _parse(last, "to")
    if hi < lo:
        raise RangeError("history_order")
    days = (hi - lo).days + 1
    if days > MAX_DAYS:
        raise RangeError("history_too_long", n=MAX_DAYS, days=days)
    if lo > now.astimezone(tz).date():
        raise RangeError("history_future")
    start = datetime.combine(lo, time(), tz)
    end = datetime.combine(hi + timedelta(days=1), time(), tz)
    return HistoryRange("custom", start, end, series.bucket_for_span(end - start), lo, hi)


def _number(value: float) -> str:
    # repr of a float reads back as the same float: the file holds exactly what the API serves.
    return repr(value)


def history_csv(session: Session, device: Device, rng: HistoryRange, lang: Lang, tz: ZoneInfo) -> bytes:
    """One row per point and bucket, oldest first within each point; UTF-8 with a BOM so Excel reads Chinese."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER_EN if lang == "en" else CSV_HEADER)
    for point in queries.chartable_points(session, [device.id]):
        _, rows = series.bucketed(session, point.id, rng.start, rng.end, rng.bucket, tz=tz.key)
        label = i18n.point_label(point.metric, point.label, lang)
        unit = i18n.unit_display(point.unit, lang)
        for r in rows:
            writer.writerow(
                (
                    r.bucket.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    label,
                    unit,
                    _number(r.min),
                    _number(r.avg),
                    _number(r.max),
                    r.n,
                )
            )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def csv_filename(device: Device, rng: HistoryRange) -> str:
    return f"{device.code}_{rng.first.isoformat()}_{rng.last.isoformat()}.csv"
