"""Wiegand 26 and 34 forms of a card UID, for controllers that take Wiegand numbers instead of the raw UID.

A reader wired as Wiegand sends the UID's low bits as read (big-endian, the order of the hex string):
- 26 bits: P_even + 8-bit facility code + 16-bit card number + P_odd, over the UID's low 24 bits; the even
  parity covers the first 12 data bits, the odd parity the last 12. Printed as "FFF,NNNNN" (e.g. 161,45763).
- 34 bits: P_even + 32 data bits + P_odd over the UID's low 32 bits; parities over 16 bits each.
Both lose the UID's high bytes, so two cards may share a Wiegand number: the UID stays the key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Wiegand:
    bits: int  # 26 or 34
    value: int  # the whole frame, parity bits included, as an integer
    facility: int | None  # 26-bit: the facility (site) code
    number: int  # 26-bit: the 16-bit card number; 34-bit: the 32 data bits

    @property
    def frame(self) -> str:
        """The frame as a bit string, first bit sent first."""
        return format(self.value, f"0{self.bits}b")

    @property
    def printed(self) -> str:
        """As card printers and controller menus show it: 'FFF,NNNNN' (26) or the decimal number (34)."""
        return f"{self.facility:03d},{self.number:05d}" if self.facility is not None else str(self.number)


def _parity_frame(data: int, data_bits: int) -> int:
    half = data_bits // 2
    first, second = data >> half, data & ((1 << half) - 1)
    even = bin(first).count("1") % 2  # makes the first half plus this bit even
    odd = 1 - bin(second).count("1") % 2  # makes the second half plus this bit odd
    return (even << (data_bits + 1)) | (data << 1) | odd


def _uid_int(uid: str) -> int:
    if not uid or any(c not in "0123456789ABCDEFabcdef" for c in uid):
        raise ValueError(f"not a hex UID: {uid!r}")
    return int(uid, 16)


def wiegand26(uid: str) -> Wiegand:
    data = _uid_int(uid) & 0xFFFFFF
    return Wiegand(26, _parity_frame(data, 24), data >> 16, data & 0xFFFF)


def wiegand34(uid: str) -> Wiegand:
    data = _uid_int(uid) & 0xFFFFFFFF
    return Wiegand(34, _parity_frame(data, 32), None, data)
