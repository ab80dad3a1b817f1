"""The workspace's graded notebooks, made safe for nbgrader's formgrader to show an instructor.

The formgrader runs in the instructor's logged-in Jupyter server and renders the autograded notebook with
nbconvert's classic template, which passes raw HTML through, runs ``application/javascript`` outputs,
inlines SVG, embeds widget state in a script and copies raw cells verbatim: a student's output could call
the server's terminal and kernel APIs with the instructor's rights. ``sanitize_notebook`` keeps only what
cannot run or load anything:

- outputs: ``text/plain``, PNG and JPEG images (checked by their first bytes) and ``text/html`` cleaned with
  the feedback pages' allow-list (nh3); ``text/markdown`` becomes cleaned HTML; every other type
  (JavaScript, SVG, LaTeX, widget views, ...) is replaced by a line saying so; outputs' metadata is dropped;
  sizes are capped as on the feedback pages;
- markdown cells: rendered and cleaned the same way, as one HTML block (no blank line lets a markdown
  renderer read any of it as markdown again); their attachments are dropped;
- raw cells: shown as text (nbconvert would copy them into the page as HTML);
- the notebook's widget state and any cell id that is not a valid nbformat id.

Stream text, errors and code are escaped by nbconvert itself.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from pathlib import Path
from typing import Any, Mapping

import nbformat
import nh3

from grading.reports.feedback import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    DATA_IMAGE,
    IMAGE_MAGIC,
    MARKDOWN,
    SAFE_HREF,
    limit_outputs,
)

CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
BLANK_LINES = re.compile(r"\n[ \t]*(?=\n)")
MAX_OUTPUT_CHARS = 100_000
MAX_IMAGE_BYTES = 2 * 2**20


def _attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if SAFE_HREF.match(value.strip()) else None
    if tag == "img" and attribute == "src":
        return value if DATA_IMAGE.match(value.strip()) else None
    return value


def clean_html(markup: str) -> str:
    """Student HTML with nothing that runs or loads: allowed tags only, links http(s)/mailto, images data: only."""
    clean = nh3.clean(markup, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, clean_content_tags={"script", "style"},
                      url_schemes={"http", "https", "mailto", "data"}, attribute_filter=_attribute,
                      link_rel="noopener noreferrer nofollow", strip_comments=True)
    return BLANK_LINES.sub("", clean)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _valid_image(mime: str, value: Any) -> bool:
    try:
        data = base64.b64decode("".join(_text(value).split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return data.startswith(IMAGE_MAGIC[mime])


def _safe_data(data: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """An output's data with only inert types kept; and how many types were changed or dropped."""
    kept: dict[str, Any] = {}
    changed = 0
    for mime, value in data.items():
        if mime == "text/plain":
            kept[mime] = _text(value)
        elif mime in IMAGE_MAGIC and _valid_image(mime, value):
            kept[mime] = _text(value)
        elif mime in ("text/html", "text/markdown"):
            source = _text(value)
            clean = clean_html(MARKDOWN.render(source) if mime == "text/markdown" else source)
            kept["text/html"] = clean
            changed += clean != source
        else:
            changed += 1
    if not kept:
        kept["text/plain"] = "[output left out by the grader: " + ", ".join(sorted(map(str, data))[:5]) + "]"
    return kept, changed


def sanitize_notebook(nb: nbformat.NotebookNode) -> int:
    """Make a graded notebook inert in place (see the module doc); return how many things were changed."""
    changed = 0
    if "widgets" in nb.get("metadata", {}):
        del nb.metadata["widgets"]
        changed += 1
    for index, cell in enumerate(nb.get("cells", [])):
        if "id" in cell and not (isinstance(cell.id, str) and CELL_ID.fullmatch(cell.id)):
            cell.id = f"cell-{index}"
            changed += 1
        kind = cell.get("cell_type")
        if kind == "markdown":
            source = _text(cell.get("source", ""))
            cell.source = clean_html(MARKDOWN.render(source))
            changed += cell.source != source
            if cell.pop("attachments", None):
                changed += 1
        elif kind == "raw":
            source = _text(cell.get("source", ""))
            cell.cell_type, cell.source = "markdown", f"<pre>{html.escape(source)}</pre>".replace("\n", "&#10;")
            cell.metadata.pop("format", None)
            cell.metadata.pop("raw_mimetype", None)
            cell.pop("attachments", None)
            changed += 1
        elif kind == "code":
            limit_outputs(cell, MAX_OUTPUT_CHARS, MAX_IMAGE_BYTES)
            for output in cell.get("outputs", []):
                if output.get("metadata"):
                    output.metadata = {}
                    changed += 1
                if "data" in output:
                    output["data"], count = _safe_data(output.get("data") or {})
                    changed += count
    return changed


def sanitize_file(path: Path) -> int:
    """``sanitize_notebook`` on a notebook file, rewritten in place; 0 when there is no such file."""
    if not path.is_file():
        return 0
    nb = nbformat.read(str(path), as_version=4)
    changed = sanitize_notebook(nb)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(path)
    return changed
