"""Generate the student notebooks from solutions/ with nbgrader: `python -m grading.authoring.release`.

For each assignment, `nbgrader generate_assignment` (configured by nbgrader_config.py) strips the
solutions and hidden tests; then an "Open in Colab" badge and the Colab-only set-up cell of
grading.course are put in front. The result, book/exercises/<assignment>/<assignment>.ipynb, is
written deterministically, so a test can regenerate it and compare with the committed copy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

import nbformat

from grading.authoring.solutions import nbgrader_cells
from grading.course import (
    ASSIGNMENTS,
    COLAB_BADGE_IMAGE,
    RELEASE_DIR,
    REPO_ROOT,
    Repository,
    colab_setup_source,
    is_solution,
    release_notebook,
    repository,
)
from grading.course import colab_url as _colab_url
from grading.course import grade_id as cell_grade_id

ROOT = REPO_ROOT
BADGE_IMAGE = COLAB_BADGE_IMAGE


def repository_settings() -> Dict[str, str]:
    """The repository URL (without trailing slash or .git) and branch set in the book's _config.yml."""
    repo = repository()
    return {"url": repo.url, "branch": repo.branch}


def release_path(assignment: str, release_dir: Path = RELEASE_DIR) -> Path:
    """Where an assignment's student notebook is released."""
    return release_notebook(assignment, release_dir)


def colab_url(assignment: str, repo: Optional[Repository] = None) -> str:
    """The Colab address that opens an assignment's committed student notebook from the repository."""
    return _colab_url(release_path(assignment).relative_to(ROOT).as_posix(), repo)


def colab_cells(assignment: str) -> list:
    """The badge cell and the Colab-only set-up cell put in front of a student notebook."""
    badge = nbformat.v4.new_markdown_cell(f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(assignment)})",
                                          id="colab-badge")
    setup = nbformat.v4.new_code_cell(colab_setup_source(), id="colab-setup")
    return [badge, setup]


def nbgrader_env() -> Dict[str, str]:
    """This environment with the interpreter's bin folder first on PATH (nbgrader calls `alembic`)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


def run_nbgrader(assignment: str, out_dir: Path) -> Path:
    """Run `nbgrader generate_assignment` into ``out_dir`` (a scratch gradebook); return the notebook."""
    command = [
        sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
        f"--CourseDirectory.release_directory={out_dir}",
        f"--CourseDirectory.db_url=sqlite:///{out_dir / 'gradebook.db'}",
        "--log-level=WARN",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=nbgrader_env())
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{done.stdout}\n{done.stderr}")
    return out_dir / assignment / f"{assignment}.ipynb"


def generate(assignments: Iterable[str] = ASSIGNMENTS, release_dir: Path = RELEASE_DIR) -> list[Path]:
    """Regenerate the student notebooks into ``release_dir``; return their paths."""
    written = []
    with tempfile.TemporaryDirectory(prefix="release_") as scratch:
        for assignment in assignments:
            notebook = nbformat.read(run_nbgrader(assignment, Path(scratch)), as_version=4)
            notebook.cells = colab_cells(assignment) + notebook.cells
            nbformat.validate(notebook)
            target = release_path(assignment, release_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, target)
            written.append(target)
    return written


def main() -> None:
    """Command line: regenerate all (or the named) assignments."""
    parser = argparse.ArgumentParser(description="Generate the student notebooks from solutions/.")
    parser.add_argument("assignments", nargs="*", help=f"default: all of {', '.join(ASSIGNMENTS)}")
    parser.add_argument("--out", type=Path, default=RELEASE_DIR, help="release folder (default book/exercises)")
    args = parser.parse_args()
    unknown = set(args.assignments) - set(ASSIGNMENTS)
    if unknown:
        parser.error(f"unknown assignment(s): {', '.join(sorted(unknown))}")
    for path in generate(args.assignments or ASSIGNMENTS, args.out):
        print("wrote", path)


def filled_release(assignment: str, answers: Dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The committed student notebook with its answer cells filled in, as a student would hand it in.

    ``answers`` maps grade ids to cell sources; answer cells not named there get the reference solution.
    """
    answers = {**nbgrader_cells(assignment, "solution"), **(answers or {})}
    notebook = nbformat.read(release_path(assignment), as_version=4)
    for cell in notebook.cells:
        if is_solution(cell) and cell_grade_id(cell) in answers:
            cell.source = answers[cell_grade_id(cell)]
    return notebook


if __name__ == "__main__":
    main()
