"""Wiegand 26/34 forms of a UID, against frames worked out bit by bit."""

from __future__ import annotations

import pytest

from access.wiegand import wiegand26, wiegand34


def test_wiegand26_facility_1_card_1() -> None:
    # Data 00000001 0000000000000001: the first 12 bits hold one 1 → even parity 1; the last 12 one 1 → odd parity 0.
    w = wiegand26("00010001")
    assert (w.facility, w.number) == (1, 1)
    assert w.frame == "1" + "00000001" + "0000000000000001" + "0"
    assert w.printed == "001,00001"


def test_wiegand26_takes_the_low_24_bits_as_read() -> None:
    # 04A1B2C3 → A1B2C3: facility 0xA1 = 161, card 0xB2C3 = 45763.
    w = wiegand26("04A1B2C3")
    assert (w.facility, w.number, w.printed) == (161, 45763, "161,45763")
    data = "101000011011001011000011"
    # first 12 bits 101000011011 have six 1s → even parity 0; last 12 001011000011 have five → odd parity 0.
    assert w.frame == "0" + data + "0"
    assert w.value == int(w.frame, 2)
    assert len(w.frame) == 26


def test_wiegand26_all_ones_and_zeros() -> None:
    assert wiegand26("FFFFFF").frame == "0" + "1" * 24 + "1"  # 12 ones: even → 0; 12 ones: odd needs 1
    assert wiegand26("000000").frame == "0" + "0" * 24 + "1"


def test_wiegand34() -> None:
    w = wiegand34("04A1B2C3")
    assert w.number == 0x04A1B2C3 == 77705923
    assert w.printed == "77705923"
    # 0x04A1 = 0000010010100001 has four 1s → even parity 0; 0xB2C3 = 1011001011000011 has eight → odd parity 1.
    assert w.frame == "0" + format(0x04A1B2C3, "032b") + "1"
    assert len(w.frame) == 34
    # A 7-byte UID keeps its low 4 bytes.
    assert wiegand34("04112233A1B2C3").number == 0x33A1B2C3


@pytest.mark.parametrize("bad", ["", "XYZ", "12 34"])
def test_not_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="not a hex UID"):
        wiegand26(bad)
