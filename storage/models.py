"""Every table of Steward (DESIGN.md §3). Alembic migrations are the schema source; these mirror them.

Time-series tables key on the *device* timestamp, never arrival time, so a redelivered or replayed
message lands on the same key and ``ON CONFLICT DO NOTHING`` makes ingestion idempotent.
"""

from __future__ import annotations

from datetime import date, datetime, time
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
    Time,
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
    __table_args__ = (
        # What the dispatcher claims: commands not yet acknowledged, expired or given up (worker/outbox.py).
        Index("ix_outbox_open", "created_at", postgresql_where="status IN ('pending','sent')"),
        CheckConstraint("status in ('pending','sent','acknowledged','refused','expired','failed')", name="status"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The device the command is for: only an ack on that device's own topic marks the row acknowledged.
    # Nullable for rows written before migration 0007 whose topic names no known device (never acked).
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acked_at: Mapped[datetime | None] = mapped_column(TZ)
    # pending → sent (PUBACK) → acknowledged (the device's "applied" ack) or refused (any other answer: the
    # reason in last_error); expired (its expiry passed first) or failed (resent `outbox_max_attempts` times
    # without an ack). Written by worker/outbox.py and ingest (ingest/writer.py).
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    expired_at: Mapped[datetime | None] = mapped_column(TZ)
    # Not before this: the publish backoff after a failed try, or the ack deadline after a PUBACK.
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZ)
    last_error: Mapped[str | None] = mapped_column(Text)


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
        CheckConstraint(
            "role in ('admin','engineer','steward','supervisor','manager','card_admin','billing_clerk','viewer')",
            name="role",
        ),
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
    # Where escalations and notices reach this person by e-mail (notifications/); none: no e-mail.
    email: Mapped[str | None] = mapped_column(String(254))


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
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        # The login limits count per client address and over every address in a recent window.
        Index("ix_login_failures_client_at", "client", "at"),
        Index("ix_login_failures_at", "at"),
    )
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


class WatchdogState(Base):
    """Since when a worker watchdog has been watching without a gap (alarms/stale.py): silence it did
    not see — the platform was down — is not held against a device."""

    __tablename__ = "watchdog_state"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    watching_since: Mapped[datetime] = mapped_column(TZ)
    last_run_at: Mapped[datetime] = mapped_column(TZ)


# --- alarms (alarms/) ------------------------------------------------------------------------------


