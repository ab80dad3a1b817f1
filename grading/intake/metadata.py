"""Repair a submitted notebook before nbgrader sees it: the nbgrader cell metadata students break.

- **Foreign cells:** a cell pasted from another assignment carries a ``grade_id`` this release does
  not have; its nbgrader metadata is dropped (the code still runs, ungraded).
- **Duplicates:** a graded cell copied and pasted gives two cells one ``grade_id``; one keeps the
  metadata (for a solution cell the last copy, which defines what runs; for a test cell the copy most
  like the release, the last on a tie) and the others lose it.
- **Changed metadata:** a known cell whose nbgrader metadata differs from the release's (``grade:
  true`` added to a solution, a test's points raised, a cell unlocked) gets the release's back.
- **Stripped metadata:** editors and Colab round trips drop it, and nbgrader then finds no graded
  cell. Each release cell with nbgrader metadata is matched, in order, to the most similar later
  submitted cell of the same type (a solution cell must keep its first code line, e.g.
  ``class Adam(...)``). A graded test cell that cannot be found is re-inserted from the release.

Similarity is difflib's ratio on at most ``COMPARED_CHARS`` characters of each cell (head and tail),
capped by the bound the cells' full lengths put on it (``2 min(la, lb) / (la + lb)``), which also
rules out cells of very different sizes without comparing them; so a 10 MB cell costs no comparison
and a notebook's repair stays well under a second. Everything done is reported as notes. Review
flags live in ``grading.intake.flags``.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import uuid
from typing import Optional

import nbformat
from nbformat import NotebookNode

from grading.course import grade_id, is_solution, is_test, nbgrader_meta
from grading.intake.answer_cells import graded_notebook
from grading.intake.flags import review_flags

MIN_SIMILARITY = {"grade": 0.5, "solution": 0.2, "other": 0.8}
COMPARED_CHARS = 2000  # head and tail of a longer cell, for difflib
TAIL_CHARS = 500
MAX_CANDIDATES = 300  # cells after the last match looked at for one release cell
SEMANTIC_KEYS = ("grade", "solution", "locked", "points", "task")
METADATA_KEYS = ("nbgrader", "editable", "deletable")
MAX_CELLS = 5_000  # per submission, once empty cells are dropped (the releases have about 50)


def _kind(cell: NotebookNode) -> Optional[str]:
    """'grade', 'solution' or 'other' for a cell with a grade_id, else None."""
    if grade_id(cell) is None:
        return None
    if is_test(cell):
        return "grade"
    return "solution" if is_solution(cell) else "other"


def _first_code_line(source: str) -> str:
    """The first line that is neither blank nor a comment (within the cell's first COMPARED_CHARS)."""
    for line in source[:COMPARED_CHARS].splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return ""


def _capped(text: str) -> str:
    """At most COMPARED_CHARS characters of a text: its head and its tail."""
    if len(text) <= COMPARED_CHARS:
        return text
    return text[: COMPARED_CHARS - TAIL_CHARS] + text[-TAIL_CHARS:]


def similarity(release_source: str, source: str, floor: float = 0.0) -> float:
    """difflib-like similarity of two sources (0..1) in bounded time; 0 when it cannot reach ``floor``."""
    la, lb = len(release_source), len(source)
    if la + lb == 0:
        return 1.0
    if release_source == source:
        return 1.0
    bound = 2 * min(la, lb) / (la + lb)
    if bound < floor:  # even a perfect overlap would not reach the floor
        return 0.0
    matcher = difflib.SequenceMatcher(None, _capped(release_source), _capped(source), autojunk=False)
    if matcher.real_quick_ratio() < floor or matcher.quick_ratio() < floor:
        return 0.0
    return min(matcher.ratio(), bound)


def _similarity(release_cell: NotebookNode, cell: NotebookNode, kind: str) -> float:
    """How much a submitted cell looks like a release cell (0..1); 0 when it cannot be that cell."""
    if cell.cell_type != release_cell.cell_type:
        return 0.0
    if kind == "solution" and release_cell.cell_type == "code":
        if _first_code_line(cell.source) != _first_code_line(release_cell.source):
            return 0.0
    return similarity(release_cell.source, cell.source, MIN_SIMILARITY[kind])


def normalize(nb: NotebookNode) -> list[str]:
    """Bring a notebook to nbformat 4.5 with unique cell ids; return notes on what changed."""
    notes = []
    if nb.get("nbformat_minor", 0) < 5:
        notes.append(f"saved in an older notebook format (4.{nb.get('nbformat_minor', 0)}, as Colab saves it): "
                     "read as the current one (4.5), nothing in it changed")
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


def _drop_nbgrader(cell: NotebookNode) -> None:
    for key in METADATA_KEYS:
        cell.metadata.pop(key, None)


def _give_release_metadata(cell: NotebookNode, release_cell: NotebookNode) -> None:
    for key in METADATA_KEYS:
        if key in release_cell.metadata:
            cell.metadata[key] = copy.deepcopy(release_cell.metadata[key])
        else:
            cell.metadata.pop(key, None)


def repair_metadata(submission: NotebookNode, release: NotebookNode) -> list[str]:
    """Fix, in place, foreign, duplicated and changed nbgrader metadata; return notes."""
    notes: list[str] = []
    known = {grade_id(c): c for c in release.cells if grade_id(c)}
    groups: dict[str, list[int]] = {}
    for index, cell in enumerate(submission.cells):
        raw = cell.metadata.get("nbgrader")
        if raw is not None and (not isinstance(raw, dict) or not isinstance(raw.get("grade_id", ""), str)):
            _drop_nbgrader(cell)
            notes.append(f"cell {index}: malformed nbgrader metadata dropped")
            continue
        gid = grade_id(cell)
        if gid is None:
            if nbgrader_meta(cell).get("grade") or nbgrader_meta(cell).get("solution"):
                _drop_nbgrader(cell)
                notes.append(f"cell {index}: nbgrader metadata without a grade_id dropped")
        elif gid not in known:
            _drop_nbgrader(cell)
            notes.append(f"cell {index}: graded cell '{gid}' comes from another assignment: its nbgrader "
                         "metadata was dropped (its code still runs, ungraded)")
        else:
            groups.setdefault(gid, []).append(index)
    for gid, indices in groups.items():
        release_cell = known[gid]
        if len(indices) > 1:
            cells = submission.cells
            if is_solution(release_cell):
                keep = indices[-1]
            else:
                keep = max(indices, key=lambda i: (similarity(release_cell.source, cells[i].source), i))
            for index in indices:
                if index != keep:
                    _drop_nbgrader(cells[index])
            others = ", ".join(str(i) for i in indices if i != keep)
            notes.append(f"cell '{gid}' duplicated ({len(indices)} copies, copy and paste?): cell {keep} stays "
                         f"graded, cell(s) {others} become ordinary cells")
        else:
            keep = indices[0]
        cell = submission.cells[keep]
        mine, theirs = nbgrader_meta(cell), nbgrader_meta(release_cell)
        if mine != theirs:
            changed = [k for k in SEMANTIC_KEYS if mine.get(k) != theirs.get(k)]
            _give_release_metadata(cell, release_cell)
            if changed:
                notes.append(f"cell '{gid}': nbgrader metadata changed in the submission "
                             f"({', '.join(changed)}): restored from the release")
    return notes


def _best_match(submission: NotebookNode, release_cell: NotebookNode, kind: str,
                position: int) -> tuple[float, int]:
    """(similarity, index) of the best unmatched cell after ``position``, (0, -1) when none."""
    window = [(i, c) for i, c in enumerate(submission.cells) if i > position and _kind(c) is None]
    window = window[:MAX_CANDIDATES]
    for i, cell in window:  # fast path: the cell as released
        if cell.cell_type == release_cell.cell_type and cell.source == release_cell.source:
            return 1.0, i
    best = (0.0, -1)
    for i, cell in window:
        score = _similarity(release_cell, cell, kind)
        if score > best[0]:
            best = (score, i)
    return best


def restore_metadata(submission: NotebookNode, release: NotebookNode) -> list[str]:
    """Give back, in place, the nbgrader metadata the submission lost; return notes (empty: intact)."""
    notes: list[str] = []
    present = {grade_id(c) for c in submission.cells if _kind(c)}
    position = -1  # index in submission of the last matched release cell
    for release_cell in release.cells:
        kind = _kind(release_cell)
        if kind is None:
            continue
        gid = grade_id(release_cell)
        if gid in present:
            position = next(i for i, c in enumerate(submission.cells) if grade_id(c) == gid)
            continue
        score, index = _best_match(submission, release_cell, kind, position)
        if index >= 0 and score >= MIN_SIMILARITY[kind]:
            _give_release_metadata(submission.cells[index], release_cell)
            notes.append(f"restored nbgrader metadata of cell '{gid}' (similarity {score:.2f})")
            position = index
        elif kind == "grade":
            cell = copy.deepcopy(release_cell)
            cell["id"] = uuid.uuid4().hex[:8]
            submission.cells.insert(position + 1, cell)
            position += 1
            notes.append(f"test cell '{gid}' missing: re-inserted from the release")
        elif kind == "solution":
            notes.append(f"WARNING: solution cell '{gid}' not found (its code, if any, still runs)")
    return notes


def _joined(value):
    if isinstance(value, list):
        try:
            return "".join(value)
        except TypeError:
            return value
    return value


class TooManyCells(ValueError):
    """A notebook with more cells than any honest submission has, even after its empty cells are dropped."""


def _empty(cell: object) -> bool:
    """A cell that holds nothing: no source, no output, no nbgrader metadata (an emptied answer cell is kept)."""
    return (isinstance(cell, dict) and not _joined(cell.get("source", "")).strip() and not cell.get("outputs")
            and not (isinstance(cell.get("metadata"), dict) and "nbgrader" in cell["metadata"]))


def read_notebook(text: str, notes: Optional[list[str]] = None) -> NotebookNode:
    """nbformat.reads, without its cost per line: multi-line strings are joined before nbformat sees them.

    Empty cells are dropped when there are more than MAX_CELLS (a note says how many); a notebook that still
    has more raises TooManyCells, so repair costs a bounded time whatever the notebook holds.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return nbformat.reads(text, as_version=4)  # nbformat's own error message
    if isinstance(data, dict) and isinstance(data.get("cells"), list):
        if len(data["cells"]) > MAX_CELLS:
            kept = [cell for cell in data["cells"] if not _empty(cell)]
            if notes is not None:
                notes.append(f"{len(data['cells']) - len(kept)} empty cells removed")
            if len(kept) > MAX_CELLS:
                raise TooManyCells(f"{len(kept)} cells that are not empty, more than the {MAX_CELLS} a "
                                   "submission may have: not graded")
            data["cells"] = kept
        for cell in data["cells"]:
            if not isinstance(cell, dict):
                continue
            cell["source"] = _joined(cell.get("source", ""))
            for output in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
                if isinstance(output, dict):
                    if "text" in output:
                        output["text"] = _joined(output["text"])
                    if isinstance(output.get("data"), dict):
                        output["data"] = {k: _joined(v) for k, v in output["data"].items()}
        text = json.dumps(data)
    return nbformat.reads(text, as_version=4)


def prepare_submission(text: str, release: NotebookNode) -> tuple[NotebookNode, list[str], list[str]]:
    """Parse, normalize and repair a submitted notebook; return the notebook grading runs (release cells and
    the answer cells: ``grading.intake.answer_cells``), repair notes and review flags (on every submitted cell)."""
    notes: list[str] = []
    nb = read_notebook(text, notes)
    notes += normalize(nb)
    notes += repair_metadata(nb, release)
    notes += restore_metadata(nb, release)
    flags = review_flags(nb, release)
    graded, shown = graded_notebook(nb, release)
    return graded, notes + shown, flags
