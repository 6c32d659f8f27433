"""The paho-mqtt client set up the way the delivery promise needs (reliability-matrix pitfalls)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core import mqtt_buffered
from core.mqtt_buffered import BufferedClient
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """A persistent MQTT 5 session: the broker keeps our subscription and unacked QoS 1 messages
    while we are away (paho's defaults would start a clean session on every start and lose them)."""

    client_id: str
    session_expiry_s: int = 7 * 24 * 3600
    # Unacked messages the broker may have in flight to us (MQTT 5 Receive Maximum, ≤ 65535).
    receive_maximum: int = 10_000
    manual_ack: bool = True
    keepalive_s: int = 15
    mqtt5: bool = True


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS to the broker: verify its certificate against ``ca_file`` (None: the system's CAs) and its host name;
    present a client certificate when both ``cert_file`` and ``key_file`` are given."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def tls_from_settings(settings: Settings) -> TlsOptions | None:
    if not settings.mqtt_tls:
        return None

    def name(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    return TlsOptions(
        name(settings.mqtt_tls_ca_file), name(settings.mqtt_tls_cert_file), name(settings.mqtt_tls_key_file)
    )


def make_client(
    options: SessionOptions,
    *,
    username: str | None = None,
    password: str | None = None,
    buffered: bool = True,
    tls: TlsOptions | None = None,
) -> mqtt.Client:
    """Steward's paho client (core.mqtt_buffered); ``buffered=False`` (``STEWARD_MQTT_FAST_READER=false``)
    gives paho's stock client, as does a paho the fast reader was not proven on."""
    if buffered and not mqtt_buffered.SUPPORTED:
        log.warning(
            "paho-mqtt %s is not one of the versions Steward's fast reader was tested on (%s): "
            "using paho's stock reader",
            mqtt_buffered.PAHO_VERSION,
            ", ".join(f"{m}.x" for m in mqtt_buffered.TESTED_PAHO_MINORS),
        )
        buffered = False
    cls = BufferedClient if buffered else mqtt.Client
    if options.mqtt5:
        client = cls(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=options.manual_ack,
        )
    else:
        # MQTT 3.1.1: the persistent session is clean_session=False; the broker's own in-flight limit applies.
        client = cls(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
            manual_ack=options.manual_ack,
        )
    if username:
        client.username_pw_set(username, password or None)
    if tls is not None:
        # TLS 1.2+, the broker's certificate and host name verified (paho's defaults with our CA).
        client.tls_set(
            ca_certs=tls.ca_file,
            certfile=tls.cert_file,
            keyfile=tls.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    return client


def connect_properties(options: SessionOptions) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = options.session_expiry_s
    props.ReceiveMaximum = min(options.receive_maximum, 65_535)
    return props


def connect_async(client: mqtt.Client, host: str, port: int, options: SessionOptions) -> None:
    """Start connecting in paho's network thread; clean_start=False resumes the broker-side session."""
    if not options.mqtt5:
        client.connect_async(host, port, keepalive=options.keepalive_s)
        return
    client.connect_async(
        host,
        port,
        keepalive=options.keepalive_s,
        clean_start=False,
        properties=connect_properties(options),
    )
