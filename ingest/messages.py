"""What ingest holds between the paho callback and the batch commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An MQTT message as received: bytes untouched, plus what we need to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime
    # Which broker connection delivered it: a packet id is only meaningful on its own connection.
    connection: int
