"""The 18:30 daily summary (seeds/001 4.10: 每日晚班客服助理需汇总巡查中发现问题，于每日18:30前发送邮件至部门负责人):
each estate's day (alarms/daily_summary.py) sent once at 18:30 estate-local time, through the same path as ticket
escalations (tickets.escalation_notices.enqueue_staff_notice: the log, the WeCom group robot, e-mail to the estate's
supervisors, managers and stewards).

The worker calls `send_due` every minute. An estate is due from 18:30 until its local midnight, so a worker that
was down at 18:30 sends the summary when it comes back the same evening; after midnight the day is left alone
(nobody wants yesterday's summary the next morning, and never twice). Once per estate and local day: the
``daily_summaries`` row (primary key estate, day) is inserted ``ON CONFLICT DO NOTHING`` in the transaction that
queues the messages, and only the run that inserted it queues them (under the delivery key of the estate and day,
itself idempotent): a second run, or a second worker, sends nothing. A rolled-back run leaves neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.const import SEVERITY_LABELS
from alarms.daily_summary import PRIORITIES, SEVERITIES, DailyFigures, NamedTicket, TicketFigures, compose
from alarms.rounds import STATUS_LABELS as ROUND_STATUS_LABELS
from storage.models import DailySummary, Estate
from tickets.const import CLOCK_LABELS, PRIORITY_LABELS, Clock
from tickets.escalation_notices import enqueue_staff_notice

log = logging.getLogger(__name__)

SOURCE = "daily_summary"
SEND_AT = time(18, 30)
# 部门负责人 (seeds/001 4.10) and the customer-service desk that writes the summary.
EMAIL_ROLES = ("supervisor", "manager", "steward")
GROUP = "role:department_heads"
# How many tickets a message names per list; the page names them all.
NAMED_MAX = 10
SIGNATURE = "—— Steward 物业平台（自动发送，请勿回复）"


def delivery_key(estate_id: int, day: date) -> str:
    return f"daily_summary:{estate_id}:{day.isoformat()}"


def page_path(estate_code: str, day: date) -> str:
    return f"/summary/daily?estate={estate_code}&date={day.isoformat()}"


def due_day(timezone: str, now: datetime) -> date | None:
    """The local day whose summary is due at `now` (from 18:30 to midnight), or None."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.date() if local.time() >= SEND_AT else None


# --- wording (Chinese, the way a 客服主管 writes the evening report) -----------------------------------------------


def _zh(labels: Mapping[Any, tuple[str, str]], key: str) -> str:
    for k, pair in labels.items():
        if str(k) == key:
            return pair[0]
    return key


def _parts(counts: Mapping[str, int], order: Sequence[str], labels: Mapping[Any, tuple[str, str]]) -> str:
    """ "紧急 1、一般 2": the non-zero counts in their order ("" when all are zero)."""
    return "、".join(f"{_zh(labels, k)} {counts[k]}" for k in order if counts.get(k))


def _split(counts: Mapping[str, int], order: Sequence[str], labels: Mapping[Any, tuple[str, str]]) -> str:
    """The non-zero parts wrapped in （）, "" when all are zero."""
    parts = _parts(counts, order, labels)
    return f"（{parts}）" if parts else ""