class AlarmRuleRow(Base):
    """A configured rule: `kind` + `params` rebuild an `alarms.rules` dataclass.

    Point rules apply to every point whose metric equals `metric`, narrowed by `device_kind` /
    `room_kind` when set (rule packs attach by kind). Meter rules (`kind='meter'`) name their
    anomaly in `params.anomaly` and apply to meters of `device_kind`; `kind='round'` is the
    missed-inspection rule. `ticket_policy` says which severities open a ticket, with what
    category and priority (tickets/). Per estate, room or device overrides live in
    `alarm_rule_overrides`.
    """

    __tablename__ = "alarm_rules"
    __table_args__ = (
        CheckConstraint(
            "kind in ('threshold','repeat','rate_of_change','stale','composite','meter','round','command','access')",
            name="kind",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    metric: Mapped[str] = mapped_column(String(64), index=True)
    device_kind: Mapped[str | None] = mapped_column(String(48))
    room_kind: Mapped[str | None] = mapped_column(String(32))
    title_zh: Mapped[str] = mapped_column(String(128), default="", server_default="")
    title_en: Mapped[str] = mapped_column(String(128), default="", server_default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    severity_policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # e.g. {"min_severity": "alarm", "category": "electrical", "priority": {"alarm": "high", "critical": "urgent"}}
    ticket_policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class AlarmRuleOverride(Base):
    """Per estate / room / device tuning of one rule: `params` merge over the rule's (device > room > estate)."""

    __tablename__ = "alarm_rule_overrides"
    __table_args__ = (
        UniqueConstraint("rule_id", "scope", "scope_id"),
        CheckConstraint("scope in ('estate','room','device')", name="scope"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(8))
    scope_id: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    enabled: Mapped[bool | None] = mapped_column(Boolean)  # None: inherit
    ticket_policy: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_by: Mapped[str] = mapped_column(String(64), default="", server_default="")


class AlarmStateRow(Base):
    """Evaluator state per (rule, point) that is not idle: `alarms.rules.RuleState.to_json()`.

    Idle states (no open alarm, no pending condition) have no row, so a healthy estate's readings
    cost no writes here; see alarms/evaluator.py for how lateness is judged without one.
    """

    __tablename__ = "alarm_states"
    __table_args__ = (PrimaryKeyConstraint("rule_id", "point_id"), Index("ix_alarm_states_point_id", "point_id"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class Alarm(Base):
    """One alarm episode on a subject; the partial unique index allows at most one open alarm per (rule, subject).

    `subject` names what the alarm is about: ``point:<id>`` (point rules), ``device:<id>`` (meter
    anomalies), ``round:<schedule id>`` (missed inspection), ``building:<id>`` (building balance).
    The id columns repeat it for joins and filters.
    """

    __tablename__ = "alarms"
    __table_args__ = (
        CheckConstraint("state in ('active','acknowledged','cleared')", name="state"),
        CheckConstraint("severity in ('warning','alarm','critical')", name="severity"),
        Index(
            "uq_alarms_open_rule_subject",
            "rule_id",
            "subject",
            unique=True,
            postgresql_where="state <> 'cleared'",
        ),
        Index("ix_alarms_estate_id_state", "estate_id", "state"),
        # Only the open rows (a few per estate against years of cleared history): the alarm state of every
        # tile, card and overview is read through it (alarms/alarm_state.py).
        Index("ix_alarms_open_estate", "estate_id", postgresql_where="state <> 'cleared'"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alarm_rules.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(64))
    point_id: Mapped[int | None] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    raised_at: Mapped[datetime] = mapped_column(TZ)
    acknowledged_at: Mapped[datetime | None] = mapped_column(TZ)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    cleared_at: Mapped[datetime | None] = mapped_column(TZ)
    clear_reason: Mapped[str | None] = mapped_column(String(32))  # condition_ended | manual
    cleared_by: Mapped[str | None] = mapped_column(String(64))
    clear_note: Mapped[str | None] = mapped_column(Text)
    peak: Mapped[float | None] = mapped_column(Double)
    last_value: Mapped[float | None] = mapped_column(Double)
    # What the detector saw (meter anomalies: the readings and figures behind the finding).
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)


# --- repair tickets (tickets/) ---------------------------------------------------------------------


class Ticket(Base):
    """A repair / complaint / inspection ticket (domain-defaults §4); every step has its time and actor.

    `source_key` deduplicates automatic tickets: at most one open ticket per key, e.g.
    ``alarm:<rule id>:<subject>`` (one per alarm episode; a repeat alarm attaches) or ``round:<id>``.
    SLA due times are computed when the ticket is opened (tickets/sla.py) and stored, so a policy
    change never moves a running clock.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("source in ('alarm','inspection','resident','complaint','manual','patrol')", name="source"),
        CheckConstraint("priority in ('urgent','high','normal','minor')", name="priority"),
        CheckConstraint(
            "status in ('received','dispatched','accepted','on_site','resolved','callback_done','closed')",
            name="status",
        ),
        CheckConstraint(
            "callback_channel is null or callback_channel in ('in_person','phone','sms','wechat')",
            name="callback_channel",
        ),
        CheckConstraint("satisfaction is null or satisfaction between 1 and 5", name="satisfaction"),
        CheckConstraint(
            "clock_kind is null or clock_kind in "
            "('critical','alarm','warning','meter_vacant','meter_vacant_manual','meter')",
            name="clock_kind",
        ),
        CheckConstraint("fault is null or fault in ('outage','leak')", name="fault"),
        Index(
            "uq_tickets_open_source_key",
            "source_key",
            unique=True,
            postgresql_where="status <> 'closed' AND source_key IS NOT NULL",
        ),
        Index("ix_tickets_estate_id_status", "estate_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)  # 工单号, e.g. GD20261126-0007
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    source_key: Mapped[str | None] = mapped_column(String(96))
    category: Mapped[str] = mapped_column(String(24))  # electrical, water, hot_water, heating, fire, ...
    priority: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="received", server_default="received")
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="SET NULL"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    reporter_name: Mapped[str | None] = mapped_column(String(64))  # personal data: masked by role
    reporter_phone: Mapped[str | None] = mapped_column(String(32))
    received_by: Mapped[str] = mapped_column(String(64))  # staff username, or "system"
    received_at: Mapped[datetime] = mapped_column(TZ)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    dispatched_by: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None] = mapped_column(TZ)
    accepted_at: Mapped[datetime | None] = mapped_column(TZ)
    on_site_at: Mapped[datetime | None] = mapped_column(TZ)
    resolved_at: Mapped[datetime | None] = mapped_column(TZ)
    work_done: Mapped[str | None] = mapped_column(Text)
    parts: Mapped[str | None] = mapped_column(Text)
    labour_minutes: Mapped[int | None] = mapped_column(Integer)
    resident_signoff: Mapped[bool | None] = mapped_column(Boolean)
    callback_by: Mapped[str | None] = mapped_column(String(64))
    callback_at: Mapped[datetime | None] = mapped_column(TZ)
    callback_channel: Mapped[str | None] = mapped_column(String(16))
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)  # 1 very dissatisfied .. 5 very satisfied
    callback_note: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(TZ)
    # SLA clocks (tickets/sla.py); a complaint also has a feedback clock (24 h).
    on_site_due_at: Mapped[datetime | None] = mapped_column(TZ)
    resolve_due_at: Mapped[datetime | None] = mapped_column(TZ)
    callback_due_at: Mapped[datetime | None] = mapped_column(TZ)
    feedback_due_at: Mapped[datetime | None] = mapped_column(TZ)
    feedback_at: Mapped[datetime | None] = mapped_column(TZ)
    # 0 none, 1 supervisor (主管), 2 project manager (项目经理)
    escalation_level: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    escalated_at: Mapped[datetime | None] = mapped_column(TZ)
    # Warranty routing to the developer's customer service (工作联系单).
    warranty_party: Mapped[str | None] = mapped_column(String(64))
    warranty_due_at: Mapped[datetime | None] = mapped_column(TZ)
    warranty_ref: Mapped[str | None] = mapped_column(String(64))
    reopened_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    # The row of §4's platform table a ticket the platform opened takes its clocks and escalation route from
    # (tickets.const.ClockKind); null for resident reports, complaints, staff-logged tickets and patrol findings.
    clock_kind: Mapped[str | None] = mapped_column(String(24))
    # 停水/停电/停暖 (outage) or 漏水/渗漏 (leak): the SOP's important items, called back in person
    # (tickets.const.Fault).
    fault: Mapped[str | None] = mapped_column(String(16))


class TicketEvent(Base):
    """The ticket's timeline: one row per step, comment, escalation or attached alarm."""

    __tablename__ = "ticket_events"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(TZ)
    actor: Mapped[str] = mapped_column(String(64))  # staff username, or "system"
    action: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


# --- inspection rounds (alarms/rounds.py) -------------------------------------------------------------------


class RoundSchedule(Base):
    """A recurring round: an inspection of one room (domain-defaults §1), e.g. the LV cabinets every 2 h, or a
    customer-service round of the whole estate (`kind` other than 'equipment', `room_id` null), e.g. the renovating
    units twice a week (alarms/service_rounds.py)."""

    __tablename__ = "round_schedules"
    __table_args__ = (
        UniqueConstraint("room_id", "code"),
        # An estate-level (room-less) schedule is unique by code within its estate.
        Index("uq_round_schedules_estate_code", "estate_id", "code", unique=True, postgresql_where="room_id IS NULL"),
        CheckConstraint(
            "kind in ('equipment','vacant_units','renovation_check','renovation_sample','household_visits',"
            "'estate_patrol')",
            name="kind",
        ),
        CheckConstraint("(kind = 'equipment') = (room_id IS NOT NULL)", name="subject"),
        CheckConstraint("calendar is null or calendar in ('quarter')", name="calendar"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24), default="equipment", server_default="equipment")
    # The staff role whose round it is (core.roles.Role); null for equipment rounds (engineering's).
    role: Mapped[str | None] = mapped_column(String(16))
    # Calendar windows instead of anchor + k·interval: 'quarter' (Jan/Apr/Jul/Oct 1st, estate-local).
    calendar: Mapped[str | None] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128), default="", server_default="")
    interval_minutes: Mapped[int] = mapped_column(Integer)
    # Device kinds whose points the round covers (None: every device of the room).
    device_kinds: Mapped[list[str] | None] = mapped_column(ARRAY(String(48)))
    # Grace after the window ends before a round with neither telemetry nor a manual record is missed.
    grace_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    anchor: Mapped[datetime] = mapped_column(TZ)  # windows are [anchor + k·interval, anchor + (k+1)·interval)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")


class InspectionRound(Base):
    """One window of a schedule and how it was satisfied (telemetry or manual), or that it was missed."""

    __tablename__ = "inspection_rounds"
    __table_args__ = (
        UniqueConstraint("schedule_id", "window_start"),
        CheckConstraint("status in ('open','satisfied','manual_due','done','missed')", name="status"),
        Index("ix_inspection_rounds_room_id_window_start", "room_id", "window_start"),
        Index("ix_inspection_rounds_estate_id_kind_window_start", "estate_id", "kind", "window_start"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("round_schedules.id", ondelete="CASCADE"))
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24), default="equipment", server_default="equipment")  # its schedule's
    window_start: Mapped[datetime] = mapped_column(TZ)
    window_end: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    satisfied_by: Mapped[str | None] = mapped_column(String(16))  # telemetry | manual
    # Per point: the value and ts that satisfied it, or why it did not (stale, out of range).
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    alarm_id: Mapped[int | None] = mapped_column(ForeignKey("alarms.id", ondelete="SET NULL"))
    performed_by: Mapped[str | None] = mapped_column(String(64))
    performed_at: Mapped[datetime | None] = mapped_column(TZ)
    readings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    notes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


# --- prepaid hot-water billing (billing/) ------------------------------------------------------------
#
# Money is integer fen (BigInteger) everywhere; exact sub-fen values (before rounding) are Numeric.
# The ledger is double entry with the debit-positive sign: every transaction's entries sum to zero
# (a deferred constraint trigger checks it at commit) and entries and transactions are append-only
# (triggers refuse UPDATE and DELETE). A household's prepaid account is a liability, so its balance
# is −Σ(entries); `billing_accounts.balance_fen` caches that and is checked against the entries.


class Tariff(Base):
    """A hot-water price version of one estate, in force from `effective_from` until the next one."""

    __tablename__ = "tariffs"
    __table_args__ = (UniqueConstraint("estate_id", "effective_from"),)
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    effective_from: Mapped[datetime] = mapped_column(TZ)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class TariffTier(Base):
    """One step of a tariff: fen per m³ for the month's volume up to `up_to_m3` (NULL: no upper bound)."""

    __tablename__ = "tariff_tiers"
    __table_args__ = (
        PrimaryKeyConstraint("tariff_id", "seq"),
        CheckConstraint("price_fen_per_m3 >= 0", name="price"),
        CheckConstraint("up_to_m3 IS NULL OR up_to_m3 > 0", name="up_to"),
    )
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(SmallInteger)
    up_to_m3: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))
    price_fen_per_m3: Mapped[int] = mapped_column(Integer)


class BillingAccount(Base):
    """A ledger account: a household's prepaid hot-water account (one per unit) or an estate's own account."""

    __tablename__ = "billing_accounts"
    __table_args__ = (
        CheckConstraint(
            "kind in ('hot_water','cash_counter','cash_bank_transfer','cash_online','revenue_hot_water','adjustments',"
            "'revenue_access_cards','deposits_held','revenue_forfeits')",
            name="kind",
        ),
        CheckConstraint("(kind = 'hot_water') = (unit_id IS NOT NULL)", name="unit_for_household"),
        Index("uq_billing_accounts_estate_kind", "estate_id", "kind", unique=True, postgresql_where="unit_id IS NULL"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), unique=True)
    # Cached −Σ(entries) for households (Σ for the estate's accounts); queries.check_balances compares.
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    opened_at: Mapped[datetime] = mapped_column(TZ)


class LedgerTransaction(Base):
    """One balanced posting; `key` makes it idempotent (payment:<key>, charge:<device>:<from_ts>, …)."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint(
            "kind in ('payment','charge','refund','adjustment','fee','deposit','deposit_refund','deposit_forfeit')",
            name="kind",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    at: Mapped[datetime] = mapped_column(TZ)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class LedgerEntry(Base):
    """A signed amount (debit +, credit −) on one account within one transaction."""

    __tablename__ = "ledger_entries"
    __table_args__ = (CheckConstraint("amount_fen <> 0", name="nonzero"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class Payment(Base):
    """A top-up at the counter, by bank transfer or online; `idempotency_key` is unique across estates."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("method in ('counter','bank_transfer','online')", name="method"),
        CheckConstraint("amount_fen > 0", name="amount"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), unique=True)
    received_at: Mapped[datetime] = mapped_column(TZ)
    actor: Mapped[str] = mapped_column(String(64))
    provider_ref: Mapped[str | None] = mapped_column(String(128))


