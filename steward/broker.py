"""A Mosquitto process with Steward's settings on a loopback port: the demo's embedded broker and the
tests' throwaway broker (which they restart, SIGKILL and SIGSTOP)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK_CONFIG = """\
# Written by steward.broker for a loopback broker; production uses deploy/mosquitto/mosquitto.conf.
# Anonymous and on loopback only (the demo, the tests' throwaway brokers): it has no device accounts, so it
# cannot tie client ids to them as the shipped configuration does (tests/support/deploy_broker.py runs that).
listener {port} 127.0.0.1
allow_anonymous true
# Started as root, mosquitto would drop to user "mosquitto", which cannot write our data dir.
user {user}
persistence {persistence}
persistence_location {data_dir}/
autosave_interval 1
max_queued_messages 5000000
max_queued_bytes 4000000000
max_inflight_messages 1000
max_packet_size {max_packet}
persistent_client_expiration 7d
log_dest file {data_dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for cand in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"):
        if os.access(cand, os.X_OK):
            return cand
    return None


class MosquittoProcess:
    """One mosquitto, its config and its persistence directory under ``data_dir``."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persistence: bool = True, max_packet: int = 262144
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("no mosquitto binary on PATH")
        self.binary = binary
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.data_dir / "mosquitto.conf"
        self.config.write_text(
            LOOPBACK_CONFIG.format(
                port=self.port,
                data_dir=self.data_dir,
                persistence="true" if persistence else "false",
                max_packet=max_packet,
                user=getpass.getuser(),
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoProcess:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Graceful stop: mosquitto writes its persistence file on SIGTERM."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
