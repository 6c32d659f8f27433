"""Renewal, restriction, suspension and restoration notices, and the legal guards of supply restriction.

domain-defaults §5 (Civil Code §944, §654/§656; city rules banning restriction outright):
- 《热水续费通知书》 when the balance is below 30 days of average use or ¥50; a second notice below 7
  days (or once the balance is spent). Thresholds are per-estate (`estates.policy["billing_notices"]`).
- Restriction (限供) and suspension (停供) only where the estate's `supply_restriction_enabled` is JSON
  `true` (default off). Restriction when the balance ≤ 0 and at least 15 days after a SENT written
  notice that stated the date; suspension only once restricted, and after another notice sent at least
  3 days before the date it states. Never at night (20:00–08:00 estate time), on a weekend or a public
  holiday (billing/holidays.py; 调休 make-up working days count as working days), never for a
  household flagged vulnerable. Property-fee arrears are not an input here at all: every decision reads
  the hot-water account, its notices and supply state, the estate's policy and the calendar — nothing else.
- Restoration at once when the balance is above 0 again (any hour, any day), from `on_payment` inside
  the payment's own transaction, and from `evaluate` for any other credit (an adjustment).

A low-balance episode runs from one top-up to the next: each kind of notice is drafted at most once per
episode (a notice counts unless it was cancelled), so a household is not sent the same notice twice
for one shortfall, and a household that topped up but is still short is reminded again.

Every notice keeps its number (per estate and year, RS-2026-000123), template version, the text as
rendered and who created, approved and sent it when: the proof of prior written notice. The text is
rendered when the notice is drafted and never changed; `deliver` refuses a notice whose stated date is
no longer far enough ahead (cancel it and the next evaluation drafts a new one with a later date).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from billing import holidays, supply
from billing.const import (
    METER_KIND,
    NOTICE_LOCK_SPACE,
    SYSTEM_ACTOR,
    AccountKind,
    NoticeKind,
    NoticeStatus,
    SupplyState,
)
from billing.usage import WINDOW_DAYS, Usage, usage
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from notifications.channels import EMAIL, LOG, WECOM_ROBOT
from notifications.recipients import staff_emails
from notifications.service import enqueue
from storage.models import (
    AuditLog,
    BillingAccount,
    BillingNotice,
    BillingSupplyChange,
    Building,
    Device,
    Estate,
    MeterCharge,
    MeterReading,
    Payment,
    Resident,
    Tariff,
    TariffTier,
    Unit,
)

TEMPLATES = Path(__file__).parent / "templates" / "notices"
# The template version each kind is drafted with now; the version is stored on every notice, so an old
# notice can always be re-rendered from the template it was issued with.
TEMPLATE_VERSION = dict.fromkeys(NoticeKind, "v1")
TITLES = {
    NoticeKind.renewal: "热水续费通知书",
    NoticeKind.renewal_second: "热水续费通知书（第二次）",
    NoticeKind.restriction: "热水限供通知",
    NoticeKind.suspension: "热水停供通知",
    NoticeKind.restoration: "恢复供水通知",
}
NUMBER_PREFIX = "RS"  # 热水
DEFAULT_CLAUSE = (
    "热水实行预付费。预付余额不足时，供方以书面形式通知用户续费；用户逾期未续费的，供方可在书面通知载明的日期起"
    "限制或暂停供应热水，但不在夜间、周末及法定节假日实施，用户缴费后立即恢复供水。"
)
ACTION_HOUR = time(9, 0)  # a stated restriction / suspension date takes effect from 09:00 estate time

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    autoescape=False,  # plain text; the pages escape it when they show it
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    """Per-estate settings: `estates.policy["billing_notices"]` merged over these defaults."""

    restriction_enabled: bool = False
    renewal_days: int = 30  # below 30 days of average use …
    renewal_fen: int = 5000  # … or below ¥50
    second_days: int = 7
    restriction_notice_days: int = 15  # a restriction notice is sent ≥ 15 days before the date it states
    suspension_notice_days: int = 3
    pay_by_days: int = 7  # the pay-by date on a renewal notice
    margin_days: int = 2  # time to approve and deliver a drafted notice before its period starts
    contract_clause: str = DEFAULT_CLAUSE


def policy_of(estate_policy: Mapping[str, Any] | None) -> NoticePolicy:
    """The estate's notice policy; unknown or ill-typed entries are ignored (the legal minimums stay)."""
    raw = (estate_policy or {}).get("billing_notices")
    values: dict[str, Any] = {"restriction_enabled": supply.restriction_enabled(dict(estate_policy or {}))}
    if isinstance(raw, dict):
        for name in ("renewal_days", "renewal_fen", "second_days", "pay_by_days", "margin_days"):
            v = raw.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                values[name] = v
        # Notice periods may be lengthened per estate, never shortened below the law's minimums.
        for name, floor in (("restriction_notice_days", 15), ("suspension_notice_days", 3)):
            v = raw.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v >= floor:
                values[name] = v
        clause = raw.get("contract_clause")
        if isinstance(clause, str) and clause.strip():
            values["contract_clause"] = clause.strip()
    return NoticePolicy(**values)


