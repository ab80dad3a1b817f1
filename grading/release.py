"""Generate the student notebooks from solutions/ with nbgrader: `python -m grading.release`.

For each assignment, `nbgrader generate_assignment` (configured by nbgrader_config.py) strips the
solutions and hidden tests; then an "Open in Colab" badge and a set-up cell that runs only inside
Colab are put in front, both built from `repository.url` / `repository.branch` in _config.yml.
The result, book/exercises/<assignment>/<assignment>.ipynb, is written deterministically, so a test
can regenerate it and compare with the committed copy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable

import nbformat
import yaml

from .solutions import ASSIGNMENTS, ROOT, nbgrader_cells

RELEASE_DIR = ROOT / "book" / "exercises"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_SOURCE = '''\
# Set-up for Google Colab; it does nothing anywhere else.
import sys

if "google.colab" in sys.modules:
    import subprocess

    # Install the course's helper library (it brings the trained models along), then fetch FashionMNIST.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{install_url}"], check=True)
    from course_lib.data import prepare_fashion_mnist

    print("FashionMNIST ready in", prepare_fashion_mnist())'''


def repository_settings(config_path: Path = ROOT / "_config.yml") -> Dict[str, str]:
    """The repository URL (without trailing slash or .git) and branch set in the book's _config.yml."""
    repository = yaml.safe_load(config_path.read_text())["repository"]
    url = repository["url"].rstrip("/")
    url = url[: -len(".git")] if url.endswith(".git") else url
    return {"url": url, "branch": repository.get("branch", "main")}


def release_path(assignment: str, release_dir: Path = RELEASE_DIR) -> Path:
    """Where an assignment's student notebook is released."""
    return release_dir / assignment / f"{assignment}.ipynb"


def colab_url(assignment: str, settings: Dict[str, str]) -> str:
    """The Colab address that opens the committed student notebook from the repository."""
    github_path = settings["url"].split("github.com/", 1)[-1]
    notebook = release_path(assignment).relative_to(ROOT).as_posix()
    return f"https://colab.research.google.com/github/{github_path}/blob/{settings['branch']}/{notebook}"


def colab_cells(assignment: str, settings: Dict[str, str]) -> list:
    """The badge cell and the Colab-only set-up cell put in front of a student notebook."""
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(assignment, settings)})", id="colab-badge"
    )
    install_url = f"git+{settings['url']}@{settings['branch']}"
    setup = nbformat.v4.new_code_cell(SETUP_SOURCE.format(install_url=install_url), id="colab-setup")
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
    settings = repository_settings()
    written = []
    with tempfile.TemporaryDirectory(prefix="release_") as scratch:
        for assignment in assignments:
            notebook = nbformat.read(run_nbgrader(assignment, Path(scratch)), as_version=4)
            notebook.cells = colab_cells(assignment, settings) + notebook.cells
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
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


if __name__ == "__main__":
    main()
