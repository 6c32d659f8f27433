"""Household demand curves: how much a flat uses at a given local time.

Figures are typical of a Hangzhou flat (about 12 kWh of electricity, 90 L of cold and 35 L of hot water
per person-day at the meter), not measurements. Water is drawn in discrete events (a flush, a shower)
rather than as a continuous trickle, so a normal household shows the zero-flow night hours that the
leak rules (domain-defaults §3) rely on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from simulators.rand import poisson

Hourly = tuple[float, ...]  # 24 values, at 00:00 … 23:00 local time; interpolated in between

# 24-value tables read best as rows.
# fmt: off
# kW drawn by a 3-person flat on a spring weekday: fridge/standby base, breakfast, dinner and TV peaks.
ELECTRIC_KW: Hourly = (
    0.22, 0.19, 0.18, 0.18, 0.18, 0.22, 0.45, 0.85, 0.70, 0.40, 0.35, 0.45,
    0.60, 0.45, 0.35, 0.35, 0.40, 0.70, 1.15, 1.45, 1.50, 1.30, 0.95, 0.45,
)
# Air conditioning dominates Hangzhou's summer, heaters and electric blankets its winter.
ELECTRIC_SEASON = (1.35, 1.25, 1.0, 0.9, 0.95, 1.2, 1.6, 1.65, 1.2, 0.9, 0.95, 1.25)  # by month
# Renovation crews work 08–12 and 14–18 on weekdays (typical estate renovation rules), tools intermittent.
RENOVATION_KW: Hourly = (
    0, 0, 0, 0, 0, 0, 0, 0, 1.4, 1.6, 1.6, 1.2, 0.1, 0.1, 1.4, 1.6, 1.5, 1.0, 0, 0, 0, 0, 0, 0,
)

# Relative likelihood of a water draw by hour.
TOILET: Hourly = (
    .15, .1, .08, .08, .1, .3, 1.6, 2.0, 1.2, .7, .6, .7, .9, .7, .6, .6, .7, .9, 1.1, 1.3, 1.4, 1.3, 1.0, .5,
)
BASIN: Hourly = (
    .05, .02, .02, .02, .05, .3, 1.8, 2.2, 1.0, .5, .5, .6, .8, .6, .4, .4, .5, .8, 1.0, 1.2, 1.4, 1.6, 1.4, .5,
)
KITCHEN: Hourly = (
    0, 0, 0, 0, 0, .1, 1.0, 1.4, .6, .2, .3, 1.2, 1.6, .6, .2, .2, .4, 1.4, 2.2, 1.6, .8, .4, .2, 0,
)
SHOWER: Hourly = (
    .1, 0, 0, 0, 0, .1, .8, 1.0, .4, .1, .05, .05, .05, .05, .05, .1, .1, .2, .6, 1.6, 2.6, 2.8, 2.0, .8,
)
LAUNDRY: Hourly = (
    0, 0, 0, 0, 0, 0, .3, .8, 1.2, 1.4, 1.0, .6, .4, .4, .4, .4, .4, .6, .8, 1.2, 1.4, 1.0, .4, 0,
)
# fmt: on


@dataclass(frozen=True, slots=True)
class WaterUse:
    name: str
    litres: float  # mean volume of one draw
    spread: float  # relative standard deviation of the volume
    per_person_day: float  # draws per person per day
    hourly: Hourly


COLD_WATER: tuple[WaterUse, ...] = (
    WaterUse("toilet", 6.0, 0.15, 5.0, TOILET),
    WaterUse("basin", 2.5, 0.5, 4.0, BASIN),
    WaterUse("kitchen", 8.0, 0.5, 2.0, KITCHEN),
    WaterUse("shower_mix", 25.0, 0.3, 0.7, SHOWER),  # the cold share of a mixed shower
    WaterUse("laundry", 45.0, 0.2, 0.25, LAUNDRY),
)
# Hot water is drawn mostly for evening (and some morning) showers.
HOT_WATER: tuple[WaterUse, ...] = (
    WaterUse("shower", 35.0, 0.3, 0.75, SHOWER),
    WaterUse("basin", 1.5, 0.5, 3.0, BASIN),
    WaterUse("kitchen", 4.0, 0.5, 1.0, KITCHEN),
)
# Renovation crews: mixing mortar, cleaning tools.
RENOVATION_WATER: tuple[WaterUse, ...] = (WaterUse("site", 12.0, 0.5, 6.0, RENOVATION_KW),)


def at_hour(profile: Hourly, hour: float) -> float:
    """Linear interpolation of an hourly profile at a fractional local hour (wraps at midnight)."""
    i = int(hour) % 24
    frac = hour - int(hour)
    return profile[i] * (1 - frac) + profile[(i + 1) % 24] * frac


def local_hour(local: datetime) -> float:
    return local.hour + local.minute / 60 + local.second / 3600


def is_workday(local: datetime) -> bool:
    return local.weekday() < 5  # public holidays are not modelled


def household_kw(local: datetime, persons: int) -> float:
    """Mean electrical demand of an occupied flat (kW) at a local time."""
    hour = local_hour(local)
    kw = at_hour(ELECTRIC_KW, hour) * ELECTRIC_SEASON[local.month - 1]
    if not is_workday(local) and 9 <= hour < 17:
        kw *= 1.35  # people are at home during the day at weekends
    return kw * (0.55 + 0.15 * persons)


def renovation_kw(local: datetime) -> float:
    return at_hour(RENOVATION_KW, local_hour(local)) if is_workday(local) else 0.0


def pv_kw(local: datetime, kwp: float, cloud: float) -> float:
    """Rooftop PV output: a clear-sky bell between 06:00 and 18:00 scaled by the day's cloudiness."""
    hour = local_hour(local)
    if not 6 <= hour <= 18:
        return 0.0
    bell: float = math.sin(math.pi * (hour - 6) / 12) ** 1.3
    return kwp * 0.8 * bell * cloud


def water_draws_litres(
    r: random.Random, uses: tuple[WaterUse, ...], persons: float, local_mid: datetime, hours: float
) -> float:
    """Litres drawn during an interval of ``hours`` centred on ``local_mid`` (Poisson draw events)."""
    if persons <= 0:
        return 0.0
    hour = local_hour(local_mid)
    total = 0.0
    for use in uses:
        weight = at_hour(use.hourly, hour) / (sum(use.hourly) or 1.0)
        lam = use.per_person_day * persons * weight * hours
        for _ in range(poisson(r, lam)):
            total += use.litres * max(0.3, 1 + use.spread * r.gauss(0, 1))
    return total


def shape(profile: Hourly, hour: float) -> float:
    """A profile rescaled to about −1…+1 around its mean (for sensor values that follow demand)."""
    mean = sum(profile) / len(profile)
    span = (max(profile) - min(profile)) / 2 or 1.0
    return (at_hour(profile, hour) - mean) / span


def heating_shape(hour: float) -> float:
    """+1 in the cold small hours (05:00), −1 in the warm afternoon (17:00): drives heating supply temps."""
    return math.cos(2 * math.pi * (hour - 5) / 24)


def daytime_shape(hour: float) -> float:
    """+1 at 15:00, −1 at 03:00: rooms warm up in the afternoon."""
    return math.cos(2 * math.pi * (hour - 15) / 24)
