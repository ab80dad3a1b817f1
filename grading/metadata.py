"""Repair a submitted notebook before nbgrader sees it: restore stripped nbgrader cell metadata.

Editors (and some Colab round trips) drop the ``nbgrader`` cell metadata; nbgrader then finds no
graded cells and silently gives 0. We align the submission with the released notebook: each
release cell with nbgrader metadata is matched, in order, to the most similar submitted cell of
the same type (a solution cell must keep its first code line, e.g. ``class Adam(...)``), and gets
its metadata back. A graded test cell that cannot be found is re-inserted from the release (its
hidden tests come back from the gradebook during autograde). Everything done is reported as notes.
"""

from __future__ import annotations

import copy
import difflib
import re
import uuid
from typing import Optional

import nbformat
from nbformat import NotebookNode

MIN_SIMILARITY = {"grade": 0.5, "solution": 0.2, "other": 0.8}

# Patterns worth a human look: they are how a notebook would try to fool the checks or escape.
SUSPICIOUS = {
    "assigns a torch/numpy attribute": r"\b(torch|np|numpy|nn|F)(\.\w+)+\s*=(?!=)",
    "uses setattr/sys.modules/builtins": r"\bsetattr\s*\(|sys\.modules|\bbuiltins\b|__builtins__",
    "touches IPython events or the grader": r"\.events\b|\bgrading\b|nbgrader",
    "opens sockets or runs commands": r"\bsocket\b|\burllib\b|\brequests\b|\bsubprocess\b|os\.system|^\s*!",
    "reads absolute or parent paths": r"open\s*\(\s*[rRbf]*['\"](/|\.\./)",
}


def _kind(cell: NotebookNode) -> Optional[str]:
    """'grade', 'solution' or 'other' for a cell with nbgrader metadata, else None."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not meta or "grade_id" not in meta:
        return None
    if meta.get("grade") and not meta.get("solution"):
        return "grade"
    if meta.get("solution"):
        return "solution"
    return "other"


def _first_code_line(source: str) -> str:
    """The first line that is neither blank nor a comment."""
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return ""


def _similarity(release_cell: NotebookNode, cell: NotebookNode, kind: str) -> float:
    """How much a submitted cell looks like a release cell (0..1); 0 when it cannot be that cell."""
    if cell.cell_type != release_cell.cell_type:
        return 0.0
    if kind == "solution" and release_cell.cell_type == "code":
        if _first_code_line(cell.source) != _first_code_line(release_cell.source):
            return 0.0
    return difflib.SequenceMatcher(None, release_cell.source, cell.source, autojunk=False).ratio()


def normalize(nb: NotebookNode) -> list[str]:
    """Bring a notebook to nbformat 4.5 with unique cell ids; return notes on what changed."""
    notes = []
    if nb.get("nbformat_minor", 0) < 5:
        notes.append(f"nbformat 4.{nb.get('nbformat_minor', 0)} upgraded to 4.5")
        nb.nbformat_minor = 5
    seen = set()
    for cell in nb.cells:
        cell_id = cell.get("id")
        if not cell_id or cell_id in seen or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cell_id):
            cell["id"] = uuid.uuid4().hex[:8]
        seen.add(cell["id"])
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
        cell.setdefault("metadata", {})
    return notes


def restore_metadata(submission: NotebookNode, release: NotebookNode) -> list[str]:
    """Give back, in place, the nbgrader metadata the submission lost; return notes (empty: intact)."""
    notes: list[str] = []
    present = {c.metadata.nbgrader["grade_id"] for c in submission.cells if _kind(c)}
    position = -1  # index in submission of the last matched release cell
    for release_cell in release.cells:
        kind = _kind(release_cell)
        if kind is None:
            continue
        grade_id = release_cell.metadata.nbgrader["grade_id"]
        if grade_id in present:
            position = next(i for i, c in enumerate(submission.cells)
                            if _kind(c) and c.metadata.nbgrader["grade_id"] == grade_id)
            continue
        candidates = [(_similarity(release_cell, c, kind), i) for i, c in enumerate(submission.cells)
                      if i > position and _kind(c) is None]
        score, index = max(candidates, default=(0.0, -1))
        if score >= MIN_SIMILARITY[kind]:
            cell = submission.cells[index]
            for key in ("nbgrader", "editable", "deletable"):
                if key in release_cell.metadata:
                    cell.metadata[key] = copy.deepcopy(release_cell.metadata[key])
            notes.append(f"restored nbgrader metadata of cell '{grade_id}' (similarity {score:.2f})")
            position = index
        elif kind == "grade":
            cell = copy.deepcopy(release_cell)
            cell["id"] = uuid.uuid4().hex[:8]
            submission.cells.insert(position + 1, cell)
            position += 1
            notes.append(f"test cell '{grade_id}' missing: re-inserted from the release")
        elif kind == "solution":
            notes.append(f"WARNING: solution cell '{grade_id}' not found (its code, if any, still runs)")
    return notes


def suspicious_code(nb: NotebookNode) -> list[str]:
    """Names of suspicious patterns found in the notebook's unlocked code cells (for human review)."""
    found = []
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                     and not (c.metadata.get("nbgrader", {}).get("locked")))
    for label, pattern in SUSPICIOUS.items():
        if re.search(pattern, code, flags=re.MULTILINE):
            found.append(label)
    return found


def prepare_submission(text: str, release: NotebookNode) -> tuple[NotebookNode, list[str], list[str]]:
    """Parse, normalize and repair a submitted notebook; return it, repair notes and review flags."""
    nb = nbformat.reads(text, as_version=4)
    notes = normalize(nb)
    notes += restore_metadata(nb, release)
    return nb, notes, suspicious_code(nb)
