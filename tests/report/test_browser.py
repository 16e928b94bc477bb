"""The report opens in a real browser: headless Chromium loads the page and every image
decodes (naturalWidth > 0). Skipped only where Chromium is not installed (.ci/run
installs it: `apt-get install chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cnnzip as cz
from cnnzip.report import gather, render

pytestmark = pytest.mark.usefixtures("one_thread")

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
# after load, the body records how many images decoded, out of how many
PROBE = (
    "<script>addEventListener('load', () => { const all = [...document.images];"
    " document.body.dataset.loaded = all.filter(i => i.complete && i.naturalWidth > 0)"
    ".length + '/' + all.length; });</script>"
)


def _dom(page: Path) -> str:
    """The DOM headless Chromium holds once ``page`` has loaded."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
def test_every_image_loads_in_chromium(compressed, tmp_path: Path) -> None:
    path, _, _ = compressed
    text = render(gather(path, cz.load(path), (1, 28, 28), speed_runs=None))
    page = tmp_path / "r.html"
    page.write_text(text.replace("</body>", PROBE + "</body>"))
    loaded = re.search(r'data-loaded="(\d+)/(\d+)"', _dom(page))
    assert loaded is not None, "the page did not finish loading"
    assert loaded.group(1) == loaded.group(2) == str(text.count("<img"))


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_probe_sees_a_broken_image(tmp_path: Path) -> None:
    """The check can fail: an image that does not decode is not counted."""
    page = tmp_path / "broken.html"
    bad = '<img alt="x" src="data:image/png;base64,AAAA">'
    page.write_text(f"<!DOCTYPE html><html><body>{bad}{PROBE}</body></html>")
    assert 'data-loaded="0/1"' in _dom(page)
