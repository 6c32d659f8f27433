"""Versioned payload models of the device wire contract (DESIGN.md §4).

Wire bytes become frozen, validated objects here; nothing past ``decode_uplink`` sees raw dicts.
Timestamps are ISO-8601 strings or integer epoch milliseconds. A timestamp without a timezone is
*parsed* (so ingest can quarantine it with a precise reason) but never guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import from_json

from protocol.topics import Channel

MAX_VALUES_PER_FRAME = 256
MAX_BATCH = 1_000


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _epoch_ms_or_iso(value: Any) -> Any:
    # bool is an int subclass; a boolean timestamp is a bug, not epoch 1 ms.
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 text or integer epoch milliseconds")
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            # Not a ValueError by itself: pydantic would let it escape decode_uplink and stop ingest.
            raise ValueError("epoch milliseconds out of range") from None
    if isinstance(value, str):
        # Only ISO-8601 text: pydantic would read "1764115200" as unix *seconds*, while an integer
        # means milliseconds, and the same number must not mean two instants.
        if not _ISO_DATE.match(value):
            raise ValueError("timestamp text must be ISO-8601, e.g. 2026-11-26T08:00:00+08:00")
        return value
    if isinstance(value, datetime):  # models built in Python (encode's producers)
        return value
    raise ValueError("timestamp must be ISO-8601 text or integer epoch milliseconds")


def _decimal_string(value: Any) -> Any:
    # Registers travel as decimal strings so no float rounding ever touches a billed quantity.
    # (A Decimal only comes from Python code building a model; JSON never yields one.)
    if not isinstance(value, str | Decimal):
        raise ValueError('register must be a decimal string such as "1234.567"')
    return value


Timestamp = Annotated[datetime, BeforeValidator(_epoch_ms_or_iso)]
Register = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    Field(ge=0, max_digits=20, decimal_places=6, allow_inf_nan=False),
]
Metric = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Value = Annotated[float, Field(allow_inf_nan=False)] | bool
Seq = Annotated[int, Field(ge=0, lt=2**63)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TelemetryV1(_Frozen):
    """One frame of equipment sensor values at one device time."""

    v: Literal[1] = 1
    ts: Timestamp
    seq: Seq | None = None
    values: dict[Metric, Value] = Field(min_length=1, max_length=MAX_VALUES_PER_FRAME)


class MeterReadingV1(_Frozen):
    """A cumulative meter register (electricity kWh, water m³) at one device time."""

    v: Literal[1] = 1
    ts: Timestamp
    seq: Seq | None = None
    # Named ``register`` on the wire; ``register`` is taken on pydantic's BaseModel.
    reading: Register = Field(alias="register")
    unit: Literal["kWh", "m3"]
    reverse_register: Register | None = None
    valve: Literal["open", "closed", "unknown"] | None = None
    # Flags are short machine words (reverse_power, tamper, low_battery): no separators, no free text.
    flags: tuple[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,32}$")], ...] = Field(
        default=(), max_length=16
    )


class SwipeV1(_Frozen):
    """A card presented at a door controller, and what the controller decided."""

    v: Literal[1] = 1
    ts: Timestamp
    seq: Seq | None = None
    door: Ident
    card: Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{4,20}$", to_upper=True)]
    granted: bool
    reason: Annotated[str, StringConstraints(max_length=64)] | None = None


class DoorEventV1(_Frozen):
    """Something a door did without a card (``…/up/{controller}/door``): held open too long, forced open,
    and closed again (which ends either)."""

    v: Literal[1] = 1
    ts: Timestamp
    seq: Seq | None = None
    door: Ident
    event: Literal["held_open", "forced_open", "closed"]
    open_s: Annotated[int, Field(ge=0, lt=2**31)] | None = None  # how long it has been open, when known


class WhitelistStateV1(_Frozen):
    """What a door controller holds: its whitelist version, ``protocol.whitelist.whitelist_digest`` of the
    entries and their count. Reported on (re)connect in ``StatusV1`` and in every whitelist ack."""

    version: Annotated[int, Field(ge=0, lt=2**63)]
    digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    entries: Annotated[int, Field(ge=0)]


class StatusV1(_Frozen):
    v: Literal[1] = 1
    ts: Timestamp
    seq: Seq | None = None
    online: bool
    battery_v: Annotated[float, Field(allow_inf_nan=False)] | None = None
    whitelist: WhitelistStateV1 | None = None  # door controllers, on (re)connect


class AckV1(_Frozen):
    v: Literal[1] = 1
    command_id: Ident
    status: Literal["applied", "rejected", "expired"]
    # Whitelist commands: the version the controller holds after this command (applied or not).
    acl_version: int | None = None
    # A refusal's machine word, e.g. ``version_gap`` (protocol.whitelist.REFUSALS).
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    whitelist: WhitelistStateV1 | None = None  # whitelist commands and reports: what the controller holds


# --- downlink: platform → device, ``steward/{estate}/down/{device}/{command}`` --------------------------
# One shape, built here and nowhere else: the domain that queues a command (tickets/from_alarms.py),
# the outbox dispatcher that sends it (worker/outbox.py) and the simulated devices (simulators/commands.py).


class CommandV1(BaseModel):
    """The envelope of every downlink command. Devices ignore fields they do not know (forward compatible)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1]
    command_id: Ident  # the outbox row id once sent; the device acks with it
    issued_at: AwareDatetime
    expires_at: AwareDatetime | None = None  # a device drops (acks "expired") a command past this


