"""requirements.lock (what the image installs, hash-checked) matches pyproject.toml's dependencies.

Change a dependency in pyproject.toml without running deploy/lock and this fails: the image would
otherwise ship something else than the project declares. The image build runs `pip check` on top.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
# The image's platform (the lock is compiled for CPython 3.11 on Linux).
IMAGE_ENV = default_environment() | {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name → (version, hashes) from requirements.lock."""
    out: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m[1])
            out[current] = (Version(m[2]), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            out[current][1].append(line.strip().removesuffix("\\").strip())
    return out


def declared() -> list[Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [Requirement(d) for d in deps]


def test_every_dependency_is_locked_within_its_range_with_hashes() -> None:
    lock = locked()
    assert lock, "requirements.lock has no pins"
    assert all(hashes for _, hashes in lock.values()), "every pin carries hashes (pip --require-hashes)"
    for req in declared():
        if req.marker is not None and not req.marker.evaluate(IMAGE_ENV):
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is not in requirements.lock: run deploy/lock"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} is outside {req}: run deploy/lock"


def test_extras_of_dependencies_are_locked() -> None:
    """psycopg[binary], uvicorn[standard]: what the extras pull in is in the lock too (names from the
    installed distributions' metadata)."""
    lock = locked()
    for req in declared():
        for extra in req.extras:
            for dep in metadata.requires(req.name) or []:
                sub = Requirement(dep)
                if sub.marker is None or not sub.marker.evaluate(IMAGE_ENV | {"extra": extra}):
                    continue
                if sub.marker.evaluate(IMAGE_ENV | {"extra": ""}):
                    continue  # not the extra's: a plain (platform-conditional) dependency
                assert canonicalize_name(sub.name) in lock, f"{req.name}[{extra}] needs {sub.name}: run deploy/lock"


def test_nothing_in_the_lock_is_unreachable() -> None:
    """Every pin is something a declared dependency needs (the lock's own 'via' annotations)."""
    text = (ROOT / "requirements.lock").read_text()
    names = set(locked())
    vias = re.findall(r"^\s+# via (.+)$", text, re.M)
    assert len(vias) == len(names), "one 'via' line per pin (regenerate with deploy/lock)"
    for via in vias:
        parents = {canonicalize_name(p.split(" (")[0].strip()) for p in via.split(",")}
        assert parents & (names | {"steward"}), via
