"""The printable dunning pages in a real browser (Debian's chromium via Playwright): a letter prints on one A4
page, and so does a short public list. The pages carry their print stylesheet inline, so the HTML the app
serves is loaded as is; the PDFs and screenshots go to ``$STEWARD_TEST_OUTPUT/screenshots``."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.dunning import seed_dunning
from tests.support.world import PASSWORD, World

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def output_dir() -> Path:
    out = Path(os.environ.get("STEWARD_TEST_OUTPUT") or ROOT / "test-output") / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # As tests/dashboards/test_browser.py: skipped without chromium unless STEWARD_REQUIRE_BROWSER=1.
    executable = os.environ.get("STEWARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    required = os.environ.get("STEWARD_REQUIRE_BROWSER", "") not in ("", "0", "false")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("STEWARD_REQUIRE_BROWSER=1 but playwright is not installed")
        pytest.skip("playwright is not installed")
    if not Path(executable).exists():
        if required:
            pytest.fail("STEWARD_REQUIRE_BROWSER=1 but there is no chromium")
        pytest.skip("no chromium binary")

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


@pytest.mark.parametrize("which", ["letter", "public"])
def test_printable_pages_fit_one_a4_sheet(client: TestClient, api_world: World, browser: Any, which: str) -> None:
    _, document_id = seed_dunning(api_world.engine, api_world.estate)
    client.cookies.clear()
    assert client.post("/api/auth/login", json={"username": "steward-user", "password": PASSWORD}).status_code == 200
    path = f"/dunning/documents/{document_id}/print" if which == "letter" else f"/dunning/{api_world.estate}/public"
    html = client.get(path).text
    page = browser.new_page(viewport={"width": 900, "height": 1200})
    try:
        page.set_content(html, wait_until="load")
        assert page.locator(".print-bar").is_visible()  # on screen: the back link; hidden when printed
        page.screenshot(path=str(output_dir() / f"dunning-{which}.png"), full_page=True)
        pdf = page.pdf(format="A4", prefer_css_page_size=True)
    finally:
        page.close()
    (output_dir() / f"dunning-{which}.pdf").write_bytes(pdf)
    assert pdf_pages(pdf) == 1
