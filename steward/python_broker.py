"""The last-resort demo broker when no ``mosquitto`` binary exists: amqtt in a background thread.

amqtt speaks MQTT 3.1.1 only and does not keep messages for an offline persistent session, so the
delivery promise holds only with Mosquitto; this exists so ``steward demo`` runs on a bare laptop.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from steward.broker import free_port, wait_for_port
from storage.embedded import EmbeddedUnavailable

log = logging.getLogger(__name__)


class PythonBroker:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> PythonBroker:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "no mosquitto binary and no amqtt: install mosquitto, or the demo extra (pip install 'steward[demo]';"
                " bin/steward installs it) / 未找到 mosquitto，也未安装 demo 扩展"
            ) from exc

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            broker = Broker(config, loop=loop)
            self._stop = asyncio.Event()
            loop.run_until_complete(broker.start())
            ready.set()
            loop.run_until_complete(self._stop.wait())
            loop.run_until_complete(broker.shutdown())
            loop.close()

        self._thread = threading.Thread(target=serve, name="amqtt-broker", daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_for_port(self.port)
        log.warning("no mosquitto binary: using the amqtt broker (MQTT 3.1.1, no offline queueing)")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
