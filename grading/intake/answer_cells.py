"""The notebook that grading runs: the release's own cells, the student's answer cells, nothing else.

A student's code reaches the graded kernel only through the answer cells (nbgrader's solution cells);
every other code cell runs as released. Cells the student added, and release cells they changed, stay
in the notebook as markdown ("not run while grading", the code in a block) in the place the student put
them, so the feedback page shows them; they never run. So code outside the answer cells cannot
influence any exercise's evidence. Markdown and raw cells the student added are kept as they are (they
run nothing).

Input: a submission whose nbgrader metadata ``grading.intake.metadata`` has repaired (each release
grade and solution cell present at most once). Release cells are matched to submitted cells by
``grade_id``, then by identical source, in order.
"""

from __future__ import annotations

import copy
import re
import uuid

import nbformat
from nbformat import NotebookNode

from grading.course import grade_id, is_solution

NOT_RUN = "**Not run while grading** (a cell you added or changed; only the answer cells run):"


def _fenced(source: str) -> str:
    """``source`` in a fenced block longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}python\n{source}\n{fence}"


def shown_not_run(cell: NotebookNode) -> NotebookNode:
    """A markdown cell that shows a code cell's source and says it was not run."""
    shown = nbformat.v4.new_markdown_cell(f"{NOT_RUN}\n\n{_fenced(cell.source)}")
    shown["id"] = uuid.uuid4().hex[:8]
    return shown


def _release_index(submission: NotebookNode, release: NotebookNode) -> list[int]:
    """For each submitted cell, the index of the release cell it is (-1: added or changed)."""
    by_gid = {grade_id(c): i for i, c in enumerate(release.cells) if grade_id(c)}
    matched, position, out = set(), -1, []
    for cell in submission.cells:
        gid = grade_id(cell)
        if gid and gid in by_gid and by_gid[gid] not in matched:
            index = by_gid[gid]
        else:
            index = next((i for i in range(position + 1, len(release.cells)) if i not in matched
                          and not grade_id(release.cells[i]) and release.cells[i].cell_type == cell.cell_type
                          and release.cells[i].source == cell.source), -1)
        if index >= 0:
            matched.add(index)
            position = max(position, index)
        out.append(index)
    return out


def graded_notebook(submission: NotebookNode, release: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The notebook to run: release cells in release order, the student's answer cells in their place,
    every other submitted code cell shown as markdown after the release cell it followed; and a note."""
    index_of = _release_index(submission, release)
    after: dict[int, list[NotebookNode]] = {}  # release index -> the student's own cells that followed it
    answers: dict[int, NotebookNode] = {}
    last, not_run = -1, 0
    for cell, index in zip(submission.cells, index_of):
        if index >= 0:
            last = max(last, index)
            if is_solution(release.cells[index]):
                answers[index] = cell
            continue
        if cell.cell_type == "code":
            not_run += 1
            after.setdefault(last, []).append(shown_not_run(cell))
        else:
            after.setdefault(last, []).append(cell)
    graded = copy.deepcopy(submission)
    graded.cells = list(after.get(-1, []))
    for index, release_cell in enumerate(release.cells):
        cell = answers.get(index) or copy.deepcopy(release_cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        graded.cells.append(cell)
        graded.cells += after.get(index, [])
    seen: set[str] = set()
    for cell in graded.cells:  # a student's cell may carry a release cell's id
        if cell.get("id") in seen:
            cell["id"] = uuid.uuid4().hex[:8]
        seen.add(cell["id"])
    notes = [f"{not_run} code cell{'s' if not_run != 1 else ''} you added or changed outside the answer cells "
             f"{'were' if not_run != 1 else 'was'} shown, not run"] if not_run else []
    return graded, notes
