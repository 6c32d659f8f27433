"""Access-card vocabulary and the per-estate defaults (domain-defaults §6, seeds/002 智能卡管理, seeds/004)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class CardType(StrEnum):
    owner = "owner"  # 业主卡
    family = "family"  # 家属卡
    tenant = "tenant"  # 租户卡: ends with the lease
    renovation = "renovation"  # 装修出入证: ends with the renovation permit; fee + deposit
    visitor = "visitor"  # 访客卡: at most 24 h
    staff = "staff"  # 员工卡: doors by role


class CardStatus(StrEnum):
    active = "active"
    lost = "lost"  # 挂失: off every whitelist at once
    revoked = "revoked"  # 注销 (move-out, by hand)
    expired = "expired"  # its validity ended (the access_expiry job)
    returned = "returned"  # 退卡


class DepositState(StrEnum):
    none = "none"
    held = "held"
    refunded = "refunded"
    forfeited = "forfeited"


class DoorKind(StrEnum):
    gate = "gate"  # 小区大门 / 人行门
    building = "building"  # 楼栋门
    unit_entrance = "unit_entrance"  # 单元门
    garage = "garage"  # 车库
    equipment_room = "equipment_room"  # 设备房


class CardFormat(StrEnum):
    """Card technologies by UID length in hex digits (the UID is unique per format among live cards)."""

    mifare4 = "mifare4"  # MIFARE Classic 4-byte NUID: 8 hex digits
    mifare7 = "mifare7"  # MIFARE 7-byte UID (Ultralight, DESFire): 14 hex digits
    em4100 = "em4100"  # 125 kHz EM4100: 5 bytes, 10 hex digits


UID_HEX_DIGITS = {CardFormat.mifare4: 8, CardFormat.mifare7: 14, CardFormat.em4100: 10}

# Cards of a household (owner, family and tenant cards): free up to the registered occupants, at most this many.
FREE_CARDS_MAX = 3
HOUSEHOLD_TYPES = frozenset({CardType.owner, CardType.family, CardType.tenant})
VISITOR_MAX = timedelta(hours=24)

# Per-estate settings in estates.policy (integer fen), with these defaults. The SOP gives no figures:
# ¥5 + ¥20 for a renovation pass is domain-defaults §6's example; ¥20 an extra card is ours.
EXTRA_CARD_FEE_KEY, EXTRA_CARD_FEE_FEN = "access_extra_card_fee_fen", 2000
RENOVATION_FEE_KEY, RENOVATION_FEE_FEN = "access_renovation_fee_fen", 500
RENOVATION_DEPOSIT_KEY, RENOVATION_DEPOSIT_FEN = "access_renovation_deposit_fen", 2000
# Days after the permit's end in which a returned pass still gets its deposit back (seeds/004 keeps it after).
RENOVATION_GRACE_KEY, RENOVATION_GRACE_DAYS = "access_renovation_grace_days", 7

SYSTEM_ACTOR = "system"
# Swipe logs are whereabouts (PIPL Art. 28): kept this many days by default, per estate in estates.policy.
SWIPE_RETENTION_KEY, SWIPE_RETENTION_DAYS = "access_swipe_retention_days", 180
