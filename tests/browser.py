"""Open a report in a real headless browser (Debian's Chromium; `make test-slow` installs it)."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers import missing

# Appended to a copy of the report (the report itself has no script): measures every figure as
# the browser laid it out and leaves the result in the DOM that --dump-dom prints.
_PROBE = """<script>
window.addEventListener("load", () => {
  const figs = [...document.querySelectorAll("figure svg")].map(s => {
    const r = s.getBoundingClientRect();
    return {w: r.width, h: r.height, drawn: s.querySelectorAll("path,use,text,rect,line,polyline").length};
  });
  document.body.setAttribute("data-probe", JSON.stringify(figs));
});
</script>"""


def chromium() -> str | None:
    for name in (os.environ.get("ZELO_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome", "headless_shell"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def open_in_browser(report: Path, tmp_path: Path) -> list[dict]:
    """Load ``report`` in headless Chromium; fail on any console message (the page has no
    script, so any message is an error) or on a figure without size or drawing. Returns each
    figure's laid-out width, height and number of drawn elements."""
    browser = chromium()
    if browser is None:
        missing("no Chromium on this machine (`make setup-browser` installs Debian's; or set ZELO_CHROMIUM)")
    page = report.read_text(encoding="utf-8")
    n_figures = page.count("<figure>")
    assert n_figures and "<script" not in page
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    plain = subprocess.run([browser, *flags, "--dump-dom", report.resolve().as_uri()], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr[-2000:]
    console = [x for x in plain.stderr.splitlines() if "CONSOLE" in x]
    assert not console, console
    assert plain.stdout.count("<figure>") == n_figures
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    probed = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                            timeout=120)
    found = re.search(r'data-probe="([^"]*)"', probed.stdout)
    assert found, probed.stderr[-2000:]
    figs = json.loads(html.unescape(found.group(1)))
    assert len(figs) == n_figures
    assert all(f["w"] > 100 and f["h"] > 50 and f["drawn"] > 5 for f in figs), figs
    return figs
