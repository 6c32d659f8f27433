"""What the fleet emits: ``Frame`` (wire bytes plus an oracle label) and the payload encoders.

Payloads are written with ``json.dumps`` in a fixed key order rather than through the pydantic models:
the simulator plays the device, so it controls the exact bytes (and can break them on purpose), while
the tests check every intended-valid payload against ``protocol.payloads.decode_uplink``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal

from protocol.topics import Channel

# What the platform should do with a frame, for test oracles:
#   store       valid and in the acceptance window: stored exactly once
#   duplicate   byte-identical re-send of an earlier frame: absorbed by the device-time unique key
#   dead_letter not a valid v1 payload for its topic/channel
#   quarantine  valid payload but unknown device or a timestamp outside [now − 30 d, now + 5 min] / naive
Expect = Literal["store", "duplicate", "dead_letter", "quarantine"]
EXPECTS: tuple[Expect, ...] = ("store", "duplicate", "dead_letter", "quarantine")
TsFormat = Literal["iso", "epoch_ms"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One MQTT PUBLISH the fleet wants sent at simulated time ``at``."""

    topic: str
    payload: bytes
    device: str
    channel: str  # a Channel value, or something else on purpose (malformed scenario)
    at: datetime  # simulated send time; the payload's ``ts`` may differ (late, bad_time, upload delay)
    expect: Expect = "store"
    scenario: str | None = None  # the fault scenario that shaped this frame, if any
    tags: tuple[str, ...] = ()  # finer labels, e.g. ("rollover",), ("malformed", "nan")
    meta: tuple[tuple[str, str], ...] = ()  # facts the wire cannot carry, e.g. (("serial", "…"),)

    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)


@dataclass(frozen=True, slots=True)
class Reading:
    """A device's observation before sequencing and encoding (what a model produces)."""

    ts: datetime
    channel: Channel
    body: dict[str, Any]  # the channel's fields except v, ts and seq, in wire order
    upload_delay_s: float = 0.0  # metering modules freeze at :00/:15 and upload a little later
    scenario: str | None = None
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    # Set by the bad_time scenario: the exact ``ts`` to put on the wire instead of ``ts``.
    wire_ts: str | int | None = None
    expect: Expect = "store"


@dataclass(frozen=True, slots=True)
class RawEmission:
    """Bytes a model wants sent as they are (malformed payloads, unknown devices)."""

    at: datetime
    channel: str
    payload: bytes
    expect: Expect
    scenario: str | None = None
    tags: tuple[str, ...] = ()
    device: str | None = None  # defaults to the emitting model's device code


Emission = Reading | RawEmission


@dataclass
class TsEncoder:
    """Renders device time the way the estate's devices send it."""

    tz: tzinfo
    fmt: TsFormat = "iso"

    def __call__(self, ts: datetime) -> str | int:
        if self.fmt == "epoch_ms":
            return int(ts.timestamp() * 1000)
        return ts.astimezone(self.tz).isoformat(timespec="seconds")

    def naive(self, ts: datetime) -> str:
        """Local wall time without an offset: what a device with a misconfigured clock sends."""
        return ts.astimezone(self.tz).replace(tzinfo=None).isoformat(timespec="seconds")


def dumps(obj: object) -> bytes:
    # Compact, ASCII-only and key-order preserving: identical inputs give identical bytes.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode()


def encode_payload(ts: str | int, seq: int | None, body: dict[str, Any]) -> bytes:
    head: dict[str, Any] = {"v": 1, "ts": ts}
    if seq is not None:
        head["seq"] = seq
    return dumps({**head, **body})


def register_text(value: Decimal) -> str:
    """A register on the wire: fixed-point decimal text, never exponent notation."""
    return format(value, "f")


@dataclass
class FrameCounts:
    """Tally of frames by expectation, channel and scenario (used by run stats and tests)."""

    total: int = 0
    by_expect: dict[str, int] = field(default_factory=dict)
    by_channel: dict[str, int] = field(default_factory=dict)
    by_scenario: dict[str, int] = field(default_factory=dict)

    def add(self, frame: Frame) -> None:
        self.total += 1
        self.by_expect[frame.expect] = self.by_expect.get(frame.expect, 0) + 1
        self.by_channel[frame.channel] = self.by_channel.get(frame.channel, 0) + 1
        if frame.scenario:
            self.by_scenario[frame.scenario] = self.by_scenario.get(frame.scenario, 0) + 1