# --- numbers and rendering ------------------------------------------------------------------------------


def allocate_number(session: Session, estate_id: int, year: int) -> tuple[int, str]:
    """The next notice number of the estate in `year` (race-safe: a transaction-scoped advisory lock)."""
    session.execute(text("SELECT pg_advisory_xact_lock(:s, :e)"), {"s": NOTICE_LOCK_SPACE, "e": estate_id})
    last = session.scalar(
        select(func.coalesce(func.max(BillingNotice.seq), 0)).where(
            BillingNotice.estate_id == estate_id, BillingNotice.year == year
        )
    )
    seq = int(last or 0) + 1
    return seq, f"{NUMBER_PREFIX}-{year}-{seq:06d}"


def mask_name(name: str) -> str:
    """张三丰 → 张**: a notice may be posted on a door or a notice board, so the holder is masked."""
    name = name.strip()
    if not name:
        return "住户"
    return name[0] + "*" * max(1, len(name) - 1)


def yuan(fen: int | Decimal) -> str:
    return f"{(Decimal(fen) / 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def render(kind: NoticeKind | str, version: str, fields: Mapping[str, Any]) -> str:
    """The notice text from the template `kind`.`version` (the version stored on the notice)."""
    return _env.get_template(f"{NoticeKind(kind).value}.{version}.j2").render(**fields).strip() + "\n"


# --- facts about one household, for the text ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Household:
    account: BillingAccount
    estate: Estate
    unit_code: str
    building_code: str
    holder: str


def _household(session: Session, account: BillingAccount, estate: Estate) -> Household:
    unit_code, building_code = session.execute(
        select(Unit.code, Building.code)
        .join(Building, Building.id == Unit.building_id)
        .where(Unit.id == account.unit_id)
    ).one()
    owner = session.scalar(
        select(Resident.name)
        .where(Resident.unit_id == account.unit_id)
        .order_by((Resident.role == "owner").desc(), Resident.id)
        .limit(1)
    )
    return Household(account, estate, unit_code, building_code, mask_name(owner or ""))


def _price_text(session: Session, estate_id: int, at: datetime) -> str:
    tariff_id = session.scalar(
        select(Tariff.id)
        .where(Tariff.estate_id == estate_id, Tariff.effective_from <= at)
        .order_by(Tariff.effective_from.desc())
        .limit(1)
    )
    if tariff_id is None:
        return "未设定"
    tiers = session.execute(
        select(TariffTier.up_to_m3, TariffTier.price_fen_per_m3)
        .where(TariffTier.tariff_id == tariff_id)
        .order_by(TariffTier.seq)
    ).all()
    if len(tiers) == 1:
        return f"¥{yuan(tiers[0][1])}/m³"
    parts = []
    for up_to, price in tiers:
        parts.append(f"{'每月' + format(up_to, 'f') + ' m³ 以内' if up_to is not None else '以上'} ¥{yuan(price)}/m³")
    return "阶梯：" + "；".join(parts)


