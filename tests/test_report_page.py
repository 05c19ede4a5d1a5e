"""pipeline/inspection/report_page.py through ``resnet50-inspect report``, rendered in
headless Chromium: it loads from disk with no console errors, its script finds that every
run's counts add up, the counts shown equal the manifests', pictures are inline, images
that cannot be read are labelled placeholders, and the page stays small."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from pipeline.inspection.cli import main as inspect_main
from pipeline.root.incremental import index_entries
from pipeline.run import EXIT_OK, run
from test_incremental import add_images, argv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A root of two runs (the second with a corrupt and a cut-off file) and its page."""
    base = tmp_path_factory.mktemp("report")
    folder, root = base / "in", base / "root"
    add_images(folder, 0, 6)
    assert run(argv(folder, root)) == EXIT_OK
    add_images(folder, 6, 3)
    (folder / "broken.png").write_bytes(b"not a png <script>alert(1)</script>")
    (folder / "cut.png").write_bytes((folder / "img000.png").read_bytes()[:200])
    assert run(argv(folder, root)) == EXIT_OK
    page = base / "report.html"
    assert inspect_main(["report", str(root), "-o", str(page)]) == 0
    return root, page


def test_the_page_holds_what_the_runs_made(report):
    root, page = report
    text = page.read_text()
    assert len(text.encode()) < 3_000_000
    assert "http://" not in text and "https://" not in text  # nothing fetched
    assert "<script>alert(1)</script>" not in text  # what an image file says is escaped
    entries = index_entries(str(root))
    for name in ("matched", "embedded", "errors"):
        shown = int(re.search(rf'id="total-{name}">(\d+)<', text).group(1))
        assert shown == sum(e["counts"][name] for e in entries)
    assert text.count('class="placeholder"') >= 2 and "data:image/jpeg;base64," in text
    assert "res5" in text and "built Flat over 9 vectors" in text


@needs_chromium
def test_the_page_renders_in_chromium_with_no_console_errors(report, tmp_path):
    _, page = report
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<p id="check" class="ok">counts add up</p>', dom.stdout), dom.stdout[:2000]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = tmp_path / "report.png"
    taken = _chromium("--window-size=1200,1600", f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_a_script_error_would_be_seen(tmp_path):
    """The console check can fail: a page whose script throws is reported."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><p id=check>x</p><script>undefinedFunction();</script>")
    dom = _chromium("--dump-dom", page.as_uri())
    assert any("CONSOLE" in line and "undefinedFunction" in line for line in dom.stderr.splitlines()), \
        json.dumps(dom.stderr[-2000:])
