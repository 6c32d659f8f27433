"""Every script the pages load parses: two branches that each add a top-level ``const`` of the same name merge
cleanly in git and break every live page at once (session 8: the diagrams and the alarm banner both declared
``SEVERITIES`` in app.js; each page sat at "正在连接…"). ``node --check`` parses without running."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
SCRIPTS = sorted(p for p in STATIC.glob("*.js"))


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"app.js"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (.ci/run installs it)")
        pytest.skip("node is not installed")
    done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
