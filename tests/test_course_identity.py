"""The course's identity is set once (grading/course.py, _config.yml) and every user of it agrees."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from course_lib.run_settings import TRAINED_DIR, run_settings
from grading import course
from grading.authoring.release import release_path

REPO = course.REPO_ROOT


@pytest.mark.parametrize("url", ["https://github.com/o/r", "https://github.com/o/r/", "https://github.com/o/r.git"])
@pytest.mark.parametrize("path_to_book, expected_path", [("", "book/x/x.ipynb"), ("docs", "docs/book/x/x.ipynb"),
                                                        ("docs/", "docs/book/x/x.ipynb")])
def test_colab_url_normalizes_repository_settings(tmp_path, url, path_to_book, expected_path):
    """A trailing slash or .git on the URL and the book's folder give one well-formed Colab address."""
    config = tmp_path / "_config.yml"
    config.write_text(f"repository:\n  url: {url}\n  branch: dev\n  path_to_book: '{path_to_book}'\n")
    repo = course.repository(config)
    assert course.colab_url("book/x/x.ipynb", repo) == (
        f"https://colab.research.google.com/github/o/r/blob/dev/{expected_path}")
    assert course.install_requirement(repo) == "course_lib @ git+https://github.com/o/r@dev"


def test_course_id_is_the_same_for_release_and_grading():
    """nbgrader_config.py (release) and the grader's workspace config use grading.course.COURSE_ID."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert config.CourseDirectory.course_id == course.COURSE_ID
    from grading.running.workspace import CONFIG_TEMPLATE

    assert "course_id = {course_id!r}" in CONFIG_TEMPLATE


def test_every_install_instruction_is_the_one_requirement():
    """The student notebooks' and the explorer's set-up cells and the README install the same thing."""
    requirement = course.install_requirement()
    assert requirement in (REPO / "README.md").read_text()
    for assignment in course.ASSIGNMENTS:
        setup = nbformat.read(str(release_path(assignment)), 4).cells[1]
        assert setup.source == course.colab_setup_source()
    explorer = nbformat.read(str(REPO / "book" / "explorer.ipynb"), 4)
    assert any(requirement in c.source for c in explorer.cells if c.cell_type == "code")


def test_exercises_match_the_source_notebooks():
    """Each exercise of grading.course has its solution cell and graded test cell in its source notebook."""
    for assignment, exercises in course.EXERCISES.items():
        nb = nbformat.read(str(course.source_notebook(assignment)), 4)
        solutions = {course.grade_id(c) for c in nb.cells if course.is_solution(c)}
        tests = {course.grade_id(c) for c in nb.cells if course.is_test(c)}
        assert {e.solution_cell for e in exercises} == solutions, assignment
        assert {e.test_cell for e in exercises} == tests, assignment
        for e in exercises:
            cell = next(c for c in nb.cells if course.grade_id(c) == e.test_cell)
            probe = f'from grading.sandbox.probe import record; record("{e.key}", {e.name})'
            assert course.hidden_lines(cell.source) == [probe]


def test_cell_predicates_agree_with_nbgrader():
    """grading.course's predicates say what nbgrader.utils says, on every cell of both source notebooks."""
    from nbgrader import utils

    for assignment in course.ASSIGNMENTS:
        for cell in nbformat.read(str(course.source_notebook(assignment)), 4).cells:
            assert course.is_grade(cell) == utils.is_grade(cell)
            assert course.is_solution(cell) == utils.is_solution(cell)
            assert course.is_locked(cell) == utils.is_locked(cell)


def test_run_settings_read_the_environment_once():
    """COURSE_QUICK implies retraining for one epoch; COURSE_CHECKPOINTS moves the checkpoints."""
    quick = run_settings(env={"COURSE_QUICK": "1", "COURSE_CHECKPOINTS": "/x"})
    assert quick.quick and quick.retrain and quick.epochs(40) == 1 and quick.checkpoint_dir == Path("/x")
    plain = run_settings(env={})
    assert not plain.retrain and plain.epochs(40) == 40 and plain.checkpoint_dir == Path("checkpoints")
    assert run_settings(retrain=True, env={}).retrain
    assert run_settings(env={"NBGRADER_EXECUTION": "autograde"}).in_nbgrader and not plain.in_nbgrader
    assert plain.draw_figures and run_settings(env={"NBGRADER_EXECUTION": "autograde"}).draw_figures
    assert not run_settings(env={"COURSE_NO_FIGURES": "1"}).draw_figures
    assert run_settings(env=quick.as_env()) == quick
    assert (TRAINED_DIR / "FashionMNIST_Adam.results.json").is_file()
    json.loads((TRAINED_DIR / "FashionMNIST_Adam.results.json").read_text())
