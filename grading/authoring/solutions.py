"""Read the graded cells of the source notebooks in solutions/ and run the reference solutions."""

from __future__ import annotations

from typing import Any, Dict, Iterable

import nbformat

from grading.course import ASSIGNMENTS, EXERCISES, REPO_ROOT, SOURCE_DIR, grade_id, nbgrader_meta, source_notebook

ROOT = REPO_ROOT
__all__ = ["ASSIGNMENTS", "EXERCISES", "ROOT", "SOURCE_DIR", "source_notebook", "nbgrader_cells",
           "solution_namespace", "PRELUDE"]

# The names the solution cells may use without defining them (the notebooks' own imports).
PRELUDE = "import math\nimport torch\nfrom torch import nn\nfrom course_lib.optim import OptimizerTemplate\n"


def nbgrader_cells(assignment: str, kind: str) -> Dict[str, str]:
    """Source of the cells whose nbgrader metadata has ``kind`` ("solution" or "grade"), by grade_id."""
    notebook = nbformat.read(source_notebook(assignment), as_version=4)
    return {grade_id(cell): cell.source for cell in notebook.cells if nbgrader_meta(cell).get(kind)}


def solution_namespace(assignment: str, sources: Iterable[str] | None = None) -> Dict[str, Any]:
    """Execute the prelude and the solution cells (or ``sources``) in a fresh namespace; return it."""
    namespace: Dict[str, Any] = {}
    exec(PRELUDE, namespace)
    for source in sources if sources is not None else nbgrader_cells(assignment, "solution").values():
        exec(source, namespace)
    return namespace
