"""Helpers of the site test: the TOC's pages, hidden-test lines, a local HTTP server, headless Chromium."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path
from typing import Iterable, List, Set, Tuple

import nbformat
import yaml

BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MIN_LINE_CHARS = 8  # shorter hidden lines (")", "pass") are not evidence of a leak


def toc_docnames(toc_path: Path) -> List[str]:
    """Every file of a Jupyter Book _toc.yml (root, chapters, sections), in order, without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    names = [toc["root"]]

    def walk(node) -> None:
        """Collect ``file`` entries of nested parts/chapters/sections."""
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)

    walk(toc)
    return [str(Path(n).with_suffix("")) if n.endswith((".md", ".ipynb")) else n for n in names]


def _hidden_and_visible(source: str) -> tuple[List[str], List[str]]:
    """Split a cell's lines into those between the hidden-test markers and the others."""
    hidden, visible, inside = [], [], False
    for line in source.splitlines():
        if line.strip().startswith(BEGIN_HIDDEN):
            inside = True
        elif line.strip().startswith(END_HIDDEN):
            inside = False
        else:
            (hidden if inside else visible).append(line.strip())
    return hidden, visible


def hidden_test_lines(notebooks: Iterable[Path], others: Iterable[Path] = ()) -> Set[str]:
    """Stripped lines of the notebooks' hidden tests that appear nowhere else in the notebooks or pages."""
    hidden: Set[str] = set()
    visible: Set[str] = set()
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            h, v = _hidden_and_visible(cell.source)
            hidden.update(h)
            visible.update(v)
    for folder in others:
        for page in folder.rglob("*"):
            if page.suffix in (".md", ".ipynb") and "exercises" not in page.parts:
                visible.update(line.strip() for line in page.read_text(errors="ignore").splitlines())
    return {line for line in hidden - visible if len(line) >= MIN_LINE_CHARS}


FIGURE_TEXT = re.compile(r"<\w*Figure size \d+x\d+")


def executed_page(repo: Path, doc: str):
    """The notebook of page ``doc`` with the outputs the site build executed (from its jupyter-cache),
    or None for a page without code. MyST pages are read as myst-nb reads them."""
    from jupyter_cache import get_cache
    from myst_nb.core.read import read_myst_markdown_notebook

    md, ipynb = repo / f"{doc}.md", repo / f"{doc}.ipynb"
    if ipynb.is_file():
        notebook = nbformat.read(ipynb, as_version=4)
    elif md.is_file() and "code-cell" in md.read_text():
        notebook = read_myst_markdown_notebook(md.read_text())
    else:
        return None
    _, merged = get_cache(repo / "_build" / ".jupyter_cache").merge_match_into_notebook(notebook)
    return merged


def figure_output_count(notebook, require_png: bool = False) -> int:
    """How many outputs of an executed notebook display a matplotlib figure (with an image/png, if asked)."""
    if notebook is None:
        return 0
    count = 0
    for cell in notebook.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if FIGURE_TEXT.match(data.get("text/plain", "")) and (not require_png or "image/png" in data):
                count += 1
    return count


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files quietly and records the paths it answered with an error."""

    failures: List[str]

    def send_error(self, code, message=None, explain=None):  # noqa: D102 (http.server API)
        self.failures.append(f"{self.path} ({code})")
        super().send_error(code, message, explain)

    def log_message(self, format, *args):  # noqa: A002,D102 (http.server API; keep test output clean)
        pass


class SiteServer:
    """``with SiteServer(folder) as s:`` serves ``folder`` at ``s.url``; ``s.failures`` lists failed paths."""

    def __init__(self, root: Path) -> None:
        self.failures: List[str] = []
        handler = type("Handler", (_RecordingHandler,), {"failures": self.failures})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "SiteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium(profile: Path):
    """A headless Chromium WebDriver (Debian's chromium and chromedriver) with a fresh profile in
    ``profile``, offline except for 127.0.0.1."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}",
                 # no network: every host name but 127.0.0.1 fails to resolve
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium-manager never looks for a driver online
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


AXE_JS = Path(__file__).resolve().parents[1] / ".axe" / "node_modules" / "axe-core" / "axe.min.js"  # install.sh


def axe_violations(driver, impacts: Tuple[str, ...] = ("serious", "critical")) -> List[str]:
    """axe-core's violations of the page open in ``driver`` with one of ``impacts``, as lines."""
    assert AXE_JS.is_file(), f"{AXE_JS} missing: run bash scripts/install.sh"
    driver.set_script_timeout(120)
    driver.execute_script(AXE_JS.read_text())
    return driver.execute_async_script(
        "const [impacts, done] = [arguments[0], arguments[arguments.length - 1]];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations"
        ".filter(v => impacts.includes(v.impact))"
        ".map(v => v.id + ' (' + v.impact + '): ' + "
        "v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))));", list(impacts))
