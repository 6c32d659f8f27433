"""Every table of Steward (DESIGN.md §3). Alembic migrations are the schema source; these mirror them.

Time-series tables key on the *device* timestamp, never arrival time, so a redelivered or replayed
message lands on the same key and ``ON CONFLICT DO NOTHING`` makes ingestion idempotent.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base

TZ = DateTime(timezone=True)


class Occupancy(StrEnum):
    vacant = "vacant"
    occupied = "occupied"
    renovating = "renovating"


class RoomKind(StrEnum):
    power_room = "power_room"
    heat_station = "heat_station"
    pump_room = "pump_room"
    fire_pump_room = "fire_pump_room"
    hot_water_plant = "hot_water_plant"


class PointKind(StrEnum):
    gauge = "gauge"
    counter = "counter"
    state = "state"


class Estate(Base):
    __tablename__ = "estates"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    city: Mapped[str] = mapped_column(String(64), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai", server_default="Asia/Shanghai")
    # Per-estate switches, e.g. supply_restriction_enabled (false by default: domain-defaults §5).
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("estate_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    floors: Mapped[int] = mapped_column(SmallInteger, default=0)


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("building_id", "code"),
        CheckConstraint("occupancy in ('vacant','occupied','renovating')", name="occupancy"),
        CheckConstraint("registered_occupants >= 0", name="registered_occupants"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(32))  # e.g. 3-1-1201: building-entrance-room
    entrance: Mapped[str] = mapped_column(String(16), default="1")
    floor: Mapped[int] = mapped_column(SmallInteger)
    area_m2: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    occupancy: Mapped[str] = mapped_column(String(16), default=Occupancy.occupied)
    registered_occupants: Mapped[int] = mapped_column(SmallInteger, default=0)
    has_pv: Mapped[bool] = mapped_column(Boolean, default=False)  # rooftop PV legitimately runs meters backwards


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (CheckConstraint("role in ('owner','tenant','family')", name="role"),)
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # personal data: masked by role, reads audited
    phone: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    lease_end: Mapped[date | None] = mapped_column(Date)
    vulnerable: Mapped[bool] = mapped_column(Boolean, default=False)  # never restrict supply (domain §5)


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("estate_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="SET NULL"))


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    # The MQTT device id and broker username: globally unique so the broker's %u ACL is unambiguous.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(48))
    name: Mapped[str] = mapped_column(String(128), default="")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="SET NULL"), index=True)
    serial: Mapped[str] = mapped_column(String(64), default="")
    register_max: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))  # meters: rollover point
    multiplier: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(1))  # CT/PT 倍率
    resolution: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))  # smallest register step
    has_valve: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    installed_at: Mapped[datetime | None] = mapped_column(TZ)
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


class Point(Base):
    __tablename__ = "points"
    __table_args__ = (
        UniqueConstraint("device_id", "metric"),
        CheckConstraint("kind in ('gauge','counter','state')", name="kind"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16), default="")
    kind: Mapped[str] = mapped_column(String(16), default=PointKind.gauge)
    label: Mapped[str] = mapped_column(String(128), default="")


# --- time series: the unique key of each includes the device timestamp -----------------------------


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (PrimaryKeyConstraint("point_id", "ts"),)
    ts: Mapped[datetime] = mapped_column(TZ)
    point_id: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Double)


class MeterReading(Base):
    __tablename__ = "meter_readings"
    __table_args__ = (PrimaryKeyConstraint("device_id", "ts"),)
    ts: Mapped[datetime] = mapped_column(TZ)
    device_id: Mapped[int] = mapped_column(Integer)
    register: Mapped[Decimal] = mapped_column(Numeric)
    reverse_register: Mapped[Decimal | None] = mapped_column(Numeric)
    valve: Mapped[str | None] = mapped_column(String(8))
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    seq: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class AccessEvent(Base):
    __tablename__ = "access_events"
    __table_args__ = (PrimaryKeyConstraint("controller_id", "ts", "card_uid"),)
    ts: Mapped[datetime] = mapped_column(TZ)
    controller_id: Mapped[int] = mapped_column(Integer)
    door: Mapped[str] = mapped_column(String(64))
    card_uid: Mapped[str] = mapped_column(String(20))
    granted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class SampleHourly(Base):
    """App-maintained hourly rollup of samples, used when TimescaleDB is absent."""

    __tablename__ = "samples_hourly"
    __table_args__ = (PrimaryKeyConstraint("point_id", "bucket"),)
    bucket: Mapped[datetime] = mapped_column(TZ)
    point_id: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Double)
    min: Mapped[float] = mapped_column(Double)
    max: Mapped[float] = mapped_column(Double)
    last_ts: Mapped[datetime] = mapped_column(TZ)
    last: Mapped[float] = mapped_column(Double)


# --- ingest bookkeeping ----------------------------------------------------------------------------


class DeviceState(Base):
    """Latest contact per device: last seen, last seq (for gap detection), online, battery."""

    __tablename__ = "device_state"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(TZ)
    last_ts: Mapped[datetime | None] = mapped_column(TZ)
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    online: Mapped[bool | None] = mapped_column(Boolean)
    battery_v: Mapped[float | None] = mapped_column(Double)
    status_ts: Mapped[datetime | None] = mapped_column(TZ)  # device time of online/battery_v


class SeqGap(Base):
    """A jump in a device's ``seq``: messages the device sent that never arrived (yet)."""

    __tablename__ = "seq_gaps"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    detected_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    first_missing: Mapped[int] = mapped_column(BigInteger)
    last_missing: Mapped[int] = mapped_column(BigInteger)


