"""Fixtures for the storage tests.

``timescale_url``: a throwaway timescale-lite server (TimescaleDB 2.x on PGlite behind the PostgreSQL
wire protocol, see ``shared/tools/timescale-lite/README.md``) for one test session. It keeps its data
in memory, handles ONE client connection at a time and supports neither COPY nor pipeline mode
(``executemany``): use ``NullPool`` engines, plain ``execute`` and dispose engines when done.
Skipped without node/npm or when it does not start, unless ``STEWARD_REQUIRE_TIMESCALE=1`` (CI).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

START_TIMEOUT_S = 900  # the first run installs the npm packages


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {here}")


def _shared_dir() -> Path:
    # CI checks out a copy of shared/ beside the clone; STEWARD_SHARED_DIR points elsewhere.
    return Path(os.environ.get("STEWARD_SHARED_DIR") or _repo_root().parent / "shared")


def _lite_home() -> Path:
    # Stable across runs so `npm install` happens once; ${TMPDIR:-/tmp} like the start script.
    return Path(os.environ.get("TMPDIR") or "/tmp") / "steward-timescale-lite"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("STEWARD_REQUIRE_TIMESCALE") == "1":
        pytest.fail(f"STEWARD_REQUIRE_TIMESCALE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_server(pid: int) -> bool:
    """True while ``pid`` is a live (non-zombie) timescale-lite node process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return b"server.mjs" in cmdline and state != "Z"


def _stop(pid: int) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _is_server(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _is_server(pid):
            time.sleep(0.05)


def _log_tail(home: Path, lines: int = 20) -> str:
    try:
        return "\n".join((home / "server.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start(script: Path, home: Path) -> tuple[str, int]:
    """Run the start script (serialised between concurrent sessions: they share the pid file)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TIMESCALE_LITE_HOME": str(home)}
    errors = []
    with open(home / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(3):  # retried only when the free port was taken before the server bound it
            port = _free_port()
            pid_file = home / "timescale-lite.pid"
            for stale in (pid_file, home / "server.log"):  # another session's: not ours to stop or show
                stale.unlink(missing_ok=True)
            try:
                done = subprocess.run(
                    [str(script), str(port)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=START_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                done = None
            pid = int(pid_file.read_text().strip()) if pid_file.is_file() else None
            if done is not None and done.returncode == 0 and pid is not None:
                lines = done.stdout.strip().splitlines()
                if lines and lines[-1].startswith("postgresql://"):
                    return lines[-1], pid
            if pid is not None:
                _stop(pid)  # a server that never said "listening" is still ours to stop
            detail = "timed out" if done is None else (done.stderr.strip() or f"exit {done.returncode}")
            log = _log_tail(home)
            errors.append(f"port {port}: {detail}\n{log}")
            if "EADDRINUSE" not in log:
                break
    raise RuntimeError("\n".join(errors))


@pytest.fixture(scope="session")
def timescale_url() -> Iterator[str]:
    """``postgresql+psycopg://`` URL of a fresh timescale-lite server, stopped after the session."""
    script = _shared_dir() / "tools" / "timescale-lite" / "start"
    if not script.is_file():
        _unavailable(f"timescale-lite not found at {script} (set STEWARD_SHARED_DIR)")
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"timescale-lite needs {' and '.join(missing)} on PATH")
    home = _lite_home()
    try:
        raw_url, pid = _start(script, home)
    except (OSError, RuntimeError) as exc:
        _unavailable(f"timescale-lite did not start: {exc}")
    url = raw_url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                version = conn.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))
        except DBAPIError as exc:
            _unavailable(f"timescale-lite started but refused a connection: {exc.orig}")
        finally:
            engine.dispose()
        if not version:
            _unavailable("timescale-lite started without the timescaledb extension")
        yield url
    finally:
        _stop(pid)
