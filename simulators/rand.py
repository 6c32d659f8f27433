"""Deterministic randomness keyed by names, not by call order.

Every draw is a pure function of (seed, key parts): a device's reading at interval k depends only on
the seed, the device code and k. That is what makes a fleet's output byte-identical for a seed,
independent of the tick step, of which other devices exist and of which scenarios are enabled.
Python's ``random.Random`` (Mersenne Twister) is specified bit-for-bit, so the streams are portable.
"""

from __future__ import annotations

import hashlib
import math
import random


def derive(seed: int, *parts: object) -> int:
    """A 64-bit integer derived from the seed and the key parts (stable across runs and platforms)."""
    text = "\x1f".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def rng(seed: int, *parts: object) -> random.Random:
    """A private random stream for one key, e.g. ``rng(seed, "E-1-1-101", k)``."""
    return random.Random(derive(seed, *parts))


def poisson(r: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small rates used here (events per interval)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1
