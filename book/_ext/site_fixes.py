"""Sphinx extension: small fixes of the rendered site.

- Code cells of the solution notebooks are shown without nbgrader's ``### BEGIN/END SOLUTION`` lines.
- Images drawn by a cell get their PNG's Description as alt text (course_lib.plotting writes it).
- Markup that axe-core reports as serious or critical (a hidden cell's toggle, the bibliography) is
  rewritten in its accessible form.
- Each inline script is emitted once per page (sphinx-thebe registers its configuration script twice,
  and the second copy fails with "Identifier 'THEBE_JS_URL' has already been declared").
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from docutils import nodes
from sphinx.application import Sphinx

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def strip_solution_markers(app: Sphinx, doctree: nodes.document) -> None:
    """Drop nbgrader solution-marker lines from every code block of a page."""
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if not any(marker in text for marker in SOLUTION_MARKERS):
            continue
        kept = "\n".join(line for line in text.splitlines() if line.strip() not in SOLUTION_MARKERS)
        block.children = [nodes.Text(kept)]
        block.rawsource = kept


def deduplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: Dict, doctree) -> None:
    """Keep the first of identical script entries of a page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # same file and attributes (an inline script's text is its "body" attribute), any priority
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


# Markup of myst-nb and docutils that axe-core reports (serious or critical), and its accessible form.
ACCESSIBLE_MARKUP = (
    # a hidden cell's toggle: named by its visible text ("Show code cell source"), not a different label
    ('<summary aria-label="Toggle hidden content">', "<summary>"),
    # the bibliography: a list whose entries are list items (doc-biblioentry no longer counts as one)
    ('<div class="citation" id="', '<div class="citation" role="listitem" id="'),
    ('" role="doc-biblioentry">', '">'),
)


def accessible_body(app: Sphinx, pagename: str, templatename: str, context: Dict, doctree) -> None:
    """Rewrite the page body's markup listed in ACCESSIBLE_MARKUP."""
    body = context.get("body")
    if isinstance(body, str):
        for before, after in ACCESSIBLE_MARKUP:
            body = body.replace(before, after)
        context["body"] = body


def alt_text_from_figures(app: Sphinx, doctree: nodes.document) -> None:
    """An image a cell drew gets the Description its PNG carries as alt text (course_lib's figures describe
    their titles, axes and legends), instead of none."""
    from PIL import Image  # matplotlib's own dependency

    for image in doctree.findall(nodes.image):
        path = Path(app.srcdir) / image.get("uri", "").lstrip("/")
        if image.get("alt") or path.suffix != ".png" or not path.is_file():
            continue
        with Image.open(path) as png:
            description = getattr(png, "text", {}).get("Description", "").strip()
        if description:
            image["alt"] = description


def setup(app: Sphinx) -> Dict[str, object]:
    """Connect the fixes."""
    app.connect("doctree-read", alt_text_from_figures)
    app.connect("html-page-context", accessible_body)
    app.connect("doctree-read", strip_solution_markers)
    # early: a handler that returns a template name stops the handlers after it
    app.connect("html-page-context", deduplicate_scripts, priority=999)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