class DeadLetter(Base):
    """A payload that could not be understood, kept byte for byte with the reason."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now(), index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)


class QuarantinedMessage(Base):
    """A well-formed payload we will not store as data: unknown device, time outside the window, ..."""

    __tablename__ = "quarantined_messages"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now(), index=True)
    topic: Mapped[str] = mapped_column(Text)
    device_code: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(48), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class Outbox(Base):
    """Commands to devices, written in the domain's transaction and published after commit."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "created_at", postgresql_where="sent_at IS NULL"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acked_at: Mapped[datetime | None] = mapped_column(TZ)


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(TZ, server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


# --- staff accounts, sessions and tokens (accounts/) ----------------------------------------------


class StaffUser(Base):
    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint("role in ('admin','engineer','steward','card_admin','billing_clerk','viewer')", name="role"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(24))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Head-office staff see every estate; everyone else sees the estates listed in staff_estates.
    all_estates: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class StaffEstate(Base):
    __tablename__ = "staff_estates"
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(Base):
    """A bearer token for an integration; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(TZ)
    last_used_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)


class WebSession(Base):
    """A browser login; the cookie carries the secret, the table only its SHA-256."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TZ)


class LoginFailure(Base):
    """Failed logins, for rate limiting across every API process."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_username_at", "username", "at"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class IngestStatus(Base):
    """What each ingest process last reported (the API and dashboards read it; ingest's memory is not theirs)."""

    __tablename__ = "ingest_status"
    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[str] = mapped_column(String(16))
    counters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


# --- alarms (alarms/) ------------------------------------------------------------------------------


class AlarmRuleRow(Base):
    """A configured rule: `kind` + `params` rebuild an `alarms.rules` dataclass; applies to points by metric."""

    __tablename__ = "alarm_rules"
    __table_args__ = (
        CheckConstraint("kind in ('threshold','repeat','rate_of_change','stale','composite')", name="kind"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    metric: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    severity_policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class AlarmStateRow(Base):
    """Evaluator state per (rule, point): `alarms.rules.RuleState.to_json()`."""

    __tablename__ = "alarm_states"
    __table_args__ = (PrimaryKeyConstraint("rule_id", "point_id"),)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class Alarm(Base):
    """One alarm episode; the partial unique index allows at most one open alarm per (rule, point)."""

    __tablename__ = "alarms"
    __table_args__ = (
        CheckConstraint("state in ('active','acknowledged','cleared')", name="state"),
        CheckConstraint("severity in ('warning','alarm','critical')", name="severity"),
        Index(
            "uq_alarms_open_rule_point",
            "rule_id",
            "point_id",
            unique=True,
            postgresql_where="state <> 'cleared'",
        ),
        Index("ix_alarms_estate_id_state", "estate_id", "state"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    raised_at: Mapped[datetime] = mapped_column(TZ)
    acknowledged_at: Mapped[datetime | None] = mapped_column(TZ)
    cleared_at: Mapped[datetime | None] = mapped_column(TZ)
    clear_reason: Mapped[str | None] = mapped_column(String(32))
    peak: Mapped[float | None] = mapped_column(Double)
    last_value: Mapped[float | None] = mapped_column(Double)