def _fields(
    session: Session,
    hh: Household,
    kind: NoticeKind,
    number: str,
    now: datetime,
    use: Usage,
    policy: NoticePolicy,
    *,
    pay_by: date | None,
    effective_at: datetime | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    tz = ZoneInfo(hh.estate.timezone)
    reading = session.execute(
        select(MeterReading.register, MeterReading.ts)
        .join(Device, Device.id == MeterReading.device_id)
        .where(Device.unit_id == hh.account.unit_id, Device.kind == METER_KIND, MeterReading.ts <= now)
        .order_by(MeterReading.ts.desc())
        .limit(1)
    ).first()
    volume = session.scalar(
        select(func.coalesce(func.sum(MeterCharge.volume_m3), 0)).where(
            MeterCharge.account_id == hh.account.id,
            MeterCharge.to_ts > now - timedelta(days=WINDOW_DAYS),
            MeterCharge.to_ts <= now,
        )
    )
    days_left = use.days_left
    out: dict[str, Any] = {
        "kind": kind.value,
        "title": TITLES[kind],
        "number": number,
        "estate_name": hh.estate.name,
        "issue_date": now.astimezone(tz).date().isoformat(),
        "as_of": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "building": hh.building_code,
        "unit": hh.unit_code,
        "holder": hh.holder,
        "reading": format(reading[0].quantize(Decimal("0.001")), "f") if reading else "—",
        "reading_at": reading[1].astimezone(tz).strftime("%Y-%m-%d %H:%M") if reading else "无读数",
        "window_days": WINDOW_DAYS,
        "volume": format(Decimal(volume or 0).quantize(Decimal("0.001")), "f"),
        "daily": yuan(use.daily_fen) if use.daily_fen is not None else "0.00",
        "price": _price_text(session, hh.estate.id, now),
        "balance": yuan(use.balance_fen),
        "balance_fen": use.balance_fen,
        "days_left": format(days_left, "f") if days_left is not None else None,
        "second_days": policy.second_days,
        "pay_by": pay_by.isoformat() if pay_by else "",
        "effective": effective_at.astimezone(tz).strftime("%Y年%m月%d日 %H:%M") if effective_at else "",
        "clause": policy.contract_clause,
    }
    out.update(extra or {})
    return out


def draft(
    session: Session,
    hh: Household,
    kind: NoticeKind,
    now: datetime,
    use: Usage,
    policy: NoticePolicy,
    *,
    actor: str,
    pay_by: date | None = None,
    effective_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> BillingNotice:
    """Number, render and store a draft notice (its text is fixed from here on)."""
    year = now.astimezone(ZoneInfo(hh.estate.timezone)).year
    seq, number = allocate_number(session, hh.estate.id, year)
    version = TEMPLATE_VERSION[kind]
    fields = _fields(session, hh, kind, number, now, use, policy, pay_by=pay_by, effective_at=effective_at, extra=extra)
    notice = BillingNotice(
        estate_id=hh.estate.id,
        account_id=hh.account.id,
        kind=kind.value,
        year=year,
        seq=seq,
        number=number,
        status=NoticeStatus.draft.value,
        balance_fen=use.balance_fen,
        daily_fen=use.daily_fen,
        pay_by=pay_by,
        effective_at=effective_at,
        template_version=f"{kind.value}.{version}",
        subject=f"{TITLES[kind]} {number}",
        body=render(kind, version, fields),
        fields={k: v for k, v in fields.items() if isinstance(v, str | int | type(None))},
        created_by=actor,
        created_at=now,
    )
    session.add(notice)
    session.flush()
    return notice


def draft_for(
    session: Session,
    account_id: int,
    kind: NoticeKind,
    *,
    now: datetime,
    actor: str,
    effective_at: datetime | None = None,
) -> BillingNotice:
    """Draft a notice for one household by hand (a clerk's reprint, the tests); the queue still approves it."""
    account = session.get(BillingAccount, account_id)
    if account is None or account.kind != AccountKind.hot_water.value:
        raise NotFound(f"billing account {account_id} not found / 热水账户不存在")
    estate = session.get(Estate, account.estate_id)
    assert estate is not None
    if kind in (NoticeKind.restriction, NoticeKind.suspension) and effective_at is None:
        raise InvalidInput("a restriction or suspension notice states its date / 限供、停供通知须载明日期")
    policy = policy_of(estate.policy)
    use = usage(session, [account.id], now)[account.id]
    tz = ZoneInfo(estate.timezone)
    extra = {
        "restricted_on": now.astimezone(tz).strftime("%Y年%m月%d日"),
        "paid_at": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "restored_at": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "paid": use.balance_fen > 0,
    }
    pay_by = now.astimezone(tz).date() + timedelta(days=policy.pay_by_days)
    hh = _household(session, account, estate)
    return draft(
        session, hh, kind, now, use, policy, actor=actor, pay_by=pay_by, effective_at=effective_at, extra=extra
    )


# --- dates the law allows -----------------------------------------------------------------------------


def first_action_time(session: Session, tz: str, not_before: datetime) -> datetime:
    """09:00 estate time of the first working day on or after `not_before`'s day (the date a notice states)."""
    zone = ZoneInfo(tz)
    day = not_before.astimezone(zone).date()
    if not_before.astimezone(zone).time() > ACTION_HOUR:
        day += timedelta(days=1)
    calendar = holidays.calendar_between(session, day, day + timedelta(days=60))
    while not holidays.is_working_day(day, calendar):
        day += timedelta(days=1)
    return datetime.combine(day, ACTION_HOUR, zone)


def _stated_date(session: Session, estate: Estate, now: datetime, period_days: int, margin_days: int) -> datetime:
    return first_action_time(session, estate.timezone, now + timedelta(days=period_days + margin_days))


# --- evaluation ---------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    drafted: list[BillingNotice] = field(default_factory=list)
    changes: list[supply.Change] = field(default_factory=list)
    # Why a household at or below zero was not restricted / suspended now (account id → reason code):
    # switch_off, vulnerable, no_notice, notice_not_sent, notice_period, night, weekend, holiday.
    held_back: dict[int, str] = field(default_factory=dict)


def _episode_start(session: Session, account: BillingAccount) -> datetime:
    """The last top-up (a new low-balance episode starts after it), else the account's opening."""
    last = session.scalar(select(func.max(Payment.received_at)).where(Payment.account_id == account.id))
    return last or account.opened_at


def _episode_notices(session: Session, account_id: int, since: datetime) -> list[BillingNotice]:
    return list(
        session.scalars(
            select(BillingNotice)
            .where(
                BillingNotice.account_id == account_id,
                BillingNotice.status != NoticeStatus.cancelled.value,
                BillingNotice.created_at >= since,
            )
            .order_by(BillingNotice.id)
        )
    )


def _qualifying(notices: list[BillingNotice], kind: NoticeKind, period_days: int) -> BillingNotice | None:
    """A SENT notice of `kind` whose stated date is at least `period_days` after it was sent."""
    for n in reversed(notices):
        if (
            n.kind == kind.value
            and n.status == NoticeStatus.sent.value
            and n.sent_at is not None
            and n.effective_at is not None
            and n.effective_at >= n.sent_at + timedelta(days=period_days)
        ):
            return n
    return None


def _guard(
    session: Session, notices: list[BillingNotice], kind: NoticeKind, period: int, now: datetime, tz: str
) -> tuple[BillingNotice | None, str | None]:
    """The notice a step rests on and, when the step may not be taken now, why."""
    notice = _qualifying(notices, kind, period)
    if notice is None:
        pending = any(n.kind == kind.value for n in notices)
        return None, "notice_not_sent" if pending else "no_notice"
    assert notice.effective_at is not None
    if now < notice.effective_at:
        return notice, "notice_period"
    local = now.astimezone(ZoneInfo(tz))
    calendar = holidays.calendar_between(session, local.date(), local.date())
    return notice, holidays.why_not_now(local, calendar)


def evaluate(session: Session, estate_id: int, now: datetime, *, actor: str = SYSTEM_ACTOR) -> Evaluation:
    """Draft the notices due and take the restriction/suspension/restoration steps due in one estate at `now`.

    The household accounts are locked (FOR UPDATE, in id order), so a payment racing with the evaluation
    is either committed before it — and seen, so no notice and no restriction — or waits until after it.
    """
    if now.tzinfo is None:
        raise InvalidInput("now needs a timezone")
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound(f"estate {estate_id} not found")
    policy = policy_of(estate.policy)
    accounts = session.scalars(
        select(BillingAccount)
        .where(BillingAccount.estate_id == estate_id, BillingAccount.kind == AccountKind.hot_water.value)
        .order_by(BillingAccount.id)
        .with_for_update()
    ).all()
    uses = usage(session, [a.id for a in accounts], now)
    out = Evaluation()
    for account in accounts:
        _evaluate_one(session, estate, account, uses[account.id], policy, now, actor, out)
    return out


def _evaluate_one(
    session: Session,
    estate: Estate,
    account: BillingAccount,
    use: Usage,
    policy: NoticePolicy,
    now: datetime,
    actor: str,
    out: Evaluation,
) -> None:
    balance = account.balance_fen
    state = supply.state_of(session, account.id)
    if state != SupplyState.normal:
        # Restore at once when paid up — and when the grounds are gone: the estate switched restriction off,
        # or the household was flagged vulnerable after it was restricted.
        why = (
            f"余额 ¥{yuan(balance)}，恢复供水"
            if balance > 0
            else "本小区已关闭限供，恢复供水"
            if not policy.restriction_enabled
            else "困难家庭，恢复供水"
            if supply.is_vulnerable(session, account)
            else None
        )
        if why is not None:
            out.changes.append(restore(session, account, now=now, actor=actor, reason=why))
            return
    days_left = use.days_left if balance > 0 else Decimal(0)
    low = balance < policy.renewal_fen or (days_left is not None and days_left < policy.renewal_days)
    if not low:
        return
    since = _episode_start(session, account)
    notices = _episode_notices(session, account.id, since)
    kinds = {n.kind for n in notices}
    hh: Household | None = None
    second = days_left is not None and days_left < policy.second_days
    want = NoticeKind.renewal_second if second else NoticeKind.renewal
    if want.value not in kinds and not (want == NoticeKind.renewal and NoticeKind.renewal_second.value in kinds):
        hh = _household(session, account, estate)
        pay_by = now.astimezone(ZoneInfo(estate.timezone)).date() + timedelta(days=policy.pay_by_days)
        out.drafted.append(draft(session, hh, want, now, use, policy, actor=actor, pay_by=pay_by))
    if balance > 0:
        return
    # The balance is spent: restriction and suspension, only within the law.
    if not policy.restriction_enabled:
        out.held_back[account.id] = "switch_off"
        return
    if supply.is_vulnerable(session, account):
        out.held_back[account.id] = "vulnerable"
        return
    if state == SupplyState.suspended:
        return
    if state == SupplyState.normal:
        kind, period, to = NoticeKind.restriction, policy.restriction_notice_days, SupplyState.restricted
        extra: dict[str, Any] = {}
    else:
        kind, period, to = NoticeKind.suspension, policy.suspension_notice_days, SupplyState.suspended
        # The suspension notice must come after the restriction took effect.
        restricted_at = session.scalar(
            select(func.max(BillingSupplyChange.at)).where(
                BillingSupplyChange.account_id == account.id,
                BillingSupplyChange.to_state == SupplyState.restricted.value,
            )
        )
        notices = [n for n in notices if restricted_at is None or n.created_at >= restricted_at]
        tz = ZoneInfo(estate.timezone)
        extra = {"restricted_on": (restricted_at or now).astimezone(tz).strftime("%Y年%m月%d日")}
    notice, why = _guard(session, notices, kind, period, now, estate.timezone)
    if why == "no_notice":
        hh = hh or _household(session, account, estate)
        stated = _stated_date(session, estate, now, period, policy.margin_days)
        out.drafted.append(draft(session, hh, kind, now, use, policy, actor=actor, effective_at=stated, extra=extra))
    if why is not None:
        out.held_back[account.id] = why
        return
    assert notice is not None
    reason = f"{TITLES[kind]} {notice.number}：余额 ¥{yuan(balance)}"
    out.changes.append(supply.change(session, account, to, now=now, actor=actor, reason=reason, notice_id=notice.id))
    notice.executed_at = now
    session.flush()


def evaluate_all(session: Session, now: datetime, *, actor: str = SYSTEM_ACTOR) -> dict[str, int]:
    """`evaluate` every estate with household accounts (the worker's periodic "notices" job)."""
    estate_ids = session.scalars(
        select(BillingAccount.estate_id)
        .where(BillingAccount.kind == AccountKind.hot_water.value)
        .distinct()
        .order_by(BillingAccount.estate_id)
    ).all()
    drafted = changed = 0
    for estate_id in estate_ids:
        result = evaluate(session, estate_id, now, actor=actor)
        drafted, changed = drafted + len(result.drafted), changed + len(result.changes)
    return {"estates": len(estate_ids), "drafted": drafted, "supply_changes": changed}


# --- restoration --------------------------------------------------------------------------------------


def restore(
    session: Session, account: BillingAccount, *, now: datetime, actor: str, reason: str | None = None
) -> supply.Change:
    """Back to normal supply at once: open the valves and draft the 恢复供水通知 (any hour, any day)."""
    change = supply.change(
        session,
        account,
        SupplyState.normal,
        now=now,
        actor=actor,
        reason=reason or f"余额 ¥{yuan(account.balance_fen)}，恢复供水",
    )
    estate = session.get(Estate, account.estate_id)
    assert estate is not None
    tz = ZoneInfo(estate.timezone)
    paid_at = session.scalar(select(func.max(Payment.received_at)).where(Payment.account_id == account.id)) or now
    use = usage(session, [account.id], now)[account.id]
    draft(
        session,
        _household(session, account, estate),
        NoticeKind.restoration,
        now,
        use,
        policy_of(estate.policy),
        actor=actor,
        extra={
            "paid_at": paid_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "restored_at": now.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            "paid": account.balance_fen > 0,
        },
    )
    return change


def on_payment(session: Session, account_id: int, *, at: datetime, actor: str) -> supply.Change | None:
    """Called by `service.record_payment` in the payment's transaction: restore a paid-up household at once."""
    account = session.get(BillingAccount, account_id)
    if account is None:
        return None
    session.refresh(account, ["balance_fen"])  # post() moved the cached balance with a SQL UPDATE
    if account.balance_fen <= 0 or supply.state_of(session, account_id) == SupplyState.normal:
        return None
    return restore(session, account, now=at, actor=actor)


# --- the queue: approve, send, cancel -----------------------------------------------------------------


def _get(session: Session, notice_id: int) -> BillingNotice:
    notice = session.scalars(select(BillingNotice).where(BillingNotice.id == notice_id).with_for_update()).one_or_none()
    if notice is None:
        raise NotFound(f"notice {notice_id} not found / 通知不存在")
    return notice


def _audit(session: Session, actor: str, action: str, notice: BillingNotice, **detail: Any) -> None:
    session.add(
        AuditLog(
            actor=actor,
            action=f"billing.notice.{action}",
            object=f"billing_notice:{notice.id}",
            detail={"number": notice.number, "kind": notice.kind, **detail},
            at=clock.now(),
        )
    )


def approve(session: Session, notice_id: int, *, actor: str) -> BillingNotice:
    """A person checks a draft and approves it for sending."""
    if not actor.strip():
        raise InvalidInput("actor is required / 须填写经办人")
    notice = _get(session, notice_id)
    if notice.status != NoticeStatus.draft.value:
        raise Conflict(f"notice {notice.number} is {notice.status}, not a draft / 仅草稿可审批")
    notice.status = NoticeStatus.approved.value
    notice.approved_by, notice.approved_at = actor, clock.now()
    _audit(session, actor, "approve", notice)
    session.flush()
    return notice


def cancel(session: Session, notice_id: int, *, actor: str, reason: str) -> BillingNotice:
    """Withdraw a notice not yet sent (a sent notice stays: it is proof of what the household was told)."""
    if not actor.strip() or not reason.strip():
        raise InvalidInput("actor and reason are required / 须填写经办人和原因")
    notice = _get(session, notice_id)
    if notice.status not in (NoticeStatus.draft.value, NoticeStatus.approved.value):
        raise Conflict(f"notice {notice.number} is {notice.status}; only a draft or approved notice can be cancelled")
    notice.status = NoticeStatus.cancelled.value
    notice.cancelled_by, notice.cancelled_at = actor, clock.now()
    _audit(session, actor, "cancel", notice, reason=reason.strip())
    session.flush()
    return notice


PERIOD_DAYS = {NoticeKind.restriction: "restriction_notice_days", NoticeKind.suspension: "suspension_notice_days"}


def deliver(session: Session, notice: BillingNotice, *, actor: str) -> BillingNotice:
    """Send an approved notice: the ONE place a notice leaves the building; marks it sent and records it.

    A restriction or suspension notice is refused when the date it states is less than the notice period
    (15 / 3 days, or the estate's longer one) away: sent now it would not be the prior notice the law asks for.
    """
    if notice.status != NoticeStatus.approved.value:
        raise Conflict(f"notice {notice.number} is {notice.status}; only an approved notice is sent / 须先审批")
    now = clock.now()
    kind = NoticeKind(notice.kind)
    if kind in PERIOD_DAYS:
        estate = session.get(Estate, notice.estate_id)
        assert estate is not None
        assert notice.effective_at is not None
        days = getattr(policy_of(estate.policy), PERIOD_DAYS[kind])
        if notice.effective_at < now + timedelta(days=days):
            raise Conflict(
                f"notice {notice.number} states {notice.effective_at.isoformat()}, less than {days} days from now; "
                f"cancel it and let the next evaluation draft a new one / 载明日期距今不足 {days} 天，请作废后重新生成"
            )
    _hand_over(session, notice, now)
    notice.status = NoticeStatus.sent.value
    notice.sent_by, notice.sent_at = actor, now
    _audit(session, actor, "send", notice)
    session.flush()
    return notice


# The stewards (管家) hand a notice to the household and the clerk answers for it; both hear of it by e-mail, the
# estate's WeCom group sees it, and the log always has it. (Residents have a phone number, not an address: an SMS
# gateway is the outside part a deployment plugs in as another channel.)
NOTICE_ROLES = ("steward", "billing_clerk")


def _hand_over(session: Session, notice: BillingNotice, now: datetime) -> list[int]:
    """Queue the notice's deliveries in this transaction, keyed by the notice so it is never sent twice."""
    key = f"billing_notice:{notice.id}"
    targets = [(LOG, "billing", notice.body), (WECOM_ROBOT, f"estate:{notice.estate_id}", notice.body)]
    targets += [(EMAIL, address, notice.body) for address in staff_emails(session, notice.estate_id, NOTICE_ROLES)]
    return [
        enqueue(
            session,
            key=key,
            channel=channel,
            recipient=recipient,
            subject=notice.subject,
            body=body,
            source="billing_notice",
            at=now,
            estate_id=notice.estate_id,
        )
        for channel, recipient, body in targets
    ]


def send(session: Session, notice_id: int, *, actor: str) -> BillingNotice:
    """Deliver one approved notice by id (the queue's "send" button)."""
    if not actor.strip():
        raise InvalidInput("actor is required / 须填写经办人")
    return deliver(session, _get(session, notice_id), actor=actor)
