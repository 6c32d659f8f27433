"""Door-controller whitelists on the wire: the ``whitelist`` and ``whitelist_report`` downlink commands.

Each controller holds a versioned whitelist (issue 12 §3). The platform changes it with
``steward/{estate}/down/{controller}/whitelist`` commands (``WhitelistCommandV1``, built with
``whitelist_delta`` / ``whitelist_snapshot`` and queued in the outbox like a valve command)::

    {"v":1,"command_id":"42","issued_at":"…","expires_at":"…","op":"delta","version":8,"base_version":7,
     "upsert":[{"uid":"04A1B2C3","doors":["3-1-main"],"valid_from":"…","valid_until":null,"schedule":null}],
     "remove":["0BADCAFE"]}
    {"v":1,"command_id":"43","issued_at":"…","op":"snapshot","version":9,"part":0,"parts":2,"digest":"…",
     "entries":[…the first half of the list…]}

and the controller answers on its ``ack`` channel (``protocol.payloads.AckV1``) with the version it now
holds and a ``WhitelistStateV1`` (version, digest, entry count)::

    {"v":1,"command_id":"42","status":"applied","acl_version":8,"whitelist":{"version":8,"digest":"…","entries":311}}
    {"v":1,"command_id":"42","status":"rejected","reason":"version_gap","acl_version":5,"whitelist":{…}}

Rules a controller follows (and the platform relies on):

* ``version`` strictly increases per controller; a fresh controller holds version 0 and no entries.
* A delta applies only on top of ``base_version`` == the controller's version; otherwise it is refused with
  ``version_gap`` (the platform then sends a snapshot). A delta or snapshot whose ``version`` is not above the
  controller's is refused with ``stale_version`` (a late re-delivery; the list is left alone).
* A snapshot replaces the whole list, whatever the controller held (that is how the platform repairs a gap or
  a list changed behind its back). One message must fit the broker's packet limit, so a long list goes in
  ``parts`` messages of one ``version``: each part is acked ``applied`` with reason ``staged`` (the controller
  still holds and enforces its old list), and the part that completes the set applies the whole list at once,
  after checking ``digest`` (``digest_mismatch``: refused, the old list stays). Parts of an older version are
  dropped when parts of a newer one arrive.
* ``whitelist_report`` (``…/down/{controller}/whitelist_report``, the bare ``CommandV1`` envelope) is answered
  with an ``applied`` ack carrying the state; a controller also puts the same state on the ``status`` it
  publishes when it (re)connects (``StatusV1.whitelist``).
* ``whitelist_digest`` is the one definition of the digest, used by controllers and platform alike: the
  platform compares it with the digest of the list it believes the controller holds at that version.

Validity is ``valid_from <= t < valid_until`` (either end open when null). ``schedule`` (optional) is a weekly
time profile in the controller's local time (the estate's timezone); no schedule means at any time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from protocol.payloads import CommandV1, Ident

WHITELIST = "whitelist"  # downlink command names (the last topic level)
WHITELIST_REPORT = "whitelist_report"
# One command must fit the broker's max_packet_size (256 KiB in deploy/mosquitto/mosquitto.conf and
# steward/broker.py) with room for the topic and the envelope: ~1,500 plain entries. A bigger list goes
# as a snapshot in several parts; a bigger delta is refused by the builder (send a snapshot instead).
MAX_COMMAND_BYTES = 200_000
MAX_ENTRIES = 10_000  # per message; the byte limit above bites first
MAX_PARTS = 1_000
MAX_DOORS = 64  # doors of one controller
Denial = Literal["unknown", "not_yet_valid", "expired", "outside_schedule", "wrong_door"]
# AckV1.reason on a rejected whitelist command; "unsupported": the device is no door controller.
REFUSALS = ("version_gap", "stale_version", "digest_mismatch", "invalid", "unsupported")
STAGED = "staged"  # AckV1.reason on an applied snapshot part that is held until the last part arrives
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

Uid = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{4,20}$", to_upper=True)]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]
Version = Annotated[int, Field(ge=0, lt=2**63)]


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class WeeklyWindowV1(BaseModel):
    """One window of a weekly time profile: ISO weekdays (1 = Monday) and local ``start``–``end``.

    ``end`` at or before ``start`` runs past midnight into the next day (a night shift 22:00–06:00 on
    Friday covers Saturday 00:00–06:00); ``00:00``–``24:00`` is the whole day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: tuple[Annotated[int, Field(ge=1, le=7)], ...] = Field(min_length=1, max_length=7)
    start: ClockTime
    end: ClockTime

    @field_validator("days")
    @classmethod
    def _sorted_days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(days)))

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyWindowV1:
        if self.start == "24:00":
            raise ValueError("a window starts before 24:00")
        return self

    def contains(self, local: datetime) -> bool:
        """Whether the controller's local wall time ``local`` falls in this window."""
        start, end = _minutes(self.start), _minutes(self.end)
        minute = local.hour * 60 + local.minute
        day = local.isoweekday()
        if start < end:
            return day in self.days and start <= minute < end
        # Past midnight: the evening part on a listed day, the morning part on the day after one.
        previous = 7 if day == 1 else day - 1
        return (day in self.days and minute >= start) or (previous in self.days and minute < end)


