"""HTML → PDF with headless Chromium (`--print-to-pdf`), for printable notices.

Chromium honours the page's print stylesheet (`@page { size: A4 }`, one notice per page), so the PDF
is the same as printing the page from a browser. Chinese text needs a CJK font on the machine
(fonts-noto-cjk or fonts-wqy-microhei); without chromium the export fails with a clear 503, never a
half-written file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from core.errors import StewardError

TIMEOUT_S = 60
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # runs as a service user inside a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-pdf-header-footer",
)


class PdfUnavailable(StewardError):
    status_code = 503


def chromium() -> str | None:
    """The chromium binary: $STEWARD_CHROMIUM, else chromium / chromium-browser on PATH."""
    path = os.environ.get("STEWARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    return path


def html_to_pdf(html: str) -> bytes:
    """The PDF of a self-contained HTML page (no network: the page must inline what it needs)."""
    binary = chromium()
    if binary is None:
        raise PdfUnavailable(
            "PDF export needs chromium on the server (apt-get install chromium fonts-noto-cjk) / "
            "导出 PDF 需要服务器安装 chromium 及中文字体"
        )
    with tempfile.TemporaryDirectory(prefix="steward-pdf-") as tmp:
        page, out = Path(tmp) / "notice.html", Path(tmp) / "notice.pdf"
        page.write_text(html, encoding="utf-8")
        try:
            subprocess.run(
                [binary, *CHROMIUM_ARGS, f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", page.as_uri()],
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PdfUnavailable("PDF export timed out / 导出 PDF 超时") from exc
        data = out.read_bytes() if out.exists() else b""
    if not data.startswith(b"%PDF"):
        raise PdfUnavailable("chromium produced no PDF / 导出 PDF 失败")
    return data
