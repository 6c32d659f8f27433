"""The fast reader is used only on the paho minor it was proven on; otherwise, or when switched off, paho's stock
client reads (the delivery fault tests run once that way in CI: bin/steward test)."""

from __future__ import annotations

import logging
from importlib.metadata import version

import paho.mqtt.client as mqtt
import pytest

from core import mqtt_buffered
from core.mqtt import SessionOptions, make_client
from core.mqtt_buffered import BufferedClient
from core.settings import Settings

OPTIONS = SessionOptions(client_id="fallback-test")


def test_the_installed_paho_is_a_tested_minor() -> None:
    # pyproject pins the same minor; a paho outside it would install only by hand, and then fall back.
    assert version("paho-mqtt") == mqtt_buffered.PAHO_VERSION
    assert mqtt_buffered.SUPPORTED
    assert isinstance(make_client(OPTIONS), BufferedClient)


@pytest.mark.parametrize(
    ("v", "ok"), [("2.2.0", True), ("2.2.7", True), ("2.3.0", False), ("2.1.0", False), ("3.0.0", False)]
)
def test_supported_minors(v: str, ok: bool) -> None:
    assert mqtt_buffered.supports(v) is ok


def test_an_untested_paho_falls_back_to_the_stock_client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mqtt_buffered, "SUPPORTED", False)
    monkeypatch.setattr(mqtt_buffered, "PAHO_VERSION", "2.3.0")
    with caplog.at_level(logging.WARNING, logger="core.mqtt"):
        client = make_client(OPTIONS)
    assert type(client) is mqtt.Client
    assert "paho-mqtt 2.3.0 is not one of the versions" in caplog.text


def test_the_setting_switches_the_fast_reader_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_MQTT_FAST_READER", "false")
    settings = Settings()
    assert settings.mqtt_fast_reader is False
    assert type(make_client(OPTIONS, buffered=settings.mqtt_fast_reader)) is mqtt.Client
    assert Settings.model_fields["mqtt_fast_reader"].default is True