class BillingCursor(Base):
    """How far a hot-water meter has been billed: the last reading every charge before it ends at."""

    __tablename__ = "billing_cursors"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"))
    last_ts: Mapped[datetime] = mapped_column(TZ)
    last_register: Mapped[Decimal] = mapped_column(Numeric)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class BillingHold(Base):
    """An interval that looks like a reset or a replacement: not billed until a person confirms it."""

    __tablename__ = "billing_holds"
    __table_args__ = (
        UniqueConstraint("device_id", "from_ts"),
        CheckConstraint("kind in ('reset','replacement')", name="kind"),
        CheckConstraint("status in ('held','confirmed')", name="status"),
        CheckConstraint("to_ts > from_ts", name="interval"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), index=True)
    from_ts: Mapped[datetime] = mapped_column(TZ)
    to_ts: Mapped[datetime] = mapped_column(TZ)
    from_register: Mapped[Decimal] = mapped_column(Numeric)
    to_register: Mapped[Decimal] = mapped_column(Numeric)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="held", server_default="held")
    detected_at: Mapped[datetime] = mapped_column(TZ)


class MeterReplacement(Base):
    """The confirmation of a held interval: the old meter's final and the new one's initial register."""

    __tablename__ = "meter_replacements"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    hold_id: Mapped[int] = mapped_column(ForeignKey("billing_holds.id", ondelete="RESTRICT"), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # what the person found: reset | replacement
    old_final_register: Mapped[Decimal] = mapped_column(Numeric)
    new_initial_register: Mapped[Decimal] = mapped_column(Numeric)
    replaced_at: Mapped[datetime] = mapped_column(TZ)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(TZ)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class MeterCharge(Base):
    """The charge for one interval of one meter; (device, from_ts) and (device, to_ts) are unique.

    `month` is the estate-local month the interval ends in (the tier basis); `cum_*` are the account's
    month totals after this charge, and amount_fen = round(cum_value) − round(cum_value − value), so
    rounding never drifts over many small intervals.
    """

    __tablename__ = "meter_charges"
    __table_args__ = (
        UniqueConstraint("device_id", "from_ts"),
        UniqueConstraint("device_id", "to_ts"),
        CheckConstraint("to_ts > from_ts", name="interval"),
        CheckConstraint("volume_m3 >= 0", name="volume"),
        CheckConstraint("amount_fen >= 0", name="amount"),
        CheckConstraint("kind in ('normal','rollover','reset','replacement')", name="kind"),
        Index("ix_meter_charges_account_id_month", "account_id", "month"),
        Index("ix_meter_charges_booked_period", "booked_period", postgresql_where="booked_period IS NOT NULL"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"))
    from_ts: Mapped[datetime] = mapped_column(TZ)
    to_ts: Mapped[datetime] = mapped_column(TZ)
    from_register: Mapped[Decimal] = mapped_column(Numeric)
    to_register: Mapped[Decimal] = mapped_column(Numeric)
    kind: Mapped[str] = mapped_column(String(16))
    volume_m3: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    month: Mapped[date] = mapped_column(Date)
    value_fen: Mapped[Decimal] = mapped_column(Numeric(24, 6))
    cum_volume_m3: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    cum_value_fen: Mapped[Decimal] = mapped_column(Numeric(24, 6))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    pricing: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default="[]")
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("billing_holds.id", ondelete="RESTRICT"), unique=True)
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), unique=True
    )
    charged_at: Mapped[datetime] = mapped_column(TZ)
    # NULL: booked in the quarter its interval ends in. Set: a late reading whose quarter was closed when
    # it was charged, booked (ledger `at` = this quarter's start) in this later open quarter (billing/periods.py).
    booked_period: Mapped[str | None] = mapped_column(String(7))