def _whole_utc_seconds(value: datetime | None) -> datetime | None:
    # One canonical instant: both sides hold (and digest) UTC whole seconds, whatever offset or
    # sub-second precision the platform's database gave the card.
    return None if value is None else value.astimezone(UTC).replace(microsecond=0)


class WhitelistEntryV1(BaseModel):
    """One card on one controller: the doors of this controller it opens, when, and how long."""

    # Unlike the envelope, an entry refuses unknown fields: a field an older controller cannot enforce (a
    # new restriction) must fail the command, not silently open doors more widely than the platform meant.
    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: Uid  # uppercase hex as read (domain-defaults §6)
    doors: tuple[Ident, ...] = Field(min_length=1, max_length=MAX_DOORS)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    schedule: tuple[WeeklyWindowV1, ...] | None = Field(default=None, min_length=1, max_length=16)

    @field_validator("doors")
    @classmethod
    def _sorted_doors(cls, doors: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(doors)))

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _canonical_time(cls, value: datetime | None) -> datetime | None:
        return _whole_utc_seconds(value)

    @field_validator("schedule")
    @classmethod
    def _sorted_schedule(cls, schedule: tuple[WeeklyWindowV1, ...] | None) -> tuple[WeeklyWindowV1, ...] | None:
        if schedule is None:
            return None
        return tuple(sorted(set(schedule), key=lambda w: (w.days, w.start, w.end)))

    @model_validator(mode="after")
    def _ordered_validity(self) -> WhitelistEntryV1:
        if self.valid_from is not None and self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self

    def denial(self, door: str, at: datetime, tz: tzinfo) -> Denial | None:
        """Why this card may not open ``door`` at ``at`` (None: it may). ``tz`` is the controller's."""
        if door not in self.doors:
            return "wrong_door"
        if self.valid_from is not None and at < self.valid_from:
            return "not_yet_valid"
        if self.valid_until is not None and at >= self.valid_until:
            return "expired"
        if self.schedule is not None:
            local = at.astimezone(tz)
            if not any(w.contains(local) for w in self.schedule):
                return "outside_schedule"
        return None

    def canonical(self) -> dict[str, Any]:
        """The entry as the digest sees it (sorted doors and windows, UTC whole seconds)."""

        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "uid": self.uid,
            "doors": list(self.doors),
            "valid_from": ts(self.valid_from),
            "valid_until": ts(self.valid_until),
            "schedule": None
            if self.schedule is None
            else [{"days": list(w.days), "start": w.start, "end": w.end} for w in self.schedule],
        }


def whitelist_digest(entries: Iterable[WhitelistEntryV1]) -> str:
    """sha256 (hex) of the list's canonical encoding: entries sorted by uid, keys sorted, compact JSON.

    The one definition both sides use; it does not depend on order, offsets or sub-second precision."""
    rows = sorted((e.canonical() for e in entries), key=lambda r: r["uid"])
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _unique_uids(entries: Sequence[WhitelistEntryV1], what: str) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.uid in seen:
            raise ValueError(f"{what}: uid {e.uid} appears twice")
        seen.add(e.uid)


