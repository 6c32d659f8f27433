"""Per-device plumbing between a model and the wire: sequencing, encoding and delivery faults.

A model produces ``Reading``s (what the device observed). The stream sequences them in device-time
order (``seq`` is per device across all its channels), encodes them, and passes the frames through
the device's delivery faults (duplicates, reordering, delay) before releasing each at its send time.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from protocol.estate_file import FlatDevice
from protocol.topics import UPLINK, uplink
from simulators.frames import Emission, Frame, RawEmission, Reading, TsEncoder, encode_payload
from simulators.meters import Household


class DeviceModel(Protocol):
    code: str

    @property
    def next_due(self) -> datetime | None:
        """Device time of the next observation; None once the device has gone silent."""
        ...

    def produce(self) -> list[Emission]:
        """Observe at ``next_due`` (and advance). May return readings dated a little later."""
        ...


class ReadingFault(Protocol):
    """Changes a reading before it is sequenced and encoded (e.g. a device clock gone wrong)."""

    def apply(self, reading: Reading) -> Reading: ...


class DeliveryFault(Protocol):
    """Changes what reaches the broker: may return several frames, or none yet (held back)."""

    def apply(self, frame: Frame) -> list[Frame]: ...


@dataclass(order=True, frozen=True, slots=True)
class Released:
    """Sort key for the fleet-wide merge: send time, then device order, then emission order."""

    at: datetime
    stream: int
    order: int
    frame: Frame


class DeviceStream:
    def __init__(self, model: DeviceModel, *, estate: str, encoder: TsEncoder, index: int) -> None:
        self.model = model
        self.code = model.code
        self.estate = estate
        self.encoder = encoder
        self.index = index
        self.seq = 0
        self.reading_faults: list[ReadingFault] = []
        self.delivery_faults: list[DeliveryFault] = []
        self._staged: list[tuple[datetime, int, Emission]] = []  # produced, device time not reached yet
        self._pending: list[Released] = []  # encoded, send time not reached yet
        self._order = 0

    def advance(self, now: datetime) -> list[Released]:
        """Run the device up to ``now``; return frames whose send time is ``<= now``."""
        while (due := self.model.next_due) is not None and due <= now:
            for emission in self.model.produce():
                at = emission.ts if isinstance(emission, Reading) else emission.at
                heapq.heappush(self._staged, (at, self._next_order(), emission))
        # Sequence in device-time order: anything produced later is dated after ``now``.
        while self._staged and self._staged[0][0] <= now:
            _, _, emission = heapq.heappop(self._staged)
            if isinstance(emission, RawEmission):
                self._push(self._raw_frame(emission))
                continue
            for frame in self._deliver(self._encode(emission)):
                self._push(frame)
        out: list[Released] = []
        while self._pending and self._pending[0].at <= now:
            out.append(heapq.heappop(self._pending))
        return out

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _push(self, frame: Frame) -> None:
        heapq.heappush(self._pending, Released(frame.at, self.index, self._next_order(), frame))

    def _encode(self, reading: Reading) -> Frame:
        for fault in self.reading_faults:
            reading = fault.apply(reading)
        self.seq += 1
        ts = reading.wire_ts if reading.wire_ts is not None else self.encoder(reading.ts)
        return Frame(
            topic=uplink(self.estate, self.code, reading.channel),
            payload=encode_payload(ts, self.seq, reading.body),
            device=self.code,
            channel=reading.channel.value,
            at=reading.ts + timedelta(seconds=reading.upload_delay_s),
            expect=reading.expect,
            scenario=reading.scenario,
            tags=reading.tags,
            meta=reading.meta,
        )

    def _deliver(self, frame: Frame) -> list[Frame]:
        frames = [frame]
        for fault in self.delivery_faults:
            frames = [out for f in frames for out in fault.apply(f)]
        return frames

    def _raw_frame(self, raw: RawEmission) -> Frame:
        device = raw.device or self.code
        # Not ``uplink()``: a malformed frame may use a channel that does not exist.
        topic = UPLINK.format(estate=self.estate, device=device, channel=raw.channel)
        return Frame(topic, raw.payload, device, raw.channel, raw.at, raw.expect, raw.scenario, raw.tags)


@dataclass
class DeviceEntry:
    """One device of the expanded estate and what simulates it (``model`` None: it stays silent)."""

    flat: FlatDevice
    household: Household | None = None
    model: DeviceModel | None = None
    stream: DeviceStream | None = None

    @property
    def code(self) -> str:
        return self.flat.spec.code

    @property
    def kind(self) -> str:
        return self.flat.spec.kind


def with_scenario(frame: Frame, scenario: str, *tags: str, **changes: object) -> Frame:
    """A copy of ``frame`` labelled by a scenario (tags appended, other fields replaced)."""
    merged = tuple(dict.fromkeys((*frame.tags, *tags)))
    return replace(frame, scenario=scenario, tags=merged, **changes)  # type: ignore[arg-type]
