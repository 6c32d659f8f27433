"""paho's client with buffered reads and a lean path for plain PUBLISH packets.

Measured (bench/ingest.py): at 10,000+ msg/s paho's network thread was two thirds of ingest's CPU,
and ingest's threads share one GIL, so it capped throughput. Per packet paho makes three or four
recv() calls (command byte, each remaining-length byte, body) with a select() in between, builds an
MQTT 5 ``Properties`` object even when the packet has none, and walks its topic matcher.

- ``BufferedSocket``: one recv() of up to 256 KiB serves every packet it holds. ``pending()`` is what
  paho already asks an SSL socket, so paho reads on without select() while we hold bytes.
- ``BufferedClient``: reads the complete QoS 0/1 PUBLISH packets without properties straight from
  that buffer and hands paho's own ``MQTTMessage`` to ``on_message``, with paho's locking and
  exception handling, and auto-acks as paho would. Every other packet — CONNACK, SUBACK, PINGRESP,
  QoS 2, a PUBLISH with properties, a packet cut at the buffer's end, anything malformed — goes
  through paho's own reader unchanged. MQTT 5 messages read on the lean path carry
  ``properties=None`` (they had none).

This overrides private paho methods (``_create_socket``, ``loop_read``'s loop, ``_in_packet``), so
it is used only on the paho minor it was proven on (``TESTED_PAHO_MINORS``: pyproject pins it,
tests/core/test_mqtt_buffered.py checks it against stock paho byte stream by byte stream, and every
e2e and fault test runs through it). On any other paho ``core.mqtt.make_client`` falls back to
paho's stock client with a warning, as it does with ``STEWARD_MQTT_FAST_READER=false``; CI runs the
delivery fault tests once that way. TLS and websocket connections are left exactly as paho makes them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

# The paho minors this module's private overrides were proven on. Another minor may rename what we
# touch: a new release must pass tests/core/test_mqtt_buffered.py before it is added here and in pyproject.
TESTED_PAHO_MINORS = ("2.2",)
PAHO_VERSION: str = paho.mqtt.__version__


def supports(version: str) -> bool:
    """Whether paho ``version`` is one of the minors the fast reader was proven on."""
    return ".".join(version.split(".")[:2]) in TESTED_PAHO_MINORS


SUPPORTED = supports(PAHO_VERSION)

# One recv() of up to this many bytes (≈ 1,000 telemetry frames).
READ_CHUNK = 256 * 1024
# Packets read per loop_read() before handing back to paho's loop, so queued PUBACKs and pings go out.
MAX_PACKETS_PER_READ = 2_000
PAUSE_WAIT_S = 0.05

PUBLISH = 0x30
SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS


class BufferedSocket:
    """A plain TCP socket whose reads come from one large recv() at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.buf = b""
        self.pos = 0

    def recv(self, bufsize: int) -> bytes:
        pos = self.pos
        if pos >= len(self.buf):
            data = self._sock.recv(max(bufsize, READ_CHUNK))  # BlockingIOError / EOF (b"") as a socket
            if len(data) <= bufsize:
                return data
            self.buf, pos = data, 0
        end = min(pos + bufsize, len(self.buf))
        self.pos = end
        return self.buf[pos:end]

    def pending(self) -> int:
        return len(self.buf) - self.pos

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, settimeout …
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """``lean_publish=False`` keeps the buffered reads but lets paho parse every packet.

    ``read_paused``, when set, is asked before each read: while it says True the network thread
    reads nothing (it waits up to 50 ms at a time for ``resume_reading()``), so TCP pushes back on
    the broker — except while a keepalive ping is outstanding, when it reads on until the
    PINGRESP. A subscriber that acks late uses it to enforce its own Receive Maximum on a broker
    that overshoots it (Mosquitto < 2.0.13; see ingest/source.py)."""

    def __init__(self, *args: Any, lean_publish: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = lean_publish
        self.read_paused: Callable[[], bool] | None = None
        self._resume = threading.Event()

    def resume_reading(self) -> None:
        self._resume.set()

    def message_callback_add(self, sub: str, callback: mqtt.CallbackOnMessage) -> None:
        self._lean = False  # topic-filtered callbacks need paho's matcher
        super().message_callback_add(sub, callback)

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if isinstance(sock, socket.socket) and not self._ssl else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        paused = self.read_paused
        # A ping awaiting its PINGRESP is answered even while paused: paho counts only bytes received as a
        # sign of life, so a pause longer than the keepalive (a commit stalled on a locked table, matrix M8)
        # would otherwise drop a healthy connection. We read on until the PINGRESP (queued behind at most the
        # messages the broker already sent) resets ``_ping_t``, then pause again.
        if paused is not None and self._ping_t == 0 and paused():
            self._resume.clear()
            if paused():  # asked again after clear(): a resume in between is not lost
                self._resume.wait(PAUSE_WAIT_S)
            return SUCCESS  # paho's loop comes back here (select() says readable) and asks again
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            return super().loop_read(max_packets)
        budget = MAX_PACKETS_PER_READ
        while True:
            if self._lean and sock.pending() and self._in_packet["command"] == 0:
                budget -= self._read_lean_publishes(sock, budget)
                if not self._still_on(sock):  # a callback disconnected
                    return SUCCESS
            # One packet the paho way: the one the lean path stopped at, or a recv() when we are empty.
            rc = super().loop_read(max_packets)
            budget -= 1
            if rc or budget <= 0 or not self._still_on(sock) or not sock.pending():
                return rc

    def _still_on(self, sock: BufferedSocket) -> bool:
        return self._sock is sock

    def _read_lean_publishes(self, sock: BufferedSocket, budget: int) -> int:
        """Deliver the complete, property-less QoS 0/1 PUBLISH packets at the head of the buffer;
        stop at the first packet that is anything else. Returns how many were delivered."""
        buf, pos, end = sock.buf, sock.pos, len(sock.buf)
        mqtt5 = self._protocol == mqtt.MQTTv5
        on_message = self.on_message
        if on_message is None:
            return 0
        manual_ack = self._manual_ack
        now = time.monotonic()  # paho's own clock for MQTTMessage.timestamp
        handled = 0
        while handled < budget and pos < end:
            command = buf[pos]
            qos = (command >> 1) & 3
            if command & 0xF0 != PUBLISH or qos > 1:
                break
            # Remaining length: 1–4 bytes, 7 bits each, least significant first.
            i, length, shift = pos + 1, 0, 0
            while i < end and shift <= 21:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break  # cut at the buffer's end, or malformed: paho's reader decides
            body_end = i + length
            if body_end > end or length < 2:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            p = topic_end
            mid = 0
            if qos:
                mid = (buf[p] << 8) | buf[p + 1] if p + 2 <= body_end else 0
                p += 2
            if mqtt5:
                if p >= body_end or buf[p] != 0:
                    break  # properties present (or malformed)
                p += 1
            elif topic_end == i + 2:
                break  # MQTT 3 forbids an empty topic: paho reports it
            if p > body_end:
                break
            message = mqtt.MQTTMessage(mid, buf[i + 2 : topic_end])
            message.payload = buf[p:body_end]
            message.qos = qos
            message.dup = bool(command & 0x08)
            message.retain = bool(command & 0x01)
            message.timestamp = now
            pos = sock.pos = body_end  # consumed before the callback runs (it may disconnect)
            handled += 1
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
            if qos and not manual_ack:
                self._send_puback(mid)
            if not self._still_on(sock):
                break
        if handled:
            with self._msgtime_mutex:
                self._last_bytes_received = now
        return handled