class WhitelistCommandV1(CommandV1):
    """Change a controller's whitelist (``…/down/{controller}/whitelist``): a delta or a whole snapshot."""

    op: Literal["delta", "snapshot"]
    version: Version = Field(gt=0)  # the version the controller holds once this is applied
    base_version: Version | None = None  # delta only: the version it applies on top of
    upsert: tuple[WhitelistEntryV1, ...] = Field(default=(), max_length=MAX_ENTRIES)  # delta: added or replaced
    remove: tuple[Uid, ...] = Field(default=(), max_length=MAX_ENTRIES)  # delta: uids to delete (absent: no-op)
    entries: tuple[WhitelistEntryV1, ...] | None = Field(default=None, max_length=MAX_ENTRIES)  # snapshot: all
    # A snapshot too big for one message goes in ``parts`` messages of the same ``version`` (``part`` 0…n-1,
    # any order); the controller applies the union once it has every part, and not before.
    part: Annotated[int, Field(ge=0)] = 0
    parts: Annotated[int, Field(ge=1, le=MAX_PARTS)] = 1
    digest: Digest | None = None  # snapshot: ``whitelist_digest`` of the whole list, checked once assembled

    @model_validator(mode="after")
    def _shape(self) -> WhitelistCommandV1:
        if self.part >= self.parts:
            raise ValueError("part must be below parts")
        if self.op == "delta":
            if self.parts != 1 or self.digest is not None:
                raise ValueError("a delta is one message without a digest")
            if self.base_version is None:
                raise ValueError("a delta needs base_version")
            if self.version <= self.base_version:
                raise ValueError("version must be above base_version")
            if self.entries is not None:
                raise ValueError("a delta carries upsert/remove, not entries")
            _unique_uids(self.upsert, "upsert")
            if both := {e.uid for e in self.upsert} & set(self.remove):
                raise ValueError(f"uids both upserted and removed: {', '.join(sorted(both))}")
        else:
            if self.entries is None:
                raise ValueError("a snapshot needs entries (an empty list empties the controller)")
            if self.base_version is not None or self.upsert or self.remove:
                raise ValueError("a snapshot carries entries only")
            _unique_uids(self.entries, "entries")
        return self


def _envelope(command_id: str, issued_at: datetime, expires_at: datetime | None) -> dict[str, Any]:
    return {
        "v": 1,
        "command_id": command_id,
        "issued_at": issued_at.isoformat(),
        "expires_at": expires_at.isoformat() if expires_at is not None else None,
    }


def _entries_json(entries: Iterable[WhitelistEntryV1]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in entries]


def _size(body: dict[str, Any]) -> int:
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


def whitelist_delta(
    *,
    command_id: str,
    issued_at: datetime,
    expires_at: datetime | None,
    version: int,
    base_version: int,
    upsert: Iterable[WhitelistEntryV1] = (),
    remove: Iterable[str] = (),
) -> dict[str, Any]:
    """A v1 whitelist delta as stored in the outbox (JSON-ready), checked against ``WhitelistCommandV1``.

    Raises ``ValueError`` when it would not fit one message (``MAX_COMMAND_BYTES``): send a snapshot."""
    body = {
        **_envelope(command_id, issued_at, expires_at),
        "op": "delta",
        "version": version,
        "base_version": base_version,
        "upsert": _entries_json(upsert),
        "remove": [uid.upper() for uid in remove],
    }
    WhitelistCommandV1.model_validate(body)  # never queue what a controller would reject
    if _size(body) > MAX_COMMAND_BYTES:
        raise ValueError(f"delta of {_size(body)} bytes exceeds {MAX_COMMAND_BYTES}: send a snapshot")
    return body


def whitelist_snapshot(
    *,
    command_id: str,
    issued_at: datetime,
    expires_at: datetime | None,
    version: int,
    entries: Iterable[WhitelistEntryV1],
    max_bytes: int = MAX_COMMAND_BYTES,
) -> list[dict[str, Any]]:
    """A v1 whitelist snapshot (the whole list) as outbox bodies: one per part, each under ``max_bytes``.

    Every part carries the same version and the digest of the whole list; queue each as its own command
    (its own ``command_id``). Entries are sorted by uid, so the same list gives the same parts."""
    listed = sorted(entries, key=lambda e: e.uid)
    head = {
        **_envelope(command_id, issued_at, expires_at),
        "op": "snapshot",
        "version": version,
        "part": MAX_PARTS,
        "parts": MAX_PARTS,
        "digest": whitelist_digest(listed),
        "entries": [],
    }
    room = max_bytes - _size(head)
    chunks: list[list[dict[str, Any]]] = [[]]
    used = 0
    for entry in _entries_json(listed):
        size = _size(entry) + 1  # and its comma
        if size > room:
            raise ValueError(f"entry {entry['uid']} alone exceeds {max_bytes} bytes")
        if used + size > room:
            chunks.append([])
            used = 0
        chunks[-1].append(entry)
        used += size
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"{len(listed)} entries need more than {MAX_PARTS} parts")
    bodies = [{**head, "part": i, "parts": len(chunks), "entries": chunk} for i, chunk in enumerate(chunks)]
    for body in bodies:
        WhitelistCommandV1.model_validate(body)
    return bodies


def whitelist_report_command(*, command_id: str, issued_at: datetime, expires_at: datetime | None) -> dict[str, Any]:
    """A ``whitelist_report`` request as stored in the outbox: the bare envelope."""
    body = _envelope(command_id, issued_at, expires_at)
    CommandV1.model_validate(body)
    return body
