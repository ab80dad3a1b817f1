"""Keep hidden tests out of feedback: read them from the source, scrub outputs, grep the HTML.

nbgrader's ClearHiddenTests removes the hidden block from each test cell's source, but a failing
hidden test's traceback still prints the failing line, and a notebook may print anything. The
``ScrubHiddenTests`` preprocessor (run after ClearHiddenTests in generate_feedback) drops every
output line that contains a hidden-test line and reduces the error of a test cell holding hidden
tests to its name and message. ``find_leaks`` is the last line of defence: the grader deletes
any feedback file in which a hidden-test line still appears.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Iterable

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, List, Unicode

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TAG = re.compile(r"<[^>]*>")


def hidden_test_lines(source_notebook: Path) -> list[str]:
    """Every non-blank line (stripped) between BEGIN/END HIDDEN TESTS in a source notebook."""
    nb = nbformat.read(str(source_notebook), as_version=4)
    lines: list[str] = []
    for cell in nb.cells:
        inside = False
        for line in cell.source.splitlines():
            if BEGIN in line:
                inside = True
            elif END in line:
                inside = False
            elif inside and line.strip():
                lines.append(line.strip())
    return list(dict.fromkeys(lines))


def hidden_cell_ids(source_notebook: Path) -> list[str]:
    """grade_ids of the source cells that hold hidden tests."""
    nb = nbformat.read(str(source_notebook), as_version=4)
    return [c.metadata.get("nbgrader", {}).get("grade_id", "") for c in nb.cells if BEGIN in c.source]


def _scrub_text(text: str, hidden: Iterable[str], max_chars: int) -> str:
    """Drop lines containing a hidden line (ANSI colours ignored); cut to ``max_chars``."""
    kept = [line for line in text.splitlines(keepends=True)
            if not any(h in ANSI.sub("", line) for h in hidden)]
    text = "".join(kept)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... [output cut: {len(text) - max_chars} more characters]\n"
    return text


def scrub_outputs(cell, hidden: list[str], hidden_cell: bool, max_chars: int) -> None:
    """Scrub one code cell's outputs in place."""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            output.text = _scrub_text(output.text, hidden, max_chars)
        elif output.output_type == "error":
            if hidden_cell:
                output.traceback = [f"{output.ename}: {_scrub_text(output.evalue, hidden, max_chars)}"]
            else:
                output.traceback = [_scrub_text(t, hidden, max_chars) for t in output.traceback[-60:]]
            output.evalue = _scrub_text(output.evalue, hidden, max_chars)
        elif "data" in output:
            for mime in list(output.data):
                if isinstance(output.data[mime], str) and not mime.startswith("image/"):
                    output.data[mime] = _scrub_text(output.data[mime], hidden, max_chars)


class ScrubHiddenTests(NbGraderPreprocessor):
    """Remove hidden-test lines from every output and source; shorten hidden test cells' errors."""

    hidden_lines = List(Unicode(), help="Lines of hidden tests that must never appear.").tag(config=True)
    hidden_cells = List(Unicode(), help="grade_ids of cells holding hidden tests.").tag(config=True)
    max_output_chars = Integer(20000, help="Longest text kept per output.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        """Scrub one cell."""
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        cell.source = _scrub_text(cell.source, self.hidden_lines, 10**9)
        if cell.cell_type == "code":
            scrub_outputs(cell, self.hidden_lines, grade_id in self.hidden_cells, self.max_output_chars)
        return cell, resources


class LimitOutputChars(NbGraderPreprocessor):
    """Cut each output to a number of characters (nbgrader's LimitOutput counts lines only)."""

    max_output_chars = Integer(100000, help="Longest text kept per output.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        """Cut one cell's outputs."""
        if cell.cell_type == "code":
            scrub_outputs(cell, [], False, self.max_output_chars)
        return cell, resources


def find_leaks(html_text: str, hidden: Iterable[str]) -> list[str]:
    """Hidden lines found in an HTML page, as markup or as the text a reader sees."""
    visible = html.unescape(TAG.sub("", html_text))
    escaped = html_text
    return [h for h in hidden if h in visible or h in escaped or html.escape(h) in escaped]
