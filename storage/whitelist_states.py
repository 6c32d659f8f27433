"""What each door controller says it holds: its last reported whitelist version, digest and entry count.

Ingest writes ``device_whitelist_states`` from the controllers' (re)connect status and their first answer to
each whitelist command (ingest/writer.py); the access domain compares it with what it sent (issue 12 §3). It is
platform plumbing like the outbox, so the read lives here, below every domain. Both reads are primary-key
lookups (``device_id``), or go through ``devices``' estate index.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Device, DeviceWhitelistState


@dataclass(frozen=True, slots=True)
class ReportedWhitelist:
    device_id: int
    version: int
    digest: str
    entries: int
    reported_at: datetime  # a status's device time, an ack's arrival time
    received_at: datetime
    via: str  # 'status' | 'ack'


def reported_whitelists(
    session: Session, *, device_ids: Collection[int] | None = None, estate_id: int | None = None
) -> dict[int, ReportedWhitelist]:
    """By device id: the last state each controller reported (controllers that never reported are absent).

    ``device_ids`` and ``estate_id`` narrow the read (both may be given); neither: every controller."""
    stmt = select(DeviceWhitelistState)
    if device_ids is not None:
        stmt = stmt.where(DeviceWhitelistState.device_id.in_(list(device_ids)))
    if estate_id is not None:
        stmt = stmt.join(Device, Device.id == DeviceWhitelistState.device_id).where(Device.estate_id == estate_id)
    return {
        w.device_id: ReportedWhitelist(w.device_id, w.version, w.digest, w.entries, w.reported_at, w.received_at, w.via)
        for w in session.scalars(stmt)
    }


__all__ = ["ReportedWhitelist", "reported_whitelists"]
