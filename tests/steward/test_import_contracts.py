"""The layer contracts (pyproject.toml, [tool.importlinter]) hold on the tree, and a violation breaks them.

Each case copies the sources (``*.py`` and pyproject.toml, nothing else) to a scratch directory, adds one
import the contracts forbid, and runs ``lint-imports`` there, so the check CI runs (bin/steward test) is
shown to fail on the kinds of import DESIGN §2 rules out, and to pass on the unmodified copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "core", "protocol", "storage", "facility", "notifications", "tickets", "billing", "access", "accounts", "alarms",
    "web", "ingest", "worker", "api", "dashboards", "simulators", "steward", "tests", "bench",
    "devkit",
)  # fmt: skip
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _scratch(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tree / package,
            ignore=lambda d, names: [
                n for n in names if (not n.endswith(".py") and not (Path(d) / n).is_dir()) or n == "__pycache__"
            ],
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scratch(tmp_path_factory.mktemp("contracts"))


def test_the_tree_keeps_every_contract(clean_tree: Path) -> None:
    result = _lint(clean_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "6 kept" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract", "shown"),
    [
        # the pages importing the JSON API: the layer-5 adapters are independent
        ("dashboards/render.py", "import api.app", "Layers", "dashboards.render -> api.app"),
        # layer-3 siblings never import each other
        ("tickets/policy.py", "import accounts.service", "Layers", "tickets.policy -> accounts.service"),
        # a lower layer importing a higher one
        ("storage/models.py", "import facility.series", "Layers", "storage.models -> facility.series"),
        # the shared web layer importing an adapter
        ("web/deps.py", "import dashboards.render", "Layers", "web.deps -> dashboards.render"),
        # simulators talk MQTT only
        (
            "simulators/commands.py",
            "import storage.models",
            "Simulators import only protocol and core",
            "simulators.commands -> storage.models",
        ),
        # the product importing test support
        (
            # (a module nothing imports: devkit and bench use ingest, so a test import there would break
            # their contract too)
            "steward/__main__.py",
            "import tests.support.clock",
            "The product never imports tests, bench or devkit",
            "steward.__main__ -> tests.support.clock",
        ),
        # the product importing the test-and-bench helpers
        (
            "api/app.py",
            "import devkit.postgres",
            "The product never imports tests, bench or devkit",
            "api.app -> devkit.postgres",
        ),
        # the benchmarks taking helpers from the tests instead of devkit
        (
            "bench/common.py",
            "import tests.support.world",
            "Benchmarks and devkit never import tests",
            "bench.common -> tests.support.world",
        ),
        # devkit reaching into the benchmarks
        ("devkit/estate.py", "import bench.common", "devkit never imports bench", "devkit.estate -> bench.common"),
        # a cycle between the shared page modules (render asks viewer who is looking, never the reverse)
        ("dashboards/viewer.py", "import dashboards.render", "No import cycles", ".viewer -> .render"),
        # a cycle inside a package (the old dashboards routes <-> alarm_pages): live -> tickets -> streaming -> live;
        # which edge the linter offers to remove depends on the graph, so the check names the package
        ("dashboards/live.py", "import dashboards.tickets", "No import cycles", "No cycles are allowed in dashboards."),
    ],
)
def test_one_bad_import_breaks_the_contracts(
    clean_tree: Path, tmp_path: Path, module: str, bad_import: str, contract: str, shown: str
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(clean_tree, tree)
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{bad_import}  # deliberate violation\n", encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert "Contracts: 5 kept, 1 broken." in result.stdout, result.stdout
    section = result.stdout.split("Broken contracts", 1)[1]
    assert contract in section, result.stdout
    assert shown in section, result.stdout
