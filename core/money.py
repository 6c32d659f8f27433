"""Money is integer fen (分) or Decimal quantised to the fen; never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

FEN = Decimal("0.01")


def yuan_to_fen(yuan: Decimal | str | int) -> int:
    if isinstance(yuan, float):
        raise TypeError("money must not be float")
    return int((Decimal(yuan) / FEN).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fen_to_yuan(fen: int) -> Decimal:
    return (Decimal(fen) * FEN).quantize(FEN)