# --- notification deliveries (notifications/) -----------------------------------------------------


class NotificationDelivery(Base):
    """One message to one recipient over one channel; (key, channel, recipient) is sent at most once."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("key", "channel", "recipient"),
        CheckConstraint("status in ('pending','sent','failed','gave_up')", name="status"),
        # What the dispatcher claims: due rows not yet sent or given up.
        Index("ix_notification_deliveries_due", "next_attempt_at", postgresql_where="status IN ('pending','failed')"),
        Index("ix_notification_deliveries_source_status", "source", "status"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The notice's or escalation's idempotency key, e.g. ``ticket:17:escalated:on_site:1:2026-11-26T...``.
    key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32))  # log | email | wecom_robot
    recipient: Mapped[str] = mapped_column(String(254))  # an e-mail address, a robot role tag, a log name
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))  # ticket_escalation, billing_notice, ...
    # The estate it concerns, so scoped staff see only their estates' deliveries; none: company-wide.
    estate_id: Mapped[int | None] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    # Channel-specific extras, e.g. WeCom ``mentioned_mobile_list``.
    extra: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(TZ)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZ)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)


# --- property-fee dunning (billing/dunning.py) ---------------------------------------------------------------
#
# Property-fee arrears come from the company's fee system as a CSV snapshot per estate; a unit in arrears has one
# open dunning case whose ladder issues documents (提示函 → 催缴函 → 紧急催缴函, or the 16th/24th/after-30th
# notices) and then tasks (律师函, 诉讼). The ladder only writes these tables: never the outbox, never the
# hot-water ledger (Civil Code §944, domain-defaults §5).


class DunningCase(Base):
    """One episode of a unit's property-fee arrears: opened by the import that first shows it owing, closed by
    the import that shows it paid. At most one open case per unit."""

    __tablename__ = "dunning_cases"
    __table_args__ = (
        CheckConstraint("variant in ('ladder','monthly')", name="variant"),
        CheckConstraint("close_reason is null or close_reason in ('paid')", name="close_reason"),
        Index("uq_dunning_cases_open_unit", "unit_id", unique=True, postgresql_where="closed_at IS NULL"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    variant: Mapped[str] = mapped_column(String(16))  # fixed at opening: a setting change never mixes ladders
    opened_on: Mapped[date] = mapped_column(Date)  # the estate-local day the arrears were first imported
    opened_at: Mapped[datetime] = mapped_column(TZ)
    closed_at: Mapped[datetime | None] = mapped_column(TZ)
    close_reason: Mapped[str | None] = mapped_column(String(16))


class PropertyFeeArrears(Base):
    """A unit's unpaid property fee for one period, as the fee system last exported it (amounts in fen)."""

    __tablename__ = "property_fee_arrears"
    __table_args__ = (
        UniqueConstraint("unit_id", "period"),
        CheckConstraint("amount_fen >= 0", name="amount"),
        CheckConstraint("late_fee_fen >= 0", name="late_fee"),
        Index("ix_property_fee_arrears_estate_id_settled_at", "estate_id", "settled_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(8))  # 2026-10 or 2026-Q3
    period_start: Mapped[date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    late_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    imported_at: Mapped[datetime] = mapped_column(TZ)
    import_batch: Mapped[str] = mapped_column(String(32))  # sha-256 prefix of the file: the same file, the same batch
    settled_at: Mapped[datetime | None] = mapped_column(TZ)  # a later import no longer listed it (paid)


class DunningDocument(Base):
    """A numbered letter of the ladder, rendered from a versioned template and kept as issued (proof of demand)."""

    __tablename__ = "dunning_documents"
    __table_args__ = (
        UniqueConstraint("case_id", "step"),
        UniqueConstraint("estate_id", "number"),
        CheckConstraint(
            "kind in ('reminder','demand','urgent_demand','notice_16','notice_24','notice_final')", name="kind"
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id", ondelete="RESTRICT"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    step: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(24))
    number: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(48))
    template_version: Mapped[int] = mapped_column(SmallInteger)
    issued_on: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(TZ)
    deadline: Mapped[date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    late_fee_fen: Mapped[int] = mapped_column(BigInteger)
    periods: Mapped[list[str]] = mapped_column(ARRAY(String(8)), default=list, server_default="{}")
    owner_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    body: Mapped[str] = mapped_column(Text)  # the rendered HTML, as printed and served


class DunningTask(Base):
    """A step of the ladder that a person does: the lawyer's letter (律师函) and the suit (诉讼)."""

    __tablename__ = "dunning_tasks"
    __table_args__ = (
        UniqueConstraint("case_id", "step"),
        CheckConstraint("kind in ('lawyer_letter','litigation')", name="kind"),
        CheckConstraint("status in ('open','done','cancelled')", name="status"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("dunning_cases.id", ondelete="RESTRICT"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    step: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    created_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(TZ)
    due_on: Mapped[date] = mapped_column(Date)
    assignee_role: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[datetime | None] = mapped_column(TZ)


# --- hot-water notices, supply restriction and the holiday calendar (billing/notices.py) ------------------
#
# Restriction (限供) and suspension (停供) are legal only with prior written notice of the date, never at
# night, on weekends or public holidays, and never for a vulnerable household (domain-defaults §5); these
# tables keep the proof: every notice with its number, template version, rendered text and who sent it when.


class BillingHoliday(Base):
    """One day of the public-holiday calendar: a holiday (is_workday false) or a 调休 make-up working day."""

    __tablename__ = "billing_holidays"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    is_workday: Mapped[bool] = mapped_column(Boolean, default=False)
    loaded_at: Mapped[datetime] = mapped_column(TZ)


class BillingHouseholdFlag(Base):
    """A household flagged vulnerable (elderly alone, ill, …): its supply is never restricted. Audited."""

    __tablename__ = "billing_household_flags"
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), primary_key=True)
    vulnerable: Mapped[bool] = mapped_column(Boolean)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(TZ)
    reason: Mapped[str] = mapped_column(Text)


class BillingNotice(Base):
    """A written notice to a household: renewal, second renewal, restriction, suspension, restoration.

    `number` runs per estate and year (RS-2026-000123). `effective_at` is the date a restriction or
    suspension notice states; `executed_at` when that step was taken. `body` is the text as rendered
    with `template_version`, kept unchanged as proof of what the household was told.
    """

    __tablename__ = "billing_notices"
    __table_args__ = (
        UniqueConstraint("estate_id", "year", "seq"),
        UniqueConstraint("estate_id", "number"),
        CheckConstraint("kind in ('renewal','renewal_second','restriction','suspension','restoration')", name="kind"),
        CheckConstraint("status in ('draft','approved','sent','cancelled')", name="status"),
        CheckConstraint("kind not in ('restriction','suspension') OR effective_at IS NOT NULL", name="states_date"),
        Index("ix_billing_notices_account_id_kind", "account_id", "kind"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(24))
    year: Mapped[int] = mapped_column(SmallInteger)
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="draft", server_default="draft")
    balance_fen: Mapped[int] = mapped_column(BigInteger)
    daily_fen: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    pay_by: Mapped[date | None] = mapped_column(Date)
    effective_at: Mapped[datetime | None] = mapped_column(TZ)
    executed_at: Mapped[datetime | None] = mapped_column(TZ)
    template_version: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TZ)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(TZ)
    sent_by: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None] = mapped_column(TZ)


class BillingSupplyState(Base):
    """A household's hot-water supply: normal, restricted (限供) or suspended (停供); no row means normal."""

    __tablename__ = "billing_supply_states"
    __table_args__ = (CheckConstraint("state in ('normal','restricted','suspended')", name="state"),)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(TZ)


class BillingSupplyChange(Base):
    """Each change of supply state, with the notice it rests on and the valve commands it queued."""

    __tablename__ = "billing_supply_changes"
    __table_args__ = (
        CheckConstraint("from_state in ('normal','restricted','suspended')", name="from_state"),
        CheckConstraint("to_state in ('normal','restricted','suspended')", name="to_state"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(TZ)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("billing_notices.id", ondelete="RESTRICT"))
    outbox_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list, server_default="{}")


# --- access cards (access/): doors, cards and their scopes (issue 12, domain-defaults §6) -----------------
# A controller's whitelist is derived, never stored here: active cards × their doors × the doors' controller
# (access/whitelist.py). Card validity rests on these rows alone — never on a fee or arrears.


class AccessDoor(Base):
    """A door (gate, building or unit entrance, garage, equipment room) served by one door controller."""

    __tablename__ = "access_doors"
    __table_args__ = (
        UniqueConstraint("estate_id", "code"),
        CheckConstraint("kind in ('gate','building','unit_entrance','garage','equipment_room')", name="kind"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))  # as the controller reports it in a swipe, e.g. 3-1-main
    name: Mapped[str] = mapped_column(String(128), default="")
    controller_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="SET NULL"))
    entrance: Mapped[str | None] = mapped_column(String(16))  # unit entrances: the 单元 it opens
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="SET NULL"))


