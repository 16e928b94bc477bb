"""The report opens in a real browser: headless Chromium loads the page, with every
section's image (the speed and int8 ones included), and every image decodes
(naturalWidth > 0). Skipped where Chromium is not installed, except where
$CNNZIP_REQUIRE_BROWSER is set (.ci/run sets it after installing Chromium): there its
absence fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnnzip as cz
from cnnzip.report import gather, render

pytestmark = pytest.mark.usefixtures("one_thread")

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("CNNZIP_REQUIRE_BROWSER") == "1"
# after load, the body records how many images decoded, out of how many
PROBE = (
    "<script>addEventListener('load', () => { const all = [...document.images];"
    " document.body.dataset.loaded = all.filter(i => i.complete && i.naturalWidth > 0)"
    ".length + '/' + all.length; });</script>"
)


@pytest.fixture
def browser() -> str:
    """Chromium's path; a skip without it, a failure where CI requires it."""
    if BROWSER is None:
        if REQUIRED:
            pytest.fail("CNNZIP_REQUIRE_BROWSER=1 but Chromium is not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return BROWSER


def _dom(page: Path) -> str:
    """The DOM headless Chromium holds once ``page`` has loaded."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


INT8 = {
    "rows": [{"key": k, "name": k, "bytes": b, "accuracy": 0.5, "latency_ms": 0.1, "speedup": 1.0}
             for k, b in (("torch", 60_000), ("int8", 20_000), ("cnnz", 5_000))],
    "verdict": ["int8 PTQ is not smaller than the .cnnz (20,000 B vs 5,000 B)"],
}  # fmt: skip


@pytest.mark.slow
def test_every_image_loads_in_chromium(browser: str, compressed, tmp_path: Path) -> None:
    path, _, _ = compressed
    text = render(gather(path, cz.load(path), (1, 28, 28), speed_runs=2, int8=INT8))
    assert 'alt="speed"' in text and "<td>int8</td>" in text and text.count("<img") == 5
    page = tmp_path / "r.html"
    page.write_text(text.replace("</body>", PROBE + "</body>"))
    loaded = re.search(r'data-loaded="(\d+)/(\d+)"', _dom(page))
    assert loaded is not None, "the page did not finish loading"
    assert loaded.group(1) == loaded.group(2) == str(text.count("<img"))


@pytest.mark.slow
def test_the_probe_sees_a_broken_image(browser: str, tmp_path: Path) -> None:
    """The check can fail: an image that does not decode is not counted."""
    page = tmp_path / "broken.html"
    bad = '<img alt="x" src="data:image/png;base64,AAAA">'
    page.write_text(f"<!DOCTYPE html><html><body>{bad}{PROBE}</body></html>")
    assert 'data-loaded="0/1"' in _dom(page)
