"""The HTML report in real headless Chromium: loads with no console message (so no CSP violation, no
script error, no blocked request), every section is there, thumbnails decode, a hostile file name
is text, and a screenshot a person can look at (reports/browser-test/report.png).

`make test` installs Chromium when it is missing; elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from auditor.formats.html import render_html
from auditor.formats.visuals import make_thumbnails
from tests.formats.conftest import EVIL_NAME, build_report, projection_for, properties_for

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (make test installs it: apt-get install chromium)")

# Appended to a copy of the page: after load, record whether every image decoded and what was fetched.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var thumbs = imgs.filter(function (i) { return i.classList.contains("thumb"); });
  var fetched = performance.getEntriesByType("resource").map(function (e) { return e.name; })
                 .filter(function (n) { return n.indexOf("data:") !== 0; });
  document.body.setAttribute("data-probe", JSON.stringify({
    images: imgs.length, decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    thumbs: thumbs.length, thumbs_decoded: thumbs.filter(function (i) { return i.naturalWidth > 0; }).length,
    fetched: fetched, sections: Array.prototype.map.call(document.querySelectorAll("section.check"),
                                                         function (s) { return s.id; })}));
});
</script>
</body>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    report, files = build_report(root / "data")
    html = render_html(report, make_thumbnails(report, files.get), projection_for(files), properties_for())
    path = root / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


@pytest.mark.slow  # 1.4-3 s: `make test` runs it, the edit-test loop does not
def test_page_loads_without_console_messages_and_every_image_decodes(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8")
    result = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_messages(result.stderr) == []
    match = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert match, result.stdout[-2000:]
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["fetched"] == []
    assert probe["thumbs"] == 4 and probe["thumbs_decoded"] == 4
    assert probe["images"] >= 10 and probe["decoded"] == probe["images"]  # charts included
    assert probe["sections"] == ["check-leakage", "check-near_duplicates", "check-class_balance",
                                 "check-split_shift", "check-integrity"]
    assert 'data-report-ready="1"' in result.stdout  # the page's own script ran


def test_a_hostile_file_name_is_text_not_an_element(page, tmp_path):
    result = chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri())
    dom = result.stdout
    assert '<img src="x"' not in dom and "onerror=\"alert" not in dom
    assert "<script>alert" not in dom
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in dom
    assert console_messages(result.stderr) == []


def test_console_detection_works(tmp_path):
    """The negative control: a blocked request and a script error do show up as console messages."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><head><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                   'script-src \'unsafe-inline\'"></head><body><img src="http://192.0.2.1/x.png">'
                   '<script>console.error("boom")</script></body></html>')
    result = chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", bad.as_uri())
    messages = console_messages(result.stderr)
    assert any("Content Security Policy" in m for m in messages) and any("boom" in m for m in messages)


@pytest.mark.slow  # 1.4-3 s: `make test` runs it, the edit-test loop does not
def test_screenshot_a_person_can_look_at(page, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,2400", "--virtual-time-budget=5000",
                      f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1280, 2400)
        grey = image.convert("L")
        low, high = grey.getextrema()
        assert high - low > 100  # not blank
        assert len(grey.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # text, thumbnails and charts
    keep = REPO / "reports" / "browser-test"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, keep / "report.png")
    shutil.copyfile(page, keep / "report.html")
