"""Billing vocabulary: account kinds, payment methods, transaction kinds, hold states, advisory-lock spaces."""

from __future__ import annotations

from enum import StrEnum


class AccountKind(StrEnum):
    hot_water = "hot_water"  # a household's prepaid hot-water account (one per unit): a liability
    cash_counter = "cash_counter"  # 收费处现金/刷卡
    cash_bank_transfer = "cash_bank_transfer"  # 银行转账
    cash_online = "cash_online"  # 线上支付
    revenue_hot_water = "revenue_hot_water"  # 热水费收入
    adjustments = "adjustments"  # 调账: the other side of manual corrections
    revenue_access_cards = "revenue_access_cards"  # 门禁卡工本费收入 (extra cards, renovation-pass fees)
    deposits_held = "deposits_held"  # 押金 held for renovation passes: a liability until refunded or kept
    revenue_forfeits = "revenue_forfeits"  # 押金没收: a pass lost or not returned


class PaymentMethod(StrEnum):
    counter = "counter"
    bank_transfer = "bank_transfer"
    online = "online"


CASH_ACCOUNT = {
    PaymentMethod.counter: AccountKind.cash_counter,
    PaymentMethod.bank_transfer: AccountKind.cash_bank_transfer,
    PaymentMethod.online: AccountKind.cash_online,
}


class TransactionKind(StrEnum):
    payment = "payment"
    charge = "charge"
    refund = "refund"
    adjustment = "adjustment"
    fee = "fee"  # a card's fee, paid at the desk (billing/fees.py)
    deposit = "deposit"  # a renovation pass's deposit received
    deposit_refund = "deposit_refund"  # … paid back on return
    deposit_forfeit = "deposit_forfeit"  # … kept: the pass was lost or not returned in time


class HoldStatus(StrEnum):
    held = "held"
    confirmed = "confirmed"


class HoldKind(StrEnum):
    reset = "reset"
    replacement = "replacement"


METER_KIND = "hot_water_meter"
SYSTEM_ACTOR = "system"
# pg_advisory_xact_lock(space, device_id) serialises charging of one meter across runs and processes.
CHARGE_LOCK_SPACE = 0x62696C6C  # "bill"


class NoticeKind(StrEnum):
    renewal = "renewal"  # 《热水续费通知书》: balance below 30 days of average use or ¥50
    renewal_second = "renewal_second"  # 第二次续费通知: below 7 days
    restriction = "restriction"  # 限供通知: states the date supply will be restricted
    suspension = "suspension"  # 停供通知: states the date, ≥ 3 days ahead, only after restriction
    restoration = "restoration"  # 恢复供水通知


class NoticeStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    sent = "sent"
    cancelled = "cancelled"


class SupplyState(StrEnum):
    normal = "normal"
    restricted = "restricted"  # 限供
    suspended = "suspended"  # 停供


# pg_advisory_xact_lock(space, estate_id) serialises notice-number allocation within one estate.
NOTICE_LOCK_SPACE = 0x6E6F7463  # "notc"


# pg_advisory_xact_lock(space, estate_id): closing a quarter takes it exclusively; every charger takes it
# shared (after its meter locks), so no charge commits into a quarter while it is being closed.
PERIOD_LOCK_SPACE = 0x70657264  # "perd"
# pg_advisory_xact_lock(space, estate_id) serialises statement writing within one estate.
STATEMENT_LOCK_SPACE = 0x73746D74  # "stmt"


class PeriodStatus(StrEnum):
    open = "open"
    closed = "closed"
