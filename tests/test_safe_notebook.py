"""grading.reports.safe_notebook: the graded notebooks the formgrader shows run no student script.

Rendered with nbgrader's own formgrade template (what the formgrader serves for a submission) and
opened in headless Chromium: every payload would count itself in ``window.__pwned``.
"""

from __future__ import annotations

import copy
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from grading.reports.safe_notebook import sanitize_notebook
from tests.site_helpers import SiteServer, chromium

COUNT = "window.__pwned=(window.__pwned||0)+1"
PAYLOADS = [f"<script>{COUNT}</script>", f'<img src="x" onerror="{COUNT}">', f'<svg onload="{COUNT}"></svg>',
            '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>', f'<details open ontoggle="{COUNT}">',
            f'<a href="javascript:{COUNT}" id="js-link">link</a>', f'<object data="javascript:{COUNT}"></object>']
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def hostile_notebook() -> nbformat.NotebookNode:
    """A graded notebook whose every renderable part carries a payload, beside harmless content."""
    attack = "\n\n".join(PAYLOADS)
    cells = [
        new_markdown_cell("# Notes\n\nSome **bold** text.\n\n" + attack + "\n\n[md link](javascript:" + COUNT + ")"),
        new_raw_cell(attack, metadata={"format": "text/html", "raw_mimetype": "text/html"}),
        new_code_cell("show()", outputs=[
            new_output("display_data", {"text/html": "<table><tr><td>kept cell</td></tr></table>" + attack,
                                        "text/plain": "table"}),
            new_output("display_data", {"application/javascript": COUNT, "text/plain": "js"}),
            new_output("display_data", {"image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{COUNT}">'}),
            new_output("display_data", {"text/markdown": attack}),
            new_output("display_data", {"image/png": PNG, "text/plain": "figure"}),
            new_output("display_data", {"application/vnd.jupyter.widget-view+json":
                                        {"model_id": "x", "version_major": 2, "version_minor": 0}}),
            new_output("error", ename="Error", evalue=PAYLOADS[1], traceback=[PAYLOADS[1]]),
            new_output("stream", name="stdout", text=PAYLOADS[0])])]
    nb = new_notebook(cells=cells)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"x": {"model_name": f"</script><script>{COUNT}</script>"}}, "version_major": 2, "version_minor": 0}}
    return nb


def formgrade_page(nb: nbformat.NotebookNode, out: Path) -> Path:
    """The page nbgrader's formgrader would serve for this notebook (its template, its resources)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "optimization", "notebook_id": "optimization", "submission_id": "s1", "index": 0,
                 "total": 1, "base_url": "", "student": "mallory", "last_name": "Mallory", "first_name": "M",
                 "notebook_path": "autograded/mallory/optimization/optimization.ipynb"}
    page, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
    out.write_text(page)
    return out


def payloads_run(page: Path, profile: Path) -> int:
    """How many payloads ran when Chromium opened the page and clicked the markdown's links."""
    with SiteServer(page.parent) as server:
        driver = chromium(profile)
        try:
            driver.get(f"{server.url}/{page.name}")
            time.sleep(1.0)
            for link in driver.find_elements("css selector", "a"):
                href = link.get_attribute("href") or ""
                if href.lower().startswith("javascript"):
                    driver.execute_script("arguments[0].click()", link)
            return int(driver.execute_script("return window.__pwned || 0"))
        finally:
            driver.quit()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromedriver"), reason="apt-get install chromium chromium-driver")
def test_formgrader_runs_no_student_script_from_a_sanitized_notebook(tmp_path):
    """Unsanitized, the formgrade page runs the payloads (the test can fail); sanitized, none runs, and
    harmless content (text, a table, a PNG, the error's name) is still shown."""
    raw = hostile_notebook()
    assert payloads_run(formgrade_page(copy.deepcopy(raw), tmp_path / "raw.html"), tmp_path / "p1") > 0
    safe = copy.deepcopy(raw)
    assert sanitize_notebook(safe) > 0
    nbformat.validate(safe)
    page = formgrade_page(safe, tmp_path / "safe.html")
    assert payloads_run(page, tmp_path / "p2") == 0
    text = page.read_text()
    assert "kept cell" in text and "<strong>bold</strong>" in text and PNG[:40] in text
    body = text.split("<body", 1)[1]
    assert not re.search(r"<(iframe|object|embed|svg)\b", body) and "widget-state" not in body
    assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=\s*[\"']?window", body, re.IGNORECASE)  # no student handler


def test_sanitized_outputs_keep_only_inert_types():
    """Only text/plain, checked PNG/JPEG and cleaned HTML stay; other types leave a line saying so."""
    nb = hostile_notebook()
    sanitize_notebook(nb)
    kinds = {mime for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs for mime in o.get("data", {})}
    assert kinds <= {"text/plain", "text/html", "image/png"}
    assert not any(c.cell_type == "raw" for c in nb.cells) and "widgets" not in nb.metadata
    outputs = nb.cells[2].outputs
    assert outputs[1].data == {"text/plain": "js"}
    assert outputs[2].data["text/plain"].startswith("[output left out by the grader: image/svg+xml")
    assert "script" not in outputs[3].data["text/html"]
    fake_png = new_notebook(cells=[new_code_cell("x", outputs=[new_output("display_data", {"image/png": "PHN2Zz4="})])])
    sanitize_notebook(fake_png)
    assert "image/png" not in fake_png.cells[0].outputs[0].data  # not a PNG: left out
