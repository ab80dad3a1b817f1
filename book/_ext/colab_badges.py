"""Sphinx extension: ``{colab-badge}`` directive, an "Open in Colab" badge for a notebook of the repository,
and launch buttons that open only notebooks students may see (``launch_colab_safely``).

The badge URL is ``grading.course.colab_url``: built from the one repository setting of ``_config.yml``
(``repository.url``, ``branch`` and ``path_to_book``), the same function that writes the badges of the
student notebooks. The build warns (an error under ``-W``) when the notebook does not exist, or when a
notebook under ``book/exercises/`` has no badge anywhere.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path
from typing import Dict, List

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the repository's grading package, also when PYTHONPATH is not set
    sys.path.insert(0, str(REPO_ROOT))

from grading.course import COLAB_BASE, colab_url, repository  # noqa: E402

logger = logging.getLogger(__name__)

BADGE_IMAGE = "/book/_static/colab-badge.svg"  # "/" = relative to the book root
EXERCISES_DIR = "book/exercises"


class ColabBadge(SphinxDirective):
    """``{colab-badge} book/exercises/x/x.ipynb``: a linked Open-in-Colab badge for that notebook."""

    required_arguments = 1

    def run(self) -> List[nodes.Node]:
        notebook = self.arguments[0].strip()
        if not (Path(self.env.srcdir) / notebook).is_file():
            logger.warning("colab-badge: notebook %s does not exist", notebook, location=self.get_location())
        options = self.config.html_theme_options
        colab_base = options.get("launch_buttons", {}).get("colab_url", COLAB_BASE)
        url = colab_url(notebook, repository(Path(self.env.srcdir) / "_config.yml"), colab_base)
        if not hasattr(self.env, "colab_badges"):
            self.env.colab_badges = {}
        self.env.colab_badges.setdefault(self.env.docname, set()).add(notebook)
        image = nodes.image(uri=BADGE_IMAGE, alt=f"Open {posixpath.basename(notebook)} in Colab")
        link = nodes.reference("", "", image, refuri=url, classes=["colab-badge"])
        return [nodes.paragraph("", "", link)]


def _purge(app: Sphinx, env, docname: str) -> None:
    """Forget the badges of a document that is about to be re-read."""
    getattr(env, "colab_badges", {}).pop(docname, None)


def _merge(app: Sphinx, env, docnames, other) -> None:
    """Merge badges recorded by parallel readers."""
    env.colab_badges = getattr(env, "colab_badges", {})
    env.colab_badges.update(getattr(other, "colab_badges", {}))


def _check_every_exercise_has_a_badge(app: Sphinx, env) -> None:
    """Warn about student notebooks that no page links to Colab."""
    badged = set().union(*getattr(env, "colab_badges", {}).values())
    for notebook in sorted(Path(env.srcdir).glob(f"{EXERCISES_DIR}/**/*.ipynb")):
        rel = notebook.relative_to(env.srcdir).as_posix()
        if ".ipynb_checkpoints" not in rel and rel not in badged:
            logger.warning("colab-badge: student notebook %s has no Colab badge on any page", rel)


def launch_colab_safely(app: Sphinx, pagename: str, templatename: str, context: Dict, doctree) -> None:
    """The theme's Colab launch button opens the page's own source, which is wrong twice: a solved assignment's
    source is the nbgrader notebook in solutions/ (hidden tests), and a MyST page (.md) is no notebook Colab can
    open. A solved page's button opens that assignment's student notebook instead; a .md page has none."""
    source = Path(app.env.doc2path(pagename))
    relative = source.relative_to(app.srcdir)
    colab_base = app.config.html_theme_options.get("launch_buttons", {}).get("colab_url", COLAB_BASE)
    for group in [g for g in context.get("header_buttons", []) if g.get("label") == "launch-buttons"]:
        kept = []
        for button in group.get("buttons", []):
            if button.get("text") != "Colab" or (source.suffix == ".ipynb" and relative.parts[0] != "solutions"):
                kept.append(button)
                continue
            exercise = f"{EXERCISES_DIR}/{source.stem}/{source.stem}.ipynb"
            if relative.parts[0] == "solutions" and (Path(app.srcdir) / exercise).is_file():
                url = colab_url(exercise, repository(Path(app.srcdir) / "_config.yml"), colab_base)
                kept.append({**button, "text": "Colab: the exercise", "url": url,
                             "tooltip": "Open this assignment's exercise notebook (no solutions) in Colab"})
        group["buttons"] = kept
        if not kept:
            context["header_buttons"].remove(group)


def setup(app: Sphinx) -> Dict[str, object]:
    """Register the directive, the consistency check and the launch-button fix."""
    app.add_directive("colab-badge", ColabBadge)
    app.connect("html-page-context", launch_colab_safely, priority=600)  # after the theme's buttons (501)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check_every_exercise_has_a_badge)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
