"""Pydantic I/O models of the API. Inputs reject unknown fields (a client may not set what it may not)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")
# PostgreSQL text cannot hold NUL: refuse it at the edge rather than fail in the database.
NO_NUL = r"^[^\x00]*$"
ESTATE_CODE = r"^[a-z0-9-]{1,32}$"
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def _iso_time(value: Any) -> Any:
    # Only ISO 8601 / RFC 3339 text (pydantic alone would also take "0.5" as a Unix time). An unencoded "+" in
    # a query string arrives as a space: "2026-11-26T08:00:00 08:00" means +08:00.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-26T08:00:00+08:00")
    text = re.sub(r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", value.strip())
    if not re.match(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", text):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-26T08:00:00+08:00")
    return datetime.fromisoformat(text)


def _sane_time(value: datetime) -> datetime:
    try:
        in_range = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 has no UTC equivalent
        in_range = False
    if not in_range:
        raise ValueError("time must be between 1970 and 2200")
    return value


def _integral(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; strict mode alone would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A time in a query: must carry its offset (naive times are ambiguous across estates' timezones).
QueryTime = Annotated[AwareDatetime, BeforeValidator(_iso_time), AfterValidator(_sane_time)]


class Input(BaseModel):
    # strict: a JSON 0 is not a boolean and "5" is not a number; extra: a client may not set what it may not.
    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Output, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class LoginIn(Input):
    username: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
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
    display_name: str = Field(default="", max_length=64, pattern=NO_NUL)
    role: str = Field(pattern=r"^(admin|engineer|steward|supervisor|manager|card_admin|billing_clerk|viewer)$")
    estates: list[Annotated[str, Field(pattern=ESTATE_CODE)]] = Field(default_factory=list, max_length=200)
    all_estates: bool = False


class TokenIn(Input):
    name: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    # Constraints before the validator, or they do not reach the JSON schema as minimum/maximum.
    ttl_days: Annotated[int, Field(ge=1, le=365), BeforeValidator(_integral)] | None = Field(
        default=None, description="lifetime in days (default 90, at most 365)"
    )


class TokenOut(Output):
    token: str
    name: str
    id: int
    expires_at: datetime


class TokenInfoOut(Output):
    """A bearer token without its secret (which is shown once, at creation)."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class PasswordChangeIn(Input):
    current_password: str = Field(min_length=1, max_length=256, description="re-authentication / 当前密码")
    new_password: str = Field(min_length=10, max_length=256)


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
    """Public liveness: a status only. Ingest's processes and counters are /api/ingest/status (head office)."""

    status: str = Field(description="ok, or degraded when the database or an ingest process is not ok")


class StandbyOut(Output):
    """A standby as the primary's pg_stat_replication shows it (lag columns need pg_monitor, else null)."""

    name: str
    client: str | None
    state: str | None
    sync_state: str | None
    replay_lag_s: float | None
    behind_bytes: int | None


class ReplicaStatusOut(Output):
    """The read replica (STEWARD_DATABASE_READ_URL): configured=false means reads use the primary."""

    configured: bool
    reachable: bool
    healthy: bool
    in_recovery: bool | None = Field(description="false: the read URL points at a primary, not a replica")
    streaming: bool | None = Field(description="the replica's WAL receiver is connected to the primary")
    replay_lag_s: float | None = Field(description="seconds the replica's replayed data trails the primary")
    behind_bytes: int | None = Field(description="WAL received by the replica but not yet replayed")
    standbys: list[StandbyOut]
    error: str | None
