"""Pydantic I/O models of the API. Inputs reject unknown fields (a client may not set what it may not)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Output, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class LoginIn(Input):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserOut(Output):
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    all_estates: bool


class UserIn(Input):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=10, max_length=256)
    display_name: str = Field(default="", max_length=64)
    role: str = Field(pattern=r"^(admin|engineer|steward|card_admin|billing_clerk|viewer)$")
    estates: list[str] = Field(default_factory=list, max_length=200)
    all_estates: bool = False


class TokenIn(Input):
    name: str = Field(min_length=1, max_length=64)
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(Output):
    token: str
    name: str


class EstateOut(Output):
    id: int
    code: str
    name: str
    city: str
    timezone: str


class BuildingOut(Output):
    id: int
    code: str
    name: str
    floors: int


class UnitOut(Output):
    id: int
    building_id: int
    code: str
    entrance: str
    floor: int
    area_m2: Decimal
    occupancy: str
    registered_occupants: int


class ResidentOut(Output):
    id: int
    unit_id: int
    name: str
    phone: str
    role: str
    lease_end: date | None
    masked: bool


class RoomOut(Output):
    id: int
    estate_id: int
    code: str
    name: str
    kind: str


class PointOut(Output):
    id: int
    device_id: int
    metric: str
    unit: str
    kind: str
    label: str


class DeviceOut(Output):
    id: int
    estate_id: int
    code: str
    kind: str
    name: str
    unit_id: int | None
    room_id: int | None
    expected_interval_s: int
    last_seen_at: datetime | None = None
    online: bool | None = None


class DeviceDetailOut(DeviceOut):
    points: list[PointOut]


class SampleOut(BaseModel):
    ts: datetime
    value: float


class SamplesOut(BaseModel):
    point_id: int
    items: list[SampleOut]
    next_after: datetime | None = Field(description="pass as `after` to read the next page")


class BucketOut(BaseModel):
    bucket: datetime
    n: int
    min: float
    avg: float
    max: float
    last: float


class SeriesOut(BaseModel):
    point_id: int
    bucket: str
    source: str = Field(description="which table answered: continuous aggregate, rollup or raw")
    items: list[BucketOut]


class LiveValueOut(BaseModel):
    point_id: int
    device_id: int
    metric: str
    unit: str
    label: str
    ts: datetime | None
    value: float | None
    age_s: float | None
    stale: bool


class DeadLetterOut(Output):
    id: int
    received_at: datetime
    topic: str
    error: str
    payload_preview: str


class QuarantineOut(Output):
    id: int
    received_at: datetime
    topic: str
    device_code: str
    reason: str
    detail: str


class IngestStatusOut(Output):
    instance: str
    updated_at: datetime
    status: str
    counters: dict[str, Any]


class HealthOut(BaseModel):
    status: str
    database: bool
    ingest: list[IngestStatusOut]