class ValveCommandV1(CommandV1):
    """Open or close a meter's shut-off valve (``…/down/{device}/valve``)."""

    action: Literal["close", "open"]
    reason: Annotated[str, StringConstraints(max_length=64)] | None = None
    ticket: Annotated[str, StringConstraints(max_length=32)] | None = None


def valve_command(
    *,
    command_id: str,
    issued_at: datetime,
    expires_at: datetime | None,
    action: Literal["close", "open"],
    reason: str | None = None,
    ticket: str | None = None,
) -> dict[str, Any]:
    """A v1 valve command as stored in the outbox (JSON-ready), checked against ``ValveCommandV1``."""
    body: dict[str, Any] = {
        "v": 1,
        "command_id": command_id,
        "issued_at": issued_at.isoformat(),
        "expires_at": expires_at.isoformat() if expires_at is not None else None,
        "action": action,
        "reason": reason,
        "ticket": ticket,
    }
    ValveCommandV1.model_validate(body)  # never queue what a device would reject
    return body


def command_wire(
    body: Mapping[str, Any], *, command_id: str, issued_at: datetime | None, expires_at: datetime | None
) -> bytes:
    """The bytes sent for a stored command: its body in the v1 envelope, ``command_id`` always ours.

    ``issued_at``/``expires_at`` fill in only what the body does not say itself."""
    out: dict[str, Any] = {"v": 1, **body, "command_id": command_id}
    if issued_at is not None:
        out.setdefault("issued_at", issued_at.isoformat())
    if expires_at is not None:
        out.setdefault("expires_at", expires_at.isoformat())
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


class TelemetryBatchV1(_Frozen):
    v: Literal[1] = 1
    batch: tuple[TelemetryV1, ...] = Field(min_length=1, max_length=MAX_BATCH)


class MeterBatchV1(_Frozen):
    v: Literal[1] = 1
    batch: tuple[MeterReadingV1, ...] = Field(min_length=1, max_length=MAX_BATCH)


Reading = TelemetryV1 | MeterReadingV1 | SwipeV1 | StatusV1 | AckV1 | DoorEventV1

_SINGLE: dict[Channel, type[BaseModel]] = {
    Channel.telemetry: TelemetryV1,
    Channel.meter: MeterReadingV1,
    Channel.swipe: SwipeV1,
    Channel.status: StatusV1,
    Channel.ack: AckV1,
    Channel.door: DoorEventV1,
}
_BATCH: dict[Channel, type[BaseModel]] = {Channel.telemetry: TelemetryBatchV1, Channel.meter: MeterBatchV1}
_BATCH_MARKER = b'"batch"'


class PayloadError(ValueError):
    """The payload is not a valid v1 message for its channel; ``str()`` is the dead-letter reason."""


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _is_batch(payload: bytes) -> bool:
    """A batch envelope is an object with a top-level "batch" key. The byte search is only a fast
    path: a single frame may mention "batch" too (a metric name, a flag)."""
    if _BATCH_MARKER not in payload:
        return False
    try:
        obj = from_json(payload)
    except ValueError:
        return False  # not JSON: the single model reports why
    return isinstance(obj, dict) and "batch" in obj


def decode_uplink(channel: Channel, payload: bytes) -> list[Reading]:
    """Validate one uplink payload; return its readings (a batch yields several)."""
    batch = _BATCH.get(channel)
    # Exactly one model, so the dead-letter reason is about the payload's real shape: a single reading
    # that merely *contains* "batch" (a metric name, a flag) is validated, and refused, as a single one.
    model = batch if batch is not None and _is_batch(payload) else _SINGLE[channel]
    try:
        obj = model.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_reason(exc)) from None
    if isinstance(obj, TelemetryBatchV1 | MeterBatchV1):
        return list(obj.batch)
    return [obj]  # type: ignore[list-item]


def encode(obj: BaseModel) -> bytes:
    """Serialise a payload model the way devices send it (registers as decimal strings)."""
    return obj.model_dump_json(exclude_none=True, by_alias=True).encode()
