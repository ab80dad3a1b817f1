"""The notebook that grading runs: the release's own cells, the student's answer cells, nothing else.

A student's code reaches the graded kernel only through the answer cells (nbgrader's solution cells);
every other code cell runs as released. Cells the student added, and release cells they changed, stay
in the notebook as markdown ("not run while grading", the code in a block) in the place the student put
them, so the feedback page shows them; they never run. So code outside the answer cells cannot
influence any exercise's evidence. Markdown and raw cells the student added are kept as they are (they
run nothing).

``answer_program`` gives the other run of a submission, the answer cells alone (``grading.running.alone``): the
release's statements that define what the answer cells read and the student's answer cells, nothing else.

Input: a submission whose nbgrader metadata ``grading.intake.metadata`` has repaired (each release
grade and solution cell present at most once). Release cells are matched to submitted cells by
``grade_id``, then by identical source, in order.
"""

from __future__ import annotations

import ast
import copy
import re
import symtable
import uuid
from typing import Optional

import nbformat
from nbformat import NotebookNode

from grading.course import grade_id, is_solution, is_test
from grading.intake.python_source import as_python, parse

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


# the release statements the answer cells alone may keep: those that bind names (the answer cells read some)
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _globals_read(source: str) -> set[str]:
    """The global names ``source`` reads, at its top level or inside its functions and classes (their
    parameters and locals left out); empty when it does not compile."""
    try:
        tables = [symtable.symtable(source, "<cell>", "exec")]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    while tables:
        table = tables.pop()
        top = table.get_type() == "module"
        names |= {sym.get_name() for sym in table.get_symbols() if sym.is_referenced() and (top or sym.is_global())}
        tables += table.get_children()
    return names


def _bound(statement: ast.stmt) -> Optional[set[str]]:
    """The names a release statement binds: an import, a function or class, a plain assignment (``a = ...``,
    ``a: T = ...``, ``a, b = ...``); empty for any other statement, None for ``from m import *`` (unknown)."""
    if isinstance(statement, ast.Import):
        return {alias.asname or alias.name.split(".")[0] for alias in statement.names}
    if isinstance(statement, ast.ImportFrom):
        names = {alias.asname or alias.name for alias in statement.names}
        return None if "*" in names else names
    if isinstance(statement, DEFINITIONS):
        return {statement.name}
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        targets = [statement.target]
    else:
        return set()
    names: set[str] = set()
    for target in targets:
        parts = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(part, ast.Name) for part in parts):
            return set()
        names |= {part.id for part in parts}
    return names


def _parsed(source: str) -> list[ast.stmt]:
    tree = parse(as_python(source))
    return tree.body if tree is not None else []


def answer_program(graded: NotebookNode, release: NotebookNode) -> list[dict[str, str]]:
    """The cells the answer cells alone run, in release order ({"label", "source"}): the student's answer cell
    (from ``graded``, the notebook ``graded_notebook`` made) in place of each release answer cell and, of the
    release's other code cells (the hidden tests left out), the statements that bind names the answer cells
    read (imports, functions, classes, plain assignments such as ``device = try_gpu()``), with those they read
    in turn; no other statement (no plot, no print, no training)."""
    answers = {grade_id(c): c for c in graded.cells if c.cell_type == "code" and is_solution(c) and grade_id(c)}
    plan: list[tuple[str, object]] = []  # (label, answer source) or (label, [release statements])
    needed: set[str] = set()
    for index, cell in enumerate(release.cells):
        if cell.cell_type != "code" or is_test(cell):
            continue
        if is_solution(cell):
            answer = answers.get(grade_id(cell))
            if answer is not None:
                source = as_python(answer.source)
                plan.append((grade_id(cell), source))
                needed |= _globals_read(source)
        else:
            plan.append((f"release cell {index + 1}", _parsed(cell.source)))
    statements = [s for _, content in plan if isinstance(content, list) for s in content]
    kept: set[int] = set()
    grew = True
    while grew:  # until no statement kept reads a name that a statement left out binds
        grew = False
        for statement in reversed(statements):
            bound = _bound(statement)
            if id(statement) not in kept and (bound is None or bound & needed):
                kept.add(id(statement))
                needed |= _globals_read(ast.unparse(statement))
                grew = True
    program = []
    for label, content in plan:
        if isinstance(content, str):
            program.append({"label": label, "source": content})
        elif (source := "\n".join(ast.unparse(s) for s in content if id(s) in kept)):
            program.append({"label": label, "source": source})
    return program
