"""Typed settings for every Steward process (environment variables prefixed ``STEWARD_``)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A password nobody should run production with; refused outside development.
UNSAFE_SECRETS = frozenset({"", "changethis", "steward", "password", "admin"})


class Environment(StrEnum):
    development = "development"
    testing = "testing"
    production = "production"


class Settings(BaseSettings):
    """All knobs, one place. Unset URLs mean "start an embedded server" (development only)."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset → embedded PostgreSQL under data_dir"
    )
    # A streaming replica for the pages' and the API's reads (web/deps.py says which); None = the primary.
    database_read_url: str | None = Field(
        default=None, description="PostgreSQL URL of a streaming replica for reads; unset → the primary"
    )
    mqtt_url: str | None = Field(
        default=None, description="mqtt://host:port, or mqtts://host:8883 for TLS; unset → embedded broker"
    )
    # TLS to the broker (mqtts://): the CA that signed the broker's certificate (unset: the system's CAs), and a
    # client certificate and key where the broker asks for one (require_certificate).
    mqtt_tls_ca_file: Path | None = None
    mqtt_tls_cert_file: Path | None = None
    mqtt_tls_key_file: Path | None = None
    mqtt_username: str | None = None
    mqtt_password: SecretStr = SecretStr("")
    mqtt_client_id: str = Field(default="steward-ingest", description="fixed id: the persistent session")
    # 5 in production (Receive Maximum, session expiry); 3.1.1 only for the demo's Python fallback broker.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_keepalive_s: int = 15
    # Broker → ingest in-flight window (MQTT 5 Receive Maximum). Unacked messages wait for the batch
    # commit, so it must exceed batch_size or batches would never fill.
    # Keep it ≥ 4 × batch_size so the broker can fill the next batch while one commits.
    mqtt_receive_maximum: int = Field(default=40_000, ge=1, le=65_535)
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    # Steward's buffered reader replaces private parts of paho (core.mqtt_buffered). It runs only on the
    # paho minor it was proven on; false (or another paho) reads with paho's stock client, about 40 %
    # slower at full load but with the same delivery promise (CI runs the fault tests both ways).
    mqtt_fast_reader: bool = True
    data_dir: Path = Field(default=Path(".steward"), description="embedded database, broker, logs")
    # Big batches are cheap under load (fewer rollup/device_state rows per message) and cost nothing
    # when quiet: a batch also closes after batch_latency_ms.
    batch_size: int = Field(default=10_000, ge=1, le=50_000)
    batch_latency_ms: int = Field(default=50, ge=1, le=10_000)
    max_payload_bytes: int = Field(default=256 * 1024, ge=256)
    accept_past: timedelta = Field(default=timedelta(days=30), description="older readings are quarantined")
    accept_future: timedelta = Field(default=timedelta(minutes=5), description="clock-skew allowance")
    retention_days: int = Field(default=3 * 365, ge=30, description="TimescaleDB retention of raw samples")
    compress_after_days: int = Field(
        default=45, ge=1, description="compress chunks older than this; keep > accept_past (late data)"
    )
    ingest_health_port: int = Field(default=0, description="0 = no HTTP health endpoint")
    # Per-device rate limit (ingest/ratelimit.py, matrix M15): a device may send `factor` periodic readings per
    # expected_interval_s of its own clock, plus a burst; the excess is quarantined 'rate_limited'. 0 = off
    # (synthetic load generators that stamp a reading every second for every device need that).
    ingest_rate_limit_factor: float = Field(default=10.0, ge=0)
    ingest_rate_limit_burst: int = Field(default=100, ge=1)
    # Ingest partitioned by estate (DESIGN §9): estates hash to this many partitions (ingest/partitions.py), each
    # with one writer: the process holding its advisory lock, on a persistent session `{mqtt_client_id}-{k}`.
    # 1 = one unpartitioned process, exactly as before (client id mqtt_client_id, every estate's uplink).
    # Every ingest process of a deployment must be given the same number.
    ingest_partitions: int = Field(default=1, ge=1, le=1024)
    # How many partitions one process may own (0 = all): with N partitions, processes of N/2 each plus one more
    # process make two owners and a standby that takes over a dead owner's partitions.
    ingest_max_partitions: int = Field(default=0, ge=0, le=1024)
    # How often a process looks for free partitions (the standby's takeover delay) and re-reads the estates table
    # (estates imported at run time get subscribed without a restart).
    ingest_claim_poll_s: float = Field(default=0.5, gt=0, le=60)
    ingest_estate_poll_s: float = Field(default=3.0, gt=0, le=600)
    # Touched after every job attempt of `steward run worker`, so a container health check can see the loop
    # turning (the worker serves no HTTP). None = not written.
    worker_heartbeat_file: Path | None = None
    # Prometheus text at /metrics: when each job last succeeded, its period, runs and failures (the
    # "worker jobs late" alert in deploy/prometheus/steward-rules.yml). 0 = not served.
    worker_metrics_port: int = Field(default=0, description="0 = no worker /metrics endpoint")
    # Address the ingest /health + /metrics and worker /metrics servers bind. Loopback by default; in a
    # container Prometheus scrapes from another one, so compose sets 0.0.0.0 (the ports stay unpublished).
    metrics_host: str = "127.0.0.1"
    # Alarm rules (point thresholds, meter anomalies) evaluated inside each ingest batch, so a reading,
    # the alarm it raises and the ticket it opens commit together. Switch off only to run an ingest
    # process that stores readings and nothing else (see bench/README.md for its cost).
    alarm_evaluation: bool = True
    # Hot-water meters charged inside each ingest batch (billing.on_ingest): a household's balance moves
    # as its readings land. Off, only the periodic billing run (worker) charges.
    billing_charge_on_ingest: bool = True
    # Where: "behind" (default), on a thread of ingest's own right after each batch commits
    # (billing/charge_behind.py: ingest's writer is not held up; nothing is charged twice or lost);
    # "in_batch", inside the batch transaction (a reading and its charge commit together, at about
    # half the writer's throughput on a stream of meter readings: bench/README.md).
    billing_charge_mode: Literal["behind", "in_batch"] = "behind"
    # "behind": at most one charging round per this many seconds (a meter's readings that land in between
    # are charged together). A balance then lags its readings by at most the span plus this. 5 s, not 1 s:
    # on 2 cores a round a second kept ingest at 0.70 of its rate without charging on a sustained meter
    # stream, a round every 5 s at 0.96 (bench/README.md); notices are drafted daily, so 5 s costs nothing.
    billing_charge_round_s: float = Field(default=5.0, ge=0, le=60)
    # ... once a meter's uncharged readings span this long (seconds of device time): one charge per hour
    # of a meter's use rather than one per reading; 0 charges every reading. The billing run does the rest.
    billing_charge_span_s: int = Field(default=3600, ge=0)
    log_level: str = "INFO"
    secret_key: SecretStr = SecretStr("changethis")
    # Reverse proxies whose X-Forwarded-For / -Proto the API believes (comma-separated addresses); nobody else's.
    trusted_proxies: str = Field(default="", description="e.g. 10.0.0.2,10.0.0.3; empty = no proxy headers")
    # Notification channels (notifications/): the log is always on; "email" and "wecom_robot" need their settings.
    notify_channels: str = Field(default="log", description="comma-separated: log,email,wecom_robot")
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65_535)
    smtp_sender: str | None = Field(default=None, description="From: address, e.g. steward@wuye.example.cn")
    smtp_user: str | None = None
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    # The robot's webhook (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…): the key is a secret.
    wecom_robot_url: SecretStr = SecretStr("")
    notify_timeout_s: float = Field(default=15.0, gt=0, le=120)
    # A delivery is tried this many times (backoff 1, 2, 4 … min, at most notify_backoff_max_s) before gave_up.
    notify_max_attempts: int = Field(default=8, ge=1, le=50)
    notify_backoff_max_s: int = Field(default=3600, ge=60)
    # Outbox (worker/outbox.py): a command published but not acknowledged by its device within
    # outbox_ack_timeout_s is resent (same command_id); after outbox_max_attempts tries it is 'failed' + alarm.
    outbox_ack_timeout_s: int = Field(default=60, ge=5, le=3600)
    outbox_max_attempts: int = Field(default=5, ge=1, le=50)
    # Online-payment notifications (api/routes/billing_webhook.py): provider name → HMAC-SHA256 secret, as a JSON
    # map in STEWARD_PAYMENT_WEBHOOK_SECRETS, e.g. {"wechatpay": "…", "alipay": "…"}. A provider not named here
    # is refused (401): nobody can be paid for without a secret to check.
    payment_webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # A notification whose timestamp header is further than this from core.clock is refused (replayed or stale).
    payment_webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)

    @field_validator("database_url", "database_read_url", mode="before")
    @classmethod
    def _use_psycopg_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"mqtt", "tcp", "mqtts", "ssl"}:
            raise ValueError("STEWARD_MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883")
        return value or None

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        if self.database_read_url and not self.database_url:
            raise ValueError("STEWARD_DATABASE_READ_URL needs STEWARD_DATABASE_URL: a replica of which primary?")
        if self.compress_after_days * 86400 <= self.accept_past.total_seconds():
            raise ValueError("compress_after_days must exceed accept_past: late data lands in compressed chunks")
        if self.env is not Environment.production:
            return self
        problems = []
        if self.database_url is None:
            problems.append("STEWARD_DATABASE_URL must be set (no embedded database in production)")
        if self.mqtt_url is None:
            problems.append("STEWARD_MQTT_URL must be set (no embedded broker in production)")
        if self.mqtt_password.get_secret_value() in UNSAFE_SECRETS:
            problems.append("STEWARD_MQTT_PASSWORD is empty or a well-known default")
        if self.secret_key.get_secret_value() in UNSAFE_SECRETS:
            problems.append("STEWARD_SECRET_KEY is a well-known default")
        weak = sorted(p for p, s in self.payment_webhook_secrets.items() if len(s.get_secret_value()) < 16)
        if weak:
            problems.append(f"STEWARD_PAYMENT_WEBHOOK_SECRETS: secrets shorter than 16 characters ({', '.join(weak)})")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        if (self.mqtt_tls_cert_file is None) != (self.mqtt_tls_key_file is None):
            raise ValueError("STEWARD_MQTT_TLS_CERT_FILE and STEWARD_MQTT_TLS_KEY_FILE go together")
        for name in ("mqtt_tls_ca_file", "mqtt_tls_cert_file", "mqtt_tls_key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"STEWARD_{name.upper()}: no such file {path}")
        tls_files = self.mqtt_tls_ca_file or self.mqtt_tls_cert_file
        if tls_files and not self.mqtt_tls:
            raise ValueError("TLS files are set but STEWARD_MQTT_URL is not mqtts://")
        return self

    @model_validator(mode="after")
    def _notify_channels(self) -> Self:
        names = self.notify_channel_names
        unknown = names - {"log", "email", "wecom_robot"}
        if unknown:
            raise ValueError(f"STEWARD_NOTIFY_CHANNELS: unknown channel(s) {sorted(unknown)} (log, email, wecom_robot)")
        if "email" in names and not (self.smtp_host and self.smtp_sender):
            raise ValueError("STEWARD_NOTIFY_CHANNELS has email: set STEWARD_SMTP_HOST and STEWARD_SMTP_SENDER")
        if "wecom_robot" in names and not self.wecom_robot_url.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("STEWARD_NOTIFY_CHANNELS has wecom_robot: set STEWARD_WECOM_ROBOT_URL (the webhook URL)")
        return self

    @property
    def notify_channel_names(self) -> frozenset[str]:
        return frozenset({"log"} | {n.strip() for n in self.notify_channels.split(",") if n.strip()})

    @property
    def mqtt_tls(self) -> bool:
        return urlsplit(self.mqtt_url or "").scheme in {"mqtts", "ssl"}

    @property
    def proxies(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.mqtt_url or "mqtt://127.0.0.1:1883")
        return parts.hostname or "127.0.0.1", parts.port or (8883 if self.mqtt_tls else 1883)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