def _hm(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M")


def _md(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%m-%d %H:%M")


def _ticket_line(n: NamedTicket, tz: ZoneInfo) -> str:
    clocks = "、".join(_zh(CLOCK_LABELS, c) for c in n.clocks) or _zh(CLOCK_LABELS, Clock.callback.value)
    due = f"（应于 {_md(n.due_at, tz)} 前）" if n.due_at is not None else ""
    return f"{n.number} {n.title} · {_zh(PRIORITY_LABELS, n.priority)} · {clocks}{due}"


def _named(items: list[NamedTicket], tz: ZoneInfo, indent: str = "  ") -> list[str]:
    lines = [f"{indent}{i}. {_ticket_line(n, tz)}" for i, n in enumerate(items[:NAMED_MAX], 1)]
    if len(items) > NAMED_MAX:
        lines.append(f"{indent}另有 {len(items) - NAMED_MAX} 单未列出，详见平台页面")
    return lines


def _tickets_sentence(f: TicketFigures, unit: str, closed_word: str, as_of: str) -> str:
    pri = PRIORITIES
    return (
        f"今日新增 {f.opened} {unit}{_split(f.opened_by_priority, pri, PRIORITY_LABELS)}，"
        f"今日{closed_word} {f.closed} {unit}；截至 {as_of} 未{closed_word} {f.open} {unit}"
        f"{_split(f.open_by_priority, pri, PRIORITY_LABELS)}。"
    )


def _rounds_line(name: str, by_status: Mapping[str, int], total: int) -> str:
    parts = _parts(by_status, list(by_status), ROUND_STATUS_LABELS)
    return f"{name}：共 {total} 次" + (f"，{parts}" if parts else "") + "。"


def _alarms_sentence(f: DailyFigures) -> str:
    sev = SEVERITIES
    raised, still_open = sum(f.alarms_raised.values()), sum(f.alarms_open.values())
    return (
        f"今日新增报警 {raised} 条{_split(f.alarms_raised, sev, SEVERITY_LABELS)}；"
        f"未消除 {still_open} 条{_split(f.alarms_open, sev, SEVERITY_LABELS)}。"
    )


def _callbacks_sentence(f: DailyFigures) -> str:
    c = f.callbacks
    overdue = f"，其中已超时 {c.overdue} 单" if c.overdue else ""
    return f"今日完成回访 {c.done} 次；待回访 {c.due} 单{overdue}。"


def compose_message(f: DailyFigures) -> tuple[str, str, str]:
    """(subject, WeCom markdown, e-mail text) in Chinese, times in the estate's timezone."""
    tz = ZoneInfo(f.timezone)
    as_of = _hm(f.end, tz) if f.end.astimezone(tz).date() == f.day else "24:00"
    day_zh = f"{f.day.year}年{f.day.month}月{f.day.day}日"
    subject = f"【每日汇总】{f.estate_name} {f.day.isoformat()}（截至 {as_of}）"
    rounds_total = sum(f.rounds_total.values())

    text = ["各位领导、同事：", "", f"{f.estate_name}{day_zh}（00:00—{as_of}）工作汇总如下，请审阅。", ""]
    text.append("一、报修工单")
    text.append(_tickets_sentence(f.tickets, "单", "关闭", as_of))
    if f.tickets.breached:
        text.append(f"已超时 {len(f.tickets.breached)} 单：")
        text += _named(f.tickets.breached, tz)
    text += ["", "二、投诉"]
    text.append(_tickets_sentence(f.complaints, "件", "办结", as_of))
    if f.complaints.breached:
        text.append(f"已超时 {len(f.complaints.breached)} 件：")
        text += _named(f.complaints.breached, tz)
    text += ["", "三、巡检"]
    if not f.rounds:
        text.append("今日无巡检计划。")
    for g in f.rounds:
        text.append(_rounds_line(g.name_zh, g.by_status, g.total))
    if len(f.rounds) > 1:
        text.append(_rounds_line("合计", f.rounds_total, rounds_total))
    text += ["", "四、报警", _alarms_sentence(f), "", "五、回访", _callbacks_sentence(f)]
    if f.callbacks.overdue:
        text += _named([n for n in f.callbacks.waiting if n.due_at is not None and n.due_at <= f.end], tz)
    text += [
        "",
        f"详情见平台“每日汇总”页面：{page_path(f.estate_code, f.day)}",
        "",
        f"{f.estate_name} 客服中心",
        f"{f.end.astimezone(tz).strftime('%Y-%m-%d %H:%M')}",
        SIGNATURE,
    ]

    missed = f.rounds_total.get("missed", 0)
    md = [
        f"**{f.estate_name} 每日汇总** {f.day.isoformat()}（截至 {as_of}）",
        f"> 报修：{_tickets_sentence(f.tickets, '单', '关闭', as_of)}",
        f"> 投诉：{_tickets_sentence(f.complaints, '件', '办结', as_of)}",
        "> " + _rounds_line("巡检", f.rounds_total, rounds_total),
        f"> 报警：{_alarms_sentence(f)}",
        f"> 回访：{_callbacks_sentence(f)}",
    ]
    if missed:
        md.append(f'<font color="warning">未巡检 {missed} 次，请跟进</font>')
    breached = f.tickets.breached + f.complaints.breached
    if breached:
        md.append(f"**已超时 {len(breached)} 单**")
        md += [f"- {_ticket_line(n, tz)}" for n in breached[:5]]
        if len(breached) > 5:
            md.append(f"- 另有 {len(breached) - 5} 单，详见平台页面")
    md.append(f"详情：{page_path(f.estate_code, f.day)}")
    return subject, "\n".join(md), "\n".join(text)


# --- sending ------------------------------------------------------------------------------------------------------


def send_summary(session: Session, estate: Estate, day: date, now: datetime) -> bool:
    """Record and queue the estate's summary of `day` unless it was already; True if this call queued it."""
    figures = compose(session, estate, day, now)
    inserted = session.execute(
        insert(DailySummary)
        .values(estate_id=estate.id, day=day, sent_at=now, counts=figures.counts())
        .on_conflict_do_nothing(index_elements=["estate_id", "day"])
        .returning(DailySummary.estate_id)
    ).scalar()
    if inserted is None:
        return False
    subject, markdown, text = compose_message(figures)
    enqueue_staff_notice(
        session,
        key=delivery_key(estate.id, day),
        estate_id=estate.id,
        group=GROUP,
        email_roles=EMAIL_ROLES,
        subject=subject,
        markdown=markdown,
        text=text,
        source=SOURCE,
        now=now,
    )
    return True


def send_due(session: Session, now: datetime) -> list[tuple[int, date]]:
    """Send every estate's summary that is due at `now` and not sent yet; returns (estate id, day) of those sent."""
    estates = list(session.scalars(select(Estate).order_by(Estate.id)))
    due = {e.id: d for e in estates if (d := due_day(e.timezone, now)) is not None}
    if not due:
        return []
    done = {
        (int(i), d)
        for i, d in session.execute(
            select(DailySummary.estate_id, DailySummary.day).where(
                tuple_(DailySummary.estate_id, DailySummary.day).in_(list(due.items()))
            )
        ).all()
    }
    sent = []
    for estate in estates:
        day = due.get(estate.id)
        if day is None or (estate.id, day) in done:
            continue
        if send_summary(session, estate, day, now):
            log.info("daily summary of %s for %s queued", estate.code, day)
            sent.append((estate.id, day))
    session.flush()
    return sent


def sent_record(session: Session, estate_id: int, day: date) -> DailySummary | None:
    """The day's sent summary of the estate, if it was sent."""
    return session.get(DailySummary, (estate_id, day))


__all__ = [
    "EMAIL_ROLES",
    "GROUP",
    "SEND_AT",
    "SOURCE",
    "compose_message",
    "delivery_key",
    "due_day",
    "page_path",
    "send_due",
    "send_summary",
    "sent_record",
]
