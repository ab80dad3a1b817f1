"""The course's identity, in one place: repository, Colab and install URLs, course id, assignments,
exercises and nbgrader's cell predicates. Release, grading, the book's extensions and the tests read
it from here.

The repository settings come from ``_config.yml`` (``repository.url``, ``branch``, ``path_to_book``),
the one place the repository is named.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Optional

import yaml

from course_lib.checks import EXERCISE_NAMES

GRADING_DIR = Path(__file__).resolve().parent  # the grading package (its code is part of every fingerprint)
REPO_ROOT = GRADING_DIR.parent
CONFIG_FILE = REPO_ROOT / "_config.yml"
SOURCE_DIR = REPO_ROOT / "solutions"  # nbgrader source notebooks (solutions and hidden tests)
RELEASE_DIR = REPO_ROOT / "book" / "exercises"  # generated student notebooks
COURSE_ID = "init-optim-course"
COLAB_BASE = "https://colab.research.google.com"
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: what the student defines, the key its probe records under, its test cell."""

    key: str  # probe/result key, e.g. "adam"
    name: str  # the function or class the student writes, e.g. "Adam"
    solution_cell: str  # grade_id of the solution cell
    test_cell: str  # grade_id of the graded test cell that probes it


def _exercise(key: str, name: str) -> Exercise:
    return Exercise(key, name, key, f"{key}_tests")


# Assignment -> its exercises, in notebook order (named in course_lib.checks.catalogue, which the self-check shares).
EXERCISES: Mapping[str, tuple[Exercise, ...]] = {
    assignment: tuple(_exercise(key, name) for key, name in names.items())
    for assignment, names in EXERCISE_NAMES.items()}
ASSIGNMENTS: tuple[str, ...] = tuple(EXERCISES)


@dataclass(frozen=True)
class Repository:
    """Where the course lives: its URL (no trailing slash or .git), branch and the book's folder in it."""

    url: str
    branch: str
    path_to_book: str

    @property
    def owner_repo(self) -> str:
        """'owner/name' of a GitHub URL."""
        return self.url.split("github.com/", 1)[-1]


@lru_cache(maxsize=None)
def _read_repository(config_file: Path) -> Repository:
    settings = yaml.safe_load(config_file.read_text())["repository"]
    url = settings["url"].rstrip("/")
    url = url[: -len(".git")] if url.endswith(".git") else url
    return Repository(url, settings.get("branch") or "main", (settings.get("path_to_book") or "").strip("/"))


def repository(config_file: Optional[Path] = None) -> Repository:
    """The repository settings of ``_config.yml``."""
    return _read_repository(Path(config_file or CONFIG_FILE).resolve())


def repo_path(book_relative: str, repo: Optional[Repository] = None) -> str:
    """A path relative to the book root, as a path relative to the repository root."""
    repo = repo or repository()
    return posixpath.normpath(posixpath.join(repo.path_to_book or ".", book_relative))


def colab_url(notebook: str, repo: Optional[Repository] = None, colab_base: str = COLAB_BASE) -> str:
    """The Colab address that opens ``notebook`` (a path relative to the book root) from the repository."""
    repo = repo or repository()
    return f"{colab_base.rstrip('/')}/github/{repo.owner_repo}/blob/{repo.branch}/{repo_path(notebook, repo)}"


def install_requirement(repo: Optional[Repository] = None) -> str:
    """The pip requirement that installs course_lib from the repository at its branch."""
    repo = repo or repository()
    return f"course_lib @ git+{repo.url}@{repo.branch}"


def colab_setup_source(repo: Optional[Repository] = None) -> str:
    """The set-up cell of every notebook students open in Colab (it does nothing anywhere else)."""
    return (
        "# Set-up for Google Colab; it does nothing anywhere else.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    # Install the course's library (it brings the trained models along), then fetch FashionMNIST.\n"
        f'    %pip install --quiet "{install_requirement(repo)}"\n'
        "    from course_lib.data import prepare_fashion_mnist\n"
        "\n"
        '    print("FashionMNIST ready in", prepare_fashion_mnist())'
    )


def source_notebook(assignment: str) -> Path:
    """Path of an assignment's nbgrader source notebook."""
    return SOURCE_DIR / assignment / f"{assignment}.ipynb"


def release_notebook(assignment: str, release_dir: Path = RELEASE_DIR) -> Path:
    """Where an assignment's student notebook is released."""
    return release_dir / assignment / f"{assignment}.ipynb"


# nbgrader's cell predicates, in one place (nbgrader.utils defines the same on its metadata).
def nbgrader_meta(cell: Mapping) -> dict:
    """A cell's nbgrader metadata ({} when it has none)."""
    return dict(cell.get("metadata", {}).get("nbgrader") or {})


def grade_id(cell: Mapping) -> Optional[str]:
    """A cell's nbgrader grade_id, or None."""
    return nbgrader_meta(cell).get("grade_id")


def is_grade(cell: Mapping) -> bool:
    """True for a graded cell (nbgrader.utils.is_grade)."""
    return bool(nbgrader_meta(cell).get("grade"))


def is_solution(cell: Mapping) -> bool:
    """True for an answer cell (nbgrader.utils.is_solution)."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_locked(cell: Mapping) -> bool:
    """True for a read-only cell (nbgrader.utils.is_locked: locked, or graded without a solution)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("locked")) or (bool(meta.get("grade")) and not meta.get("solution"))


def is_test(cell: Mapping) -> bool:
    """True for a graded test cell (graded, not an answer)."""
    return is_grade(cell) and not is_solution(cell)


HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"


def marked_lines(source: str, begin: str, end: str) -> list[str]:
    """The non-blank lines (stripped) between ``begin`` and ``end`` marker lines of a cell's source."""
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def hidden_lines(source: str) -> list[str]:
    """The non-blank lines (stripped) between BEGIN/END HIDDEN TESTS markers of a cell's source."""
    return marked_lines(source, HIDDEN_BEGIN, HIDDEN_END)
