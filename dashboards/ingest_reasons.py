"""Why ingest refused a message, in the staff's words: a Chinese (or English) label for every quarantine reason and
dead-letter cause, and the quarantine detail retold with its timestamps in the viewer's zone. Ingest stores the
raw English text (ingest/decode.py, protocol/payloads.py); the page keeps it in a tooltip for the engineer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dashboards import i18n
from dashboards.i18n import Lang

# Dead letters carry free text, not a code: the cause is told by how ingest worded it (first match wins).
DEAD_LETTER_CAUSES: tuple[tuple[str, str], ...] = (
    ("payload too large", "too_large"),
    ("database rejected the payload", "db_rejected"),
    ("not an uplink topic", "bad_topic"),
    ("unknown channel", "bad_channel"),
    ("invalid json", "bad_json"),
    ("json_invalid", "bad_json"),
)

DEAD_LETTER_LABELS: dict[str, tuple[str, str]] = {
    "too_large": ("报文过大（超出长度上限）", "Payload too large"),
    "db_rejected": ("数据库拒收（数值超出范围或格式不符）", "Rejected by the database"),
    "bad_topic": ("主题格式不正确", "Not a device topic"),
    "bad_channel": ("未知的报文通道", "Unknown channel"),
    "bad_json": ("报文不是有效的 JSON", "Not valid JSON"),
    "invalid": ("报文字段校验失败", "Payload fields invalid"),
}

# pydantic's messages for a field (protocol.payloads._reason: "loc: msg; loc: msg").
FIELD_PROBLEMS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("field required", ("缺少字段", "missing")),
    ("valid number", ("应为数字", "not a number")),
    ("valid integer", ("应为整数", "not an integer")),
    ("valid datetime", ("时间格式不正确", "not a timestamp")),
    ("valid string", ("应为文本", "not text")),
    ("valid dictionary", ("应为对象", "not an object")),
    ("valid list", ("应为列表", "not a list")),
    ("extra inputs", ("不允许的字段", "not allowed")),
    ("input should be", ("取值不被接受", "value not accepted")),
)
FIELD_OTHER = ("取值无效", "invalid")

# How ingest/decode.py words a quarantined message's detail.
_TS = re.compile(r"ts (\S+)")
_LIMIT = re.compile(r"(?:before|after) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
_METRICS = re.compile(r"metrics not configured for this device: (.+)$")
_ESTATES = re.compile(r"estate '([^']*)', not '([^']*)'")
_ITEM = re.compile(r"^item (\d+): ")

QUARANTINE_DETAILS: dict[str, tuple[str, str]] = {
    "unknown_device": ("该设备编号未在任何小区登记", "Device code not registered in any estate"),
    "estate_mismatch": ("设备登记在小区 {own}，却从小区 {topic} 的主题上报", "Device of estate {own} sent on {topic}"),
    "unknown_metric": ("该设备未配置这些测点：{metrics}", "Metrics not configured for this device: {metrics}"),
    "ts_without_timezone": ("设备时间 {ts} 缺少时区", "Device time {ts} has no time zone"),
    "ts_too_old": (
        "设备时间 {ts} 早于允许的最早时间 {limit}",
        "Device time {ts} is before the earliest allowed {limit}",
    ),
    "ts_in_future": (
        "设备时间 {ts} 晚于允许的最晚时间 {limit}",
        "Device time {ts} is after the latest allowed {limit}",
    ),
    "rate_limited": (
        "上报频率超出该设备的限速，超出的报文已隔离",
        "Over the device's rate limit: the excess was quarantined",
    ),
}


@dataclass(frozen=True)
class Told:
    label: str  # what the page shows
    raw: str  # ingest's own words, for the tooltip


def dead_letter_cause(error: str) -> str:
    low = error.lower()
    for needle, cause in DEAD_LETTER_CAUSES:
        if needle in low:
            return cause
    return "invalid"


def _field_problem(msg: str, lang: Lang) -> str:
    low = msg.lower()
    for needle, pair in FIELD_PROBLEMS:
        if needle in low:
            return i18n.pick(pair, lang)
    return i18n.pick(FIELD_OTHER, lang)


def dead_letter_reason(error: str, lang: Lang) -> Told:
    """``payload.values.x: Input should be a valid number`` → 报文字段校验失败：values.x 应为数字."""
    cause = dead_letter_cause(error)
    label = i18n.lookup(DEAD_LETTER_LABELS, cause, lang)
    if cause == "invalid":
        fields = []
        for part in error.split("; "):
            loc, sep, msg = part.partition(": ")
            if sep:
                fields.append(f"{loc} {_field_problem(msg, lang)}")
        if fields:
            label += ("：" if lang == "zh" else ": ") + ("；" if lang == "zh" else "; ").join(fields)
    return Told(label, error)


def _local(text: str, tz: ZoneInfo) -> str:
    """A timestamp of the detail in the viewer's zone; one without an offset stays as the device sent it."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return i18n.format_time(ts, tz) if ts.tzinfo is not None else text.replace("T", " ")


def quarantine_detail(reason: str, detail: str, lang: Lang, tz: ZoneInfo) -> Told:
    """The detail retold in the page's language, every time in ``tz``; unknown shapes keep the reason's label."""
    template = QUARANTINE_DETAILS.get(reason)
    if template is None:
        return Told(i18n.lookup(i18n.QUARANTINE_REASONS, reason, lang, fallback=reason), detail)
    fmt: dict[str, str] = {}
    if m := _TS.search(detail):
        fmt["ts"] = _local(m.group(1), tz)
    if m := _LIMIT.search(detail):
        fmt["limit"] = _local(m.group(1), tz)
    if m := _METRICS.search(detail):
        fmt["metrics"] = m.group(1)
    if m := _ESTATES.search(detail):
        fmt["own"], fmt["topic"] = m.group(1), m.group(2)
    try:
        text = i18n.pick(template, lang).format(**fmt)
    except KeyError:  # worded differently than expected: say the reason, keep the words for the tooltip
        return Told(i18n.lookup(i18n.QUARANTINE_REASONS, reason, lang, fallback=reason), detail)
    if m := _ITEM.match(detail):
        text = (f"第 {int(m.group(1)) + 1} 条：" if lang == "zh" else f"item {m.group(1)}: ") + text
    return Told(text, detail)
