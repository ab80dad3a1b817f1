"""Sphinx extension: the solved assignments are published when the instructor says so.

One setting, the environment variable ``COURSE_SOLUTIONS`` read at build time: ``published`` (the
default) builds ``_toc.yml`` as it is; ``unpublished`` builds it without the part holding the pages
under ``solutions/``, with the exercises page and ``book/solutions_later`` (a page saying when the
solutions appear) first in the navigation. Links to a solved page then lead to that page.

    COURSE_SOLUTIONS=unpublished jupyter-book build .
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any, Dict, Optional

import yaml
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

SETTING = "COURSE_SOLUTIONS"
SOLUTIONS_DIR = "solutions/"
EXERCISES_DOC = "book/exercises"
LATER_DOC = "book/solutions_later"


def solutions_published() -> bool:
    """Whether this build publishes the solved assignments (``COURSE_SOLUTIONS``, default published)."""
    value = os.environ.get(SETTING, "published").strip().lower()
    if value not in ("published", "unpublished"):
        raise ConfigError(f"{SETTING} must be 'published' or 'unpublished', not {value!r}")
    return value == "published"


def toc_without_solutions(toc: Dict[str, Any]) -> Dict[str, Any]:
    """The table of contents without the pages under solutions/, the exercises and LATER_DOC first."""
    parts = []
    for part in toc.get("parts", []):
        chapters = [c for c in part.get("chapters", []) if not str(c.get("file", "")).startswith(SOLUTIONS_DIR)
                    and c.get("file") != EXERCISES_DOC]
        if chapters:
            parts.append({**part, "chapters": chapters})
    first = {"caption": "The assignments", "chapters": [{"file": EXERCISES_DOC}, {"file": LATER_DOC}]}
    return {**toc, "parts": [first, *parts]}


def _choose_toc(app: Sphinx, config: Config) -> None:
    """Unpublished: point sphinx-external-toc (which reads it at priority 900) at the reduced toc."""
    if solutions_published():
        return
    source = Path(app.srcdir) / str(config["external_toc_path"])
    reduced = Path(app.outdir).parent / "_toc_unpublished.yml"
    reduced.parent.mkdir(parents=True, exist_ok=True)
    reduced.write_text(yaml.safe_dump(toc_without_solutions(yaml.safe_load(source.read_text())), sort_keys=False))
    config["external_toc_path"] = str(reduced)


def _to_later_page(app: Sphinx, env, node: nodes.Element, contnode: nodes.Node) -> Optional[nodes.Node]:
    """Unpublished: a link to a solved page leads to LATER_DOC (no broken link, no warning)."""
    if solutions_published() or node.get("reftype") != "doc":
        return None
    target = node["reftarget"]
    if not target.startswith("/"):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(node["refdoc"]), target))
    if not target.lstrip("/").startswith(SOLUTIONS_DIR):
        return None
    name = posixpath.basename(target)
    label = contnode if node.get("refexplicit") else nodes.inline("", f"the {name} assignment (solved after the "
                                                                      "deadline)")
    ref = nodes.reference("", "", internal=True, refuri=app.builder.get_relative_uri(node["refdoc"], LATER_DOC))
    ref += label
    return ref


def setup(app: Sphinx) -> Dict[str, object]:
    """Choose the table of contents before sphinx-external-toc reads it; redirect links to unpublished pages."""
    app.connect("config-inited", _choose_toc, priority=100)
    app.connect("missing-reference", _to_later_page)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