class AccessCard(Base):
    """One issued card: the 《智能卡发放登记表》 record (holder, UID, type, doors, validity, issuer, fee/deposit)."""

    __tablename__ = "access_cards"
    __table_args__ = (
        CheckConstraint("card_type in ('owner','family','tenant','renovation','visitor','staff')", name="card_type"),
        CheckConstraint("status in ('active','lost','revoked','expired','returned')", name="status"),
        CheckConstraint("deposit_state in ('none','held','refunded','forfeited')", name="deposit_state"),
        CheckConstraint("uid ~ '^[0-9A-F]+$'", name="uid_hex"),
        CheckConstraint("fee_fen >= 0 AND deposit_fen >= 0", name="money"),
        CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="validity"),
        CheckConstraint("(card_type = 'staff') OR unit_id IS NOT NULL", name="unit_unless_staff"),
        # One physical card is live for one holder at a time; a returned card may be issued again.
        Index("uq_access_cards_live_uid", "format", "uid", unique=True, postgresql_where="status = 'active'"),
        Index("ix_access_cards_unit_status", "unit_id", "status"),
        Index("ix_access_cards_expiry", "valid_until", postgresql_where="status = 'active'"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    card_type: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))  # mifare4 | mifare7 | em4100
    uid: Mapped[str] = mapped_column(String(20))  # uppercase hex as the reader reads it
    holder_name: Mapped[str] = mapped_column(String(64))  # personal data
    holder_phone: Mapped[str] = mapped_column(String(32), default="", server_default="")
    staff_role: Mapped[str | None] = mapped_column(String(24))  # staff cards: the role their doors follow
    valid_from: Mapped[datetime] = mapped_column(TZ)
    valid_until: Mapped[datetime | None] = mapped_column(TZ)  # NULL: until revoked (owner, family)
    # Weekly profile {"days": [1..7], "windows": [["08:00","18:00"]]} in the estate's timezone; NULL: always.
    time_profile: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    status_at: Mapped[datetime] = mapped_column(TZ)
    status_by: Mapped[str] = mapped_column(String(64))
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    issued_at: Mapped[datetime] = mapped_column(TZ)
    issued_by: Mapped[str] = mapped_column(String(64))
    free: Mapped[bool] = mapped_column(Boolean)  # within the household's free quota
    fee_fen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deposit_fen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deposit_state: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("access_cards.id", ondelete="RESTRICT"))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class AccessCardDoor(Base):
    """A card's scope: the doors it opens (its time profile is the card's)."""

    __tablename__ = "access_card_doors"
    card_id: Mapped[int] = mapped_column(ForeignKey("access_cards.id", ondelete="CASCADE"), primary_key=True)
    door_id: Mapped[int] = mapped_column(
        ForeignKey("access_doors.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class DeviceWhitelistState(Base):
    """What each door controller says it holds (issue 12 §3): its whitelist version, digest and entry count,
    from its latest report: the ``status`` it publishes on (re)connect or the first answer to a whitelist
    command (``ack``). Written by ingest (ingest/writer.py), read by storage/whitelist_states.py."""

    __tablename__ = "device_whitelist_states"
    __table_args__ = (CheckConstraint("via in ('status','ack')", name="via"),)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(Integer)
    # A status's device time, an ack's arrival time (acks carry no device time): a report older than the
    # stored one, or the same one redelivered, never replaces it.
    reported_at: Mapped[datetime] = mapped_column(TZ)
    received_at: Mapped[datetime] = mapped_column(TZ)
    via: Mapped[str] = mapped_column(String(8))


# --- billing periods, quarterly statements, manual readings (billing/periods.py, statements.py, manual_readings.py)


class BillingPeriod(Base):
    """A quarter of one estate (estate-local [starts_at, ends_at)): open, or closed with who and when.

    Once closed its statements never change: a charge whose interval ends in it but is written later
    (a late reading) is booked in the first open quarter (meter_charges.booked_period)."""

    __tablename__ = "billing_periods"
    __table_args__ = (
        UniqueConstraint("estate_id", "period"),
        CheckConstraint("status in ('open','closed')", name="status"),
        CheckConstraint("ends_at > starts_at", name="span"),
        CheckConstraint("(status = 'closed') = (closed_at IS NOT NULL)", name="closed_when"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(7))  # 2026Q4
    starts_at: Mapped[datetime] = mapped_column(TZ)
    ends_at: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[str] = mapped_column(String(8), default="open", server_default="open")
    closed_at: Mapped[datetime | None] = mapped_column(TZ)
    closed_by: Mapped[str | None] = mapped_column(String(64))


class BillingStatement(Base):
    """A household's quarterly statement, derived from the ledger and meter_charges (integer fen).

    closing = opening + payments − refunds + adjustments − charges − late_charges (a check). `digest`
    is a hash of the content: a rerun rewrites a row only when the figures moved (an open quarter), and
    a closed quarter's rows are never rewritten."""

    __tablename__ = "billing_statements"
    __table_args__ = (
        UniqueConstraint("account_id", "period"),
        Index("ix_billing_statements_estate_id_period", "estate_id", "period"),
        CheckConstraint(
            "closing_fen = opening_fen + payments_fen - refunds_fen + adjustments_fen - charges_fen - late_fen",
            name="balances",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    account_id: Mapped[int] = mapped_column(ForeignKey("billing_accounts.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(String(7))
    starts_at: Mapped[datetime] = mapped_column(TZ)
    ends_at: Mapped[datetime] = mapped_column(TZ)
    opening_fen: Mapped[int] = mapped_column(BigInteger)
    charges_fen: Mapped[int] = mapped_column(BigInteger)
    charges_m3: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    late_fen: Mapped[int] = mapped_column(BigInteger)  # 上期补收: late readings of closed quarters booked here
    late_m3: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    payments_fen: Mapped[int] = mapped_column(BigInteger)
    refunds_fen: Mapped[int] = mapped_column(BigInteger)
    adjustments_fen: Mapped[int] = mapped_column(BigInteger)  # signed: > 0 credited the household
    closing_fen: Mapped[int] = mapped_column(BigInteger)
    first_reading_at: Mapped[datetime | None] = mapped_column(TZ)
    first_register: Mapped[Decimal | None] = mapped_column(Numeric)
    last_reading_at: Mapped[datetime | None] = mapped_column(TZ)
    last_register: Mapped[Decimal | None] = mapped_column(Numeric)
    # [{tariff_id, effective_from, volume_m3, value_fen}] and [{device, period, from, to, volume_m3, amount_fen}]
    by_tariff: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default="[]")
    late: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default="[]")
    digest: Mapped[str] = mapped_column(String(64))
    generated_at: Mapped[datetime] = mapped_column(TZ)


class ManualReading(Base):
    """A register read by hand (SOP: the 25th–30th of a quarter's last month) and its reconciliation.

    verdict: ok (within tolerance), mismatch (a repair ticket is opened for the meter, once: ticket_id),
    no_data (no register reading near read_at to compare with)."""

    __tablename__ = "billing_manual_readings"
    __table_args__ = (
        CheckConstraint("verdict in ('ok','mismatch','no_data')", name="verdict"),
        CheckConstraint("value >= 0", name="value"),
        UniqueConstraint("device_id", "read_at"),  # one meter read at one instant is one reading
        Index("ix_billing_manual_readings_estate_id_read_at", "estate_id", "read_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="RESTRICT"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="RESTRICT"))
    read_at: Mapped[datetime] = mapped_column(TZ)
    value: Mapped[Decimal] = mapped_column(Numeric)
    reader: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    in_sop_window: Mapped[bool] = mapped_column(Boolean)
    register: Mapped[Decimal | None] = mapped_column(Numeric)  # the platform's register at read_at
    register_method: Mapped[str | None] = mapped_column(String(16))  # interpolated | nearest
    difference: Mapped[Decimal | None] = mapped_column(Numeric)  # value − register
    tolerance: Mapped[Decimal | None] = mapped_column(Numeric)
    verdict: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(TZ)


class AccessControllerSync(Base):
    """Each door controller's whitelist sync (access/sync.py): what the platform last sent it (the desired
    version, its digest and its entries, from which the next delta is computed) and what the controller has
    acknowledged applying. pending = applied_version < desired_version (待同步)."""

    __tablename__ = "access_controller_sync"
    __table_args__ = (
        Index("ix_access_controller_sync_pending", "pending_since", postgresql_where="pending_since IS NOT NULL"),
    )
    controller_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    desired_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    desired_digest: Mapped[str] = mapped_column(String(64))
    # The wire entries (WhitelistEntryV1 JSON, sorted by uid) of the desired version: the base of the next delta.
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    applied_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    applied_at: Mapped[datetime | None] = mapped_column(TZ)
    # Since when the controller has been behind (NULL: synced); the unsynced alarm counts from here.
    pending_since: Mapped[datetime | None] = mapped_column(TZ)
    last_full_at: Mapped[datetime | None] = mapped_column(TZ)  # the last snapshot queued
    last_full_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The next change goes as a snapshot (a refusal, a report of a version or digest it should not have, a request).
    full_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    full_reason: Mapped[str | None] = mapped_column(String(32))
    last_queued_at: Mapped[datetime | None] = mapped_column(TZ)
    # The controller's own report (device_whitelist_states.reported_at) last compared with the desired list.
    report_checked_at: Mapped[datetime | None] = mapped_column(TZ)
    # The nightly reconciliation last asked this controller for its report.
    reconcile_requested_at: Mapped[datetime | None] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


# --- warranty (tickets/warranty.py) --------------------------------------------------------------------------------


class WarrantyHandover(Base):
    """When the developer handed an estate (building_id NULL) or one building over, and who the developer is:
    the start of every warranty period (domain-defaults §4, seeds/002 4.2.3). A building's row beats the estate's."""

    __tablename__ = "warranty_handovers"
    __table_args__ = (
        Index("uq_warranty_handovers_estate", "estate_id", unique=True, postgresql_where="building_id IS NULL"),
        Index("uq_warranty_handovers_building", "building_id", unique=True, postgresql_where="building_id IS NOT NULL"),
        CheckConstraint("response_days between 1 and 90", name="response_days"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="CASCADE"))
    handover_on: Mapped[date] = mapped_column(Date)
    developer: Mapped[str] = mapped_column(String(64))  # 开发商 (its customer service takes the 工作联系单)
    # The due date the work-contact form gives the developer, in days from the ticket.
    response_days: Mapped[int] = mapped_column(SmallInteger, default=7, server_default="7")
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class WarrantyTerm(Base):
    """An estate's edited warranty period for one item; items without a row take tickets.warranty.DEFAULT_TERMS."""

    __tablename__ = "warranty_terms"
    __table_args__ = (
        CheckConstraint("item in ('roof_waterproofing','heating','decoration','mep')", name="item"),
        CheckConstraint("(years is null) <> (heating_seasons is null)", name="one_measure"),
        CheckConstraint("years is null or years between 0 and 50", name="years"),
        CheckConstraint("heating_seasons is null or heating_seasons between 0 and 50", name="heating_seasons"),
    )
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    item: Mapped[str] = mapped_column(String(24), primary_key=True)
    years: Mapped[int | None] = mapped_column(SmallInteger)
    heating_seasons: Mapped[int | None] = mapped_column(SmallInteger)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


class TicketChargeback(Base):
    """The developer missed a warranty ticket's due date: engineering repairs it and bills the developer.

    One row per ticket, written by tickets.warranty.charge_missed; the fee side reads it (party, ticket, the
    repair's labour and parts on the ticket) and fills `amount_fen` when it prices the work."""

    __tablename__ = "ticket_chargebacks"
    __table_args__ = (CheckConstraint("amount_fen is null or amount_fen >= 0", name="amount_fen"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    party: Mapped[str] = mapped_column(String(64))
    warranty_item: Mapped[str | None] = mapped_column(String(24))
    due_at: Mapped[datetime] = mapped_column(TZ)
    missed_at: Mapped[datetime] = mapped_column(TZ)
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)


# --- the 18:30 daily summary (alarms/daily_summary*.py) --------------------------------------------------------------


class DailySummary(Base):
    """One estate's daily summary as sent (seeds/001 4.10: 每日18:30前发送): one row per estate and local day,
    written in the transaction that queues its messages, so the day is summarised and sent once. `counts` keeps the
    figures as they were at `sent_at` (the page recomputes the day from the tables)."""

    __tablename__ = "daily_summaries"
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # the estate's local date
    sent_at: Mapped[datetime] = mapped_column(TZ)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


class StaffAlarmPrefs(Base):
    """One staff member's alarm banner (issue 15 §2): from which severity a new alarm shows and sounds, and
    whether the sound is muted. No row: the defaults (报警 and above, sound on)."""

    __tablename__ = "staff_alarm_prefs"
    __table_args__ = (
        CheckConstraint("banner_min_severity in ('warning','alarm','critical')", name="banner_min_severity"),
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    banner_min_severity: Mapped[str] = mapped_column(String(16), default="alarm", server_default="alarm")
    muted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    updated_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())


# --- customer-service round tasks (alarms/service_rounds.py) ------------------------------------------------------


class RoundTask(Base):
    """One thing to do in a customer-service round: a unit to check or visit, or a building to patrol.

    Created with the round (its window's units or buildings, chosen then); recorded done or skipped (with a reason)
    by the staff member on site; a finding opens a ticket (`ticket_id`)."""

    __tablename__ = "round_tasks"
    __table_args__ = (
        UniqueConstraint("round_id", "unit_id"),
        UniqueConstraint("round_id", "building_id"),
        CheckConstraint("num_nonnulls(unit_id, building_id) = 1", name="subject"),
        CheckConstraint("status in ('pending','done','skipped')", name="status"),
        CheckConstraint("outcome is null or outcome in ('ok','finding')", name="outcome"),
        Index("ix_round_tasks_estate_id_status", "estate_id", "status"),
        Index("ix_round_tasks_unit_id", "unit_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("inspection_rounds.id", ondelete="CASCADE"), index=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    performed_by: Mapped[str | None] = mapped_column(String(64))
    performed_at: Mapped[datetime | None] = mapped_column(TZ)
    outcome: Mapped[str | None] = mapped_column(String(16))  # ok | finding (done tasks)
    notes: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)


# --- energy reports (issue 15 §4) -----------------------------------------------------------------------


class EnergyMeterDay(Base):
    """One meter's consumption on one estate-local day: the sum of its intervals ending that day (kWh or m³).

    Kept by facility/energy_rollup.py from `meter_readings` with billing's consumption maths
    (facility.meters.consumption: rollover, reset, replacement). `last_ts`/`last_register` are the last
    reading folded in (the next run goes on from there, as billing's cursor does). `held_from` lists the
    starts of the intervals whose register fell without a rollover (a reset or a replaced meter) and that no
    confirmed replacement record covers yet: their volume is not in `volume` until one is recorded."""

    __tablename__ = "energy_meter_days"
    __table_args__ = (
        PrimaryKeyConstraint("device_id", "day"),
        Index("ix_energy_meter_days_estate_id_day", "estate_id", "day"),
        # The few rows still waiting for a replacement record: every rollup run looks for them.
        Index("ix_energy_meter_days_held", "estate_id", postgresql_where="cardinality(held_from) > 0"),
        CheckConstraint("volume >= 0", name="volume"),
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    volume: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    held_from: Mapped[list[datetime]] = mapped_column(ARRAY(TZ), default=list, server_default="{}")
    last_ts: Mapped[datetime] = mapped_column(TZ)
    last_register: Mapped[Decimal] = mapped_column(Numeric)
    updated_at: Mapped[datetime] = mapped_column(TZ)


class EnergyBuildingDay(Base):
    """Σ of `energy_meter_days` per estate-local day, utility, building and role (households or master meters),
    rewritten by the rollup for every (estate, day) it touched: the report's totals, daily figures and
    comparisons read these few rows (tens a day) instead of one row per meter and day."""

    __tablename__ = "energy_building_days"
    __table_args__ = (
        Index("ix_energy_building_days_estate_id_day", "estate_id", "day"),
        CheckConstraint("volume >= 0", name="volume"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(48))
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id", ondelete="CASCADE"))  # None: estate
    master: Mapped[bool] = mapped_column(Boolean)
    volume: Mapped[Decimal] = mapped_column(Numeric(24, 6))
    held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class EnergyMeterMonth(Base):
    """Σ of one meter's `energy_meter_days` over an estate-local month (the top consumers and vacant units),
    moved by the same amounts as its day rows in the same transaction."""

    __tablename__ = "energy_meter_months"
    __table_args__ = (
        PrimaryKeyConstraint("device_id", "month"),
        Index("ix_energy_meter_months_estate_id_month", "estate_id", "month"),
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    month: Mapped[date] = mapped_column(Date)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    volume: Mapped[Decimal] = mapped_column(Numeric(24, 6))


# --- shifts, shift handover and the wall display (alarms/shifts.py, alarms/handover.py, accounts/display.py) -----


class ShiftDefinition(Base):
    """One shift of an estate's day in the estate's local time; an estate without rows works the defaults
    (alarms/shifts.py: 白班 08:00–20:00, 夜班 20:00–08:00). A shift ending at or before its start runs past midnight."""

    __tablename__ = "shift_definitions"
    __table_args__ = (
        UniqueConstraint("estate_id", "code"),
        CheckConstraint("starts_at <> ends_at", name="not_empty"),
    )
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    name_zh: Mapped[str] = mapped_column(String(32))
    name_en: Mapped[str] = mapped_column(String(32), default="", server_default="")
    starts_at: Mapped[time] = mapped_column(Time)
    ends_at: Mapped[time] = mapped_column(Time)


class ShiftHandover(Base):
    """The record of one shift (交接班记录): the outgoing engineer's notes and the shift's facts frozen when they
    handed over, then the incoming engineer's sign-off. Once signed it is final: a trigger refuses any UPDATE."""

    __tablename__ = "shift_handovers"
    __table_args__ = (
        UniqueConstraint("estate_id", "shift_start"),
        CheckConstraint("shift_end > shift_start", name="window"),
        CheckConstraint("(signed_at IS NULL) = (incoming_id IS NULL)", name="signed"),
        CheckConstraint("incoming_id IS NULL OR incoming_id <> outgoing_id", name="two_people"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"))
    shift_code: Mapped[str] = mapped_column(String(16))
    shift_name_zh: Mapped[str] = mapped_column(String(32))
    shift_name_en: Mapped[str] = mapped_column(String(32), default="", server_default="")
    shift_start: Mapped[datetime] = mapped_column(TZ)
    shift_end: Mapped[datetime] = mapped_column(TZ)
    # Staff accounts are deactivated, never deleted: a record keeps its people.
    outgoing_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    outgoing_name: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The shift's facts as of handed_over_at (alarms.handover.shift_facts): what the record prints.
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    handed_over_at: Mapped[datetime] = mapped_column(TZ)
    incoming_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    incoming_name: Mapped[str | None] = mapped_column(String(64))
    incoming_note: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime | None] = mapped_column(TZ)


class DisplayToken(Base):
    """A control-room screen's credential for one estate's wall display (大屏); only its SHA-256 is kept.

    It opens /wall of that estate and its live stream, read-only, and nothing else (accounts/display.py)."""

    __tablename__ = "display_tokens"
    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TZ, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TZ)
    last_used_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
