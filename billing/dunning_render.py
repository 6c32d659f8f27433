"""Dunning documents as printed: versioned Chinese templates (Jinja2), amounts in yuan and in 大写, masking.

A document is rendered once, when it is issued, and stored as issued (`dunning_documents.body`): it is the
proof of a written demand, so a later template version never changes a letter already delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.money import fen_to_yuan

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "dunning"
_ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Template:
    kind: str
    name: str
    version: int
    title_zh: str
    title_en: str

    @property
    def file(self) -> str:
        return f"{self.name}.v{self.version}.html"


# The current version of each document's template; a wording change adds a new file and bumps the version.
TEMPLATES: dict[str, Template] = {
    t.kind: t
    for t in (
        Template("reminder", "reminder", 1, "提示函", "Reminder"),
        Template("demand", "demand", 1, "催缴函", "Demand for payment"),
        Template("urgent_demand", "urgent_demand", 1, "紧急催缴函", "Urgent demand for payment"),
        Template("notice_16", "notice_16", 1, "催费通知书", "Payment notice"),
        Template("notice_24", "notice_24", 1, "二次催费通知书", "Second payment notice"),
        Template("notice_final", "notice_final", 1, "最后催费通知书", "Final payment notice"),
    )
}

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_POS = ("", "拾", "佰", "仟")
_GROUPS = ("", "万", "亿", "万亿")


def rmb_upper(fen: int) -> str:
    """Integer fen in Chinese capitals (大写) as on receipts and demand letters: 1234.50 → 壹仟贰佰叁拾肆元伍角."""
    if fen < 0:
        raise ValueError("a negative amount has no 大写 form here")
    yuan, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
    if fen == 0:
        return "零元整"
    out = ""
    if yuan:
        text = str(yuan)
        pending_zero = False
        for i, ch in enumerate(text):
            pos = len(text) - 1 - i
            digit = int(ch)
            if digit == 0:
                pending_zero = True
            else:
                if pending_zero and out:
                    out += "零"
                pending_zero = False
                out += _DIGITS[digit] + _POS[pos % 4]
            if pos % 4 == 0 and pos and int(text[max(0, i - 3) : i + 1]):
                out += _GROUPS[pos // 4]
        out += "元"
    if not jiao and not cents:
        return out + "整"
    if jiao:
        out += _DIGITS[jiao] + "角"
    elif yuan:
        out += "零"
    if cents:
        out += _DIGITS[cents] + "分"
    return out


def yuan(fen: int) -> str:
    """12345 → "123.45" (always two decimals, thousands separated)."""
    return f"{fen_to_yuan(fen):,.2f}"


def mask_name(name: str) -> str:
    """张三丰 → 张**: only the surname survives on a published list (PIPL: nothing else personal)."""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""


def cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def period_label(period: str) -> str:
    """2026-10 → 2026年10月; 2026-Q3 → 2026年第三季度."""
    year, _, rest = period.partition("-")
    if rest.startswith("Q"):
        return f"{year}年第{'一二三四'[int(rest[1]) - 1]}季度"
    return f"{year}年{int(rest)}月"


def render(kind: str, context: dict[str, Any]) -> tuple[Template, str]:
    """The template of `kind` in its current version and the HTML it renders to."""
    template = TEMPLATES[kind]
    html = _ENV.get_template(template.file).render(
        title=template.title_zh, yuan=yuan, rmb_upper=rmb_upper, cn_date=cn_date, period_label=period_label, **context
    )
    return template, html


def as_decimal_yuan(fen: int) -> Decimal:
    return fen_to_yuan(fen)
