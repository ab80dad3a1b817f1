"""Read the graded cells of the source notebooks in solutions/ and run the reference solutions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "solutions"
ASSIGNMENTS = ("initialization", "optimization")
# What each assignment's solution cells must define, and which hidden check grades it.
EXERCISES: Dict[str, Dict[str, str]] = {
    "initialization": {
        "var_init": "check_var_init",
        "equal_var_init": "check_equal_var_init",
        "xavier_init": "check_xavier_init",
        "kaiming_init": "check_kaiming_init",
    },
    "optimization": {
        "SGD": "check_sgd",
        "SGDMomentum": "check_sgd_momentum",
        "Adam": "check_adam",
    },
}
# The names the solution cells may use without defining them (the notebooks' own imports).
PRELUDE = "import math\nimport torch\nfrom torch import nn\nfrom course_lib.optim import OptimizerTemplate\n"


def source_notebook(assignment: str) -> Path:
    """Path of an assignment's nbgrader source notebook."""
    return SOURCE_DIR / assignment / f"{assignment}.ipynb"


def nbgrader_cells(assignment: str, kind: str) -> Dict[str, str]:
    """Source of the cells whose nbgrader metadata has ``kind`` ("solution" or "grade"), by grade_id."""
    notebook = nbformat.read(source_notebook(assignment), as_version=4)
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get(kind)
    }


def solution_namespace(assignment: str, sources: Iterable[str] | None = None) -> Dict[str, Any]:
    """Execute the prelude and the solution cells (or ``sources``) in a fresh namespace; return it."""
    namespace: Dict[str, Any] = {}
    exec(PRELUDE, namespace)
    for source in sources if sources is not None else nbgrader_cells(assignment, "solution").values():
        exec(source, namespace)
    return namespace
