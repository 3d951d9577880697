"""report.html is one self-contained page that renders in headless Chromium."""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from longtail.cli import main

PROBE = """<script>window.addEventListener('load', () => { const all = [...document.images];
const ok = all.filter(i => i.complete && i.naturalWidth > 0).length;
document.body.setAttribute('data-images', ok + '/' + all.length); });</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs headless Chromium: apt-get install -y chromium (Debian's package)"
        if os.environ.get("LONGTAIL_CI"):
            pytest.fail(message)  # CI installs it: never skipped there
        pytest.skip(message)
    return found


def _chrome(binary: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "cmp"
    argv = ["compare", "--strategies", "instance+ce,class_balanced+ce", "--seeds", "1"]
    assert main([*argv, "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    return out / "report.html"


def test_the_page_holds_everything_it_shows(report):
    page = report.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "At level 1 of the class tree" in page and "When the test prior shifts" in page
    assert "<table>" in page


def test_it_renders_in_headless_chromium(report, tmp_path):
    chromium = _chromium()
    shot = tmp_path / "shot.png"
    page = f"file://{report}"
    done = _chrome(chromium, "--window-size=1280,2400", f"--screenshot={shot}", page)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and plots, not blank
    assert "CONSOLE" not in done.stderr  # the page logs nothing: no error, no blocked resource
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chrome(chromium, "--virtual-time-budget=5000", "--dump-dom", f"file://{probe}")
    loaded, total = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout).groups()
    assert loaded == total and int(total) >= 5
