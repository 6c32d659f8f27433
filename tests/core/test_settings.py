"""Settings: the STEWARD_ prefix, URL normalisation, and refusing unsafe production defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import Environment, Settings


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_BATCH_SIZE", "500")
    monkeypatch.setenv("STEWARD_MQTT_URL", "mqtt://broker.example:1884")
    s = Settings()
    assert s.batch_size == 500
    assert s.mqtt_host_port == ("broker.example", 1884)


def test_postgres_urls_use_the_psycopg_driver() -> None:
    assert Settings(database_url="postgres://u@h/db").database_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgresql://u@h/db").database_url == "postgresql+psycopg://u@h/db"


def test_the_read_replica_url_uses_psycopg_and_needs_a_primary() -> None:
    s = Settings(database_url="postgresql://u@primary/db", database_read_url="postgres://u@replica/db")
    assert s.database_read_url == "postgresql+psycopg://u@replica/db"
    assert Settings().database_read_url is None
    with pytest.raises(ValidationError, match="STEWARD_DATABASE_READ_URL needs STEWARD_DATABASE_URL"):
        Settings(database_read_url="postgresql://u@replica/db")


def test_rejects_a_non_mqtt_url() -> None:
    with pytest.raises(ValidationError, match="mqtt://"):
        Settings(mqtt_url="http://broker:1883")


def test_development_allows_embedded_servers_and_default_secrets() -> None:
    s = Settings(env=Environment.development)
    assert s.database_url is None
    assert s.mqtt_url is None


def test_production_refuses_unsafe_defaults() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(env=Environment.production)
    text = str(err.value)
    assert "STEWARD_DATABASE_URL must be set" in text
    assert "STEWARD_MQTT_URL must be set" in text
    assert "STEWARD_MQTT_PASSWORD" in text
    assert "STEWARD_SECRET_KEY" in text


def test_production_accepts_explicit_safe_settings() -> None:
    s = Settings(
        env=Environment.production,
        database_url="postgresql://steward@db/steward",
        mqtt_url="mqtt://broker:1883",
        mqtt_password="s3cret-for-ingest",
        secret_key="another-long-secret",
    )
    assert s.env is Environment.production


def test_compression_must_start_after_the_late_data_window() -> None:
    # ON CONFLICT into compressed chunks is unreliable, so late readings must land in uncompressed ones.
    with pytest.raises(ValidationError, match="compress_after_days"):
        Settings(accept_past=timedelta(days=60), compress_after_days=45)


def test_payment_webhook_secrets_come_as_a_json_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "STEWARD_PAYMENT_WEBHOOK_SECRETS", '{"wechatpay": "w-0123456789abcdef", "alipay": "a-0123456789"}'
    )
    monkeypatch.setenv("STEWARD_PAYMENT_WEBHOOK_TOLERANCE_S", "120")
    s = Settings()
    assert {k: v.get_secret_value() for k, v in s.payment_webhook_secrets.items()} == {
        "wechatpay": "w-0123456789abcdef",
        "alipay": "a-0123456789",
    }
    assert s.payment_webhook_tolerance_s == 120
    assert "w-0123456789abcdef" not in repr(s)  # secrets stay out of logs and tracebacks
    monkeypatch.delenv("STEWARD_PAYMENT_WEBHOOK_SECRETS")
    assert Settings().payment_webhook_secrets == {}  # default: no provider opens the webhook


def test_production_refuses_short_payment_webhook_secrets() -> None:
    safe: dict[str, Any] = {
        "env": Environment.production,
        "database_url": "postgresql://steward@db/steward",
        "mqtt_url": "mqtt://broker:1883",
        "mqtt_password": "s3cret-for-ingest",
        "secret_key": "another-long-secret",
    }
    with pytest.raises(ValidationError, match=r"PAYMENT_WEBHOOK_SECRETS.*alipay"):
        Settings(
            **safe,
            payment_webhook_secrets={"alipay": SecretStr("short"), "wechatpay": SecretStr("long-enough-secret-123")},
        )
    assert Settings(
        **safe, payment_webhook_secrets={"wechatpay": SecretStr("long-enough-secret-123")}
    ).payment_webhook_secrets
