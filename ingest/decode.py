"""Turn a batch of raw MQTT messages into rows to write, dead letters and quarantined messages.

Pure apart from the registry lookups: no I/O, so every branch is unit-testable without a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from ingest.messages import RawMessage
from ingest.ratelimit import DeviceRateLimiter
from ingest.registry import DeviceInfo, DeviceRegistry
from protocol.payloads import (
    AckV1,
    DoorEventV1,
    MeterReadingV1,
    PayloadError,
    StatusV1,
    SwipeV1,
    TelemetryV1,
    WhitelistStateV1,
    decode_uplink,
)
from protocol.topics import TopicError, UplinkTopic, parse_uplink

# Oversized payloads keep only this much of their bytes in the dead letter, enough to identify the sender.
DEAD_LETTER_KEEP_BYTES = 4096
# quarantined_messages.device_code is varchar(128); a topic level may be far longer (the topic keeps it all).
QUARANTINE_DEVICE_CODE_MAX = 128
# access_events.card_uid of a door event (held or forced open): no card was presented.
NO_CARD = ""


class Reason:
    """Quarantine reasons (stored verbatim; the dashboards translate them)."""

    unknown_device = "unknown_device"
    estate_mismatch = "estate_mismatch"
    unknown_metric = "unknown_metric"
    ts_without_timezone = "ts_without_timezone"
    ts_too_old = "ts_too_old"
    ts_in_future = "ts_in_future"
    rate_limited = "rate_limited"  # the device floods past its reporting interval (ingest/ratelimit.py)


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    received_at: datetime
    topic: str
    payload: bytes
    error: str


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    received_at: datetime
    topic: str
    device_code: str
    payload: bytes
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AckRow:
    """A device's answer to an outbox command: ``status`` applied/rejected/expired, the refusal's ``reason``."""

    command_id: str
    status: str
    received_at: datetime
    device_id: int  # the device whose topic the ack came on (only that device's command can be answered)
    reason: str | None = None
    acl_version: int | None = None  # whitelist commands: the version the controller holds now


@dataclass(frozen=True, slots=True)
class WhitelistReport:
    """What a door controller says it holds (``WhitelistStateV1``), from a status frame or an ack.

    ``reported_at`` orders reports: a status's device time; an ack carries none, so its arrival time.
    ``command_id``: the ack's command (its state counts only when that ack is the command's first answer)."""

    device_id: int
    version: int
    digest: str
    entries: int
    reported_at: datetime
    received_at: datetime
    via: str  # 'status' | 'ack'
    command_id: str | None = None


@dataclass(slots=True)
class DecodedBatch:
    # samples: parallel columns, ready for unnest()
    sample_ts: list[datetime] = field(default_factory=list)
    sample_point: list[int] = field(default_factory=list)
    sample_value: list[float] = field(default_factory=list)
    meters: list[tuple[datetime, int, Decimal, Decimal | None, str | None, list[str], int | None, datetime]] = field(
        default_factory=list
    )
    swipes: list[tuple[datetime, int, str, str, bool, str | None, int | None, datetime]] = field(default_factory=list)
    statuses: list[tuple[int, datetime, bool, float | None]] = field(default_factory=list)
    acks: list[AckRow] = field(default_factory=list)  # in arrival order (the first answer wins)
    whitelists: list[WhitelistReport] = field(default_factory=list)  # in arrival order
    # per device: (max device ts, seqs seen in this batch)
    seen: dict[int, tuple[datetime, list[int]]] = field(default_factory=dict)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    quarantined: list[QuarantineRow] = field(default_factory=list)
    messages: int = 0
    rate_limited: int = 0  # of `quarantined`: over the device's rate limit

    @property
    def readings(self) -> int:
        return len(self.sample_ts) + len(self.meters) + len(self.swipes)


class Decoder:
    def __init__(
        self,
        registry: DeviceRegistry,
        *,
        accept_past: timedelta,
        accept_future: timedelta,
        max_payload_bytes: int,
        limiter: DeviceRateLimiter | None = None,
    ) -> None:
        self.registry = registry
        self.limiter = limiter
        self.accept_past = accept_past
        self.accept_future = accept_future
        self.max_payload_bytes = max_payload_bytes

    def unknown_codes(self, messages: Sequence[RawMessage]) -> set[str]:
        """Device codes in these messages the registry does not know (to reload it before decoding)."""
        codes = set()
        for m in messages:
            parts = m.topic.split("/")
            if len(parts) == 5 and self.registry.get(parts[3]) is None:
                codes.add(parts[3])
        return codes

    def decode(self, messages: Sequence[RawMessage]) -> DecodedBatch:
        out = DecodedBatch(messages=len(messages))
        for m in messages:
            # Judge the device clock against the arrival time, not "now": a batch retried after a
            # long database outage must not quarantine readings that were fresh when they arrived.
            self._one(m, out, m.received_at - self.accept_past, m.received_at + self.accept_future)
        return out

    def _one(self, m: RawMessage, out: DecodedBatch, oldest: datetime, newest: datetime) -> None:
        if len(m.payload) > self.max_payload_bytes:
            out.dead_letters.append(
                DeadLetterRow(
                    m.received_at,
                    m.topic,
                    m.payload[:DEAD_LETTER_KEEP_BYTES],
                    f"payload too large: {len(m.payload)} bytes > limit {self.max_payload_bytes} (first "
                    f"{DEAD_LETTER_KEEP_BYTES} bytes kept)",
                )
            )
            return
        try:
            topic = parse_uplink(m.topic)
            readings = decode_uplink(topic.channel, m.payload)
        except (TopicError, PayloadError) as exc:
            out.dead_letters.append(DeadLetterRow(m.received_at, m.topic, m.payload, str(exc)))
            return
        device = self.registry.get(topic.device)
        if device is None:
            self._quarantine(out, m, topic, Reason.unknown_device, "device code not registered in any estate")
            return
        if device.estate != topic.estate:
            self._quarantine(
                out,
                m,
                topic,
                Reason.estate_mismatch,
                f"device belongs to estate {device.estate!r}, not {topic.estate!r}",
            )
            return
        if self.limiter is not None:
            # One token per message of periodic readings, at its first timestamp. Swipes, door events, statuses
            # and acks are events with no interval to hold them to (a busy gate at rush hour is not a flood).
            first = next(
                (r.ts for r in readings if isinstance(r, TelemetryV1 | MeterReadingV1) and r.ts.tzinfo is not None),
                None,
            )
            if first is not None and not self.limiter.allow(device.id, device.interval_s, first):
                self._quarantine(out, m, topic, Reason.rate_limited, self.limiter.detail(device.interval_s))
                out.rate_limited += 1
                return
        for index, reading in enumerate(readings):
            if isinstance(reading, AckV1):
                self._ack(out, m, device, reading)
                continue
            ts = reading.ts
            where = f"item {index}: " if len(readings) > 1 else ""
            if ts.tzinfo is None:
                self._quarantine(out, m, topic, Reason.ts_without_timezone, f"{where}ts {ts.isoformat()} has no offset")
                continue
            if ts < oldest:
                self._quarantine(
                    out, m, topic, Reason.ts_too_old, f"{where}ts {ts.isoformat()} before {oldest:%Y-%m-%dT%H:%M:%SZ}"
                )
                continue
            if ts > newest:
                self._quarantine(
                    out, m, topic, Reason.ts_in_future, f"{where}ts {ts.isoformat()} after {newest:%Y-%m-%dT%H:%M:%SZ}"
                )
                continue
            self._seen(out, device, ts, reading.seq)
            if isinstance(reading, TelemetryV1):
                self._telemetry(out, m, topic, device, reading, where)
            elif isinstance(reading, MeterReadingV1):
                out.meters.append(
                    (
                        ts,
                        device.id,
                        reading.reading,
                        reading.reverse_register,
                        reading.valve,
                        list(reading.flags),
                        reading.seq,
                        m.received_at,
                    )
                )
            elif isinstance(reading, SwipeV1):
                out.swipes.append(
                    (
                        ts,
                        device.id,
                        reading.door,
                        reading.card,
                        reading.granted,
                        reading.reason,
                        reading.seq,
                        m.received_at,
                    )
                )
            elif isinstance(reading, StatusV1):
                out.statuses.append((device.id, ts, reading.online, reading.battery_v))
                if reading.whitelist is not None:
                    out.whitelists.append(_report(device.id, reading.whitelist, ts, m.received_at, "status"))
            elif isinstance(reading, DoorEventV1):
                # A door event is an access event without a card: stored with the swipes (card_uid
                # NO_CARD, never granted, the event as the reason) so the swipe log and the access
                # alarms see held-open and forced-open doors where they see denied cards.
                out.swipes.append(
                    (ts, device.id, reading.door, NO_CARD, False, reading.event, reading.seq, m.received_at)
                )

    @staticmethod
    def _ack(out: DecodedBatch, m: RawMessage, device: DeviceInfo, ack: AckV1) -> None:
        out.acks.append(AckRow(ack.command_id, ack.status, m.received_at, device.id, ack.reason, ack.acl_version))
        if ack.whitelist is not None:
            report = _report(device.id, ack.whitelist, m.received_at, m.received_at, "ack")
            out.whitelists.append(replace(report, command_id=ack.command_id))

    def _telemetry(
        self, out: DecodedBatch, m: RawMessage, topic: UplinkTopic, device: DeviceInfo, frame: TelemetryV1, where: str
    ) -> None:
        unknown = []
        for metric, value in frame.values.items():
            point_id = device.points.get(metric)
            if point_id is None:
                unknown.append(metric)
                continue
            out.sample_ts.append(frame.ts)
            out.sample_point.append(point_id)
            out.sample_value.append(float(value))
        if unknown:
            self._quarantine(
                out,
                m,
                topic,
                Reason.unknown_metric,
                f"{where}metrics not configured for this device: {', '.join(unknown)}",
            )

    @staticmethod
    def _seen(out: DecodedBatch, device: DeviceInfo, ts: datetime, seq: int | None) -> None:
        prev = out.seen.get(device.id)
        if prev is None:
            out.seen[device.id] = (ts, [] if seq is None else [seq])
            return
        if seq is not None:
            prev[1].append(seq)
        if ts > prev[0]:
            out.seen[device.id] = (ts, prev[1])

    @staticmethod
    def _quarantine(out: DecodedBatch, m: RawMessage, topic: UplinkTopic, reason: str, detail: str) -> None:
        device_code = topic.device[:QUARANTINE_DEVICE_CODE_MAX]
        out.quarantined.append(QuarantineRow(m.received_at, m.topic, device_code, m.payload, reason, detail))


def _report(device_id: int, state: WhitelistStateV1, at: datetime, received: datetime, via: str) -> WhitelistReport:
    return WhitelistReport(device_id, state.version, state.digest, state.entries, at, received, via)
