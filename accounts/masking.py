"""Masking residents' personal data for roles that do not need it."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """张三丰 → 张**; keeps the surname, which staff use to address people politely."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678 (the form Chinese services print on receipts)."""
    digits = phone.strip()
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
