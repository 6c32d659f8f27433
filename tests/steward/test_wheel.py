"""Steward installed as a wheel (as in an image), not editable: every module imports from the install, the
migrations run and the API answers ``/health``.

An editable install serves every module from the source tree and hides a package left out of the wheel
(``api.routes`` once was, and ``steward run api`` died in the container). Here the wheel is installed into
a fresh venv outside the source tree; the dependencies come from the dev venv's site-packages through a
``.pth`` line (no download), whose own ``.pth`` files — the editable finder among them — are not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from steward.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = (".git", ".venv", ".steward", "build", "*.egg-info", "test-output", "node_modules", "__pycache__", "dist")
NOT_PRODUCT = {"tests", "bench", "devkit"}
# Every top-level package of the source tree is product unless named above: derived, not listed, so a new
# package is checked the day it appears (a hand-written list once missed `web`).
TOP_LEVEL = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_PRODUCT)


def source_files(root: Path) -> set[str]:
    """Every file of the product packages under ``root`` (what the wheel must hold: code, templates, static
    files, migrations), as wheel paths."""
    found = set()
    for top in TOP_LEVEL:
        for f in (root / top).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                found.add(f.relative_to(root).as_posix())
    return found


IMPORT_ALL = """
import importlib, pkgutil, sys
from pathlib import Path
prefix = Path(sys.prefix).resolve()
names = sys.argv[1:]
seen = 0
for top in names:
    pkg = importlib.import_module(top)
    found = pkgutil.walk_packages(pkg.__path__, top + ".")
    # Migration scripts run under Alembic only; a __main__ would run the CLI.
    mods = [top] + [m.name for m in found if ".versions." not in m.name and not m.name.endswith("__main__")]
    for name in mods:
        mod = importlib.import_module(name)
        where = Path(mod.__file__ or next(iter(mod.__path__))).resolve()
        assert prefix in where.parents, f"{name} imported from {where}, not from the install"
        seen += 1
print("imported", seen)
"""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out  # type: ignore[no-any-return]


def test_the_wheel_installs_migrates_and_serves(tmp_path: Path, fresh_database: str) -> None:
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    # From a copy of the sources: an in-tree build reuses build/lib, where a stale copy of a package the
    # configuration leaves out would slip into the wheel.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)])
    wheel = next(dist.glob("steward-*.whl"))
    # What is not product stays out: the tests, the benchmarks and their shared helpers (devkit).
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert not tops & NOT_PRODUCT, sorted(tops)
    # ... and everything that is product is in: every module, template, static file and migration.
    missing = source_files(source) - names
    assert not missing, f"left out of the wheel: {sorted(missing)[:20]}"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_") and k != "PYTHONPATH"}
    env |= {"STEWARD_DATABASE_URL": fresh_database, "STEWARD_ENV": "testing"}
    imported = run([str(python), "-c", IMPORT_ALL, *TOP_LEVEL], cwd=work, env=env).stdout
    assert int(imported.split()[-1]) > 100, imported

    run([str(venv / "bin" / "steward"), "db", "upgrade"], cwd=work, env=env)
    port = free_port()
    api = subprocess.Popen(
        [str(venv / "bin" / "steward"), "run", "api", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while status != 200 and time.monotonic() < deadline and api.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    status = resp.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert status == 200, api.stdout.read() if api.poll() is not None and api.stdout else "no answer"
        # The dashboards' templates and static files are in the wheel too.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as resp:
            assert resp.status == 200
            assert "password" in resp.read().decode()
    finally:
        api.terminate()
        try:
            api.wait(15)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait(5)
