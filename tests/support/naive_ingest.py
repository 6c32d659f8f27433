"""The negative control (reliability matrix M5): a consumer on paho's defaults.

Clean session on every start, a random client id, and PUBACK sent as soon as ``on_message``
returns, before anything is stored. Killing it loses what it had buffered and everything published
while it was down. Run as ``python -m tests.support.naive_ingest DATABASE_URL HOST PORT``.
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine

from core import clock
from ingest.decode import Decoder
from ingest.messages import RawMessage
from ingest.registry import DeviceRegistry
from ingest.writer import write_batch
from protocol.topics import UPLINK_SUBSCRIPTION


def main(url: str, host: str, port: int) -> None:
    from datetime import timedelta

    engine = create_engine(url)
    registry = DeviceRegistry()
    with engine.connect() as conn:
        registry.load(conn)
    decoder = Decoder(
        registry, accept_past=timedelta(days=30), accept_future=timedelta(minutes=5), max_payload_bytes=1 << 20
    )
    buffer: list[RawMessage] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            buffer.append(RawMessage(msg.topic, bytes(msg.payload), msg.mid, msg.qos, clock.now(), 1))

    client = mqtt.Client(CallbackAPIVersion.VERSION2)  # paho defaults: random id, clean session, auto-ack
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(UPLINK_SUBSCRIPTION, qos=1)
    client.connect(host, port)
    client.loop_start()

    while True:
        time.sleep(0.3)
        with lock:
            batch, buffer[:] = list(buffer), []
        if batch:
            decoded = decoder.decode(batch)
            with engine.begin() as conn:
                write_batch(conn, decoded, now=clock.now(), gaps=[], last_seq={}, keep_rollup=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
