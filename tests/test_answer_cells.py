"""What grading runs: the release's cells with the student's answer cells, and each test cell's evidence."""

from __future__ import annotations

import copy
import os

import nbformat
import pytest

from grading.authoring.release import release_path
from grading.authoring.solutions import nbgrader_cells
from grading.course import ASSIGNMENTS, grade_id, is_solution
from grading.intake.answer_cells import NOT_RUN, answer_program, graded_notebook
from grading.running.evidence import KEPT, collect, evidence_dir


@pytest.fixture(params=ASSIGNMENTS)
def release(request) -> nbformat.NotebookNode:
    return nbformat.read(str(release_path(request.param)), as_version=4)


def _code_sources(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_only_release_cells_and_answers_run(release):
    """Added and edited code cells become markdown in place; every other code cell is the release's."""
    nb = copy.deepcopy(release)
    answers = [c for c in nb.cells if is_solution(c) and c.cell_type == "code"]
    answers[0].source = "def mine():\n    return 1"
    plain = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not grade_id(c))
    nb.cells[plain].source += "\nprint('edited')"
    nb.cells.insert(plain + 1, nbformat.v4.new_code_cell("added = ```` 4"))
    nb.cells.append(nbformat.v4.new_markdown_cell("my notes"))
    graded, notes = graded_notebook(nb, release)
    expected = [answers[0].source if grade_id(c) == grade_id(answers[0]) else c.source
                for c in release.cells if c.cell_type == "code"]
    assert _code_sources(graded) == expected
    shown = [c for c in graded.cells if c.cell_type == "markdown" and c.source.startswith(NOT_RUN)]
    assert [("print('edited')" in c.source, "added = ```` 4" in c.source) for c in shown] == [(True, False),
                                                                                             (False, True)]
    assert "`````python" in shown[1].source  # a fence longer than the source's own backticks
    ran = next(i for i, c in enumerate(graded.cells) if c.get("id") == release.cells[plain].get("id"))
    # where the student had them (after the cell before), then the release's version, which ran
    assert [graded.cells.index(c) for c in shown] == [ran - 2, ran - 1]
    assert graded.cells[-1].source == "my notes"
    assert notes == ["2 code cells you added or changed outside the answer cells were shown, not run"]
    assert len({c.id for c in graded.cells}) == len(graded.cells)


def test_a_deleted_release_cell_runs_as_released(release):
    """A release code cell the student deleted is back, in its place; an untouched release gives no note."""
    nb = copy.deepcopy(release)
    plain = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not grade_id(c))
    del nb.cells[plain]
    graded, notes = graded_notebook(nb, release)
    assert _code_sources(graded) == _code_sources(release) and notes == []


def test_evidence_keeps_the_test_cells_file_and_nothing_else(tmp_path):
    """collect keeps results/<key>.safetensors, empties results/ but for the launcher's marker and the guard's
    log, follows no link, and a cell that wrote nothing leaves no older file standing for it."""
    results = tmp_path / "results"
    results.mkdir()
    evidence_dir(tmp_path).mkdir()
    (results / "adam.safetensors").write_bytes(b"probe")
    (results / "sgd.safetensors").write_bytes(b"forged")
    (results / "sub").mkdir()
    for name in KEPT:
        (results / name).write_text("the launcher's or the guard's")
    collect(tmp_path, "adam")
    assert (evidence_dir(tmp_path) / "adam.safetensors").read_bytes() == b"probe"
    assert sorted(p.name for p in results.iterdir()) == sorted(KEPT)
    assert not (evidence_dir(tmp_path) / "sgd.safetensors").exists()
    for name in KEPT:
        (results / name).unlink()
    secret = tmp_path / "secret"
    secret.write_text("grader only")
    os.symlink(secret, results / "adam.safetensors")
    collect(tmp_path, "adam")
    assert not (evidence_dir(tmp_path) / "adam.safetensors").exists() and not list(results.iterdir())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_answer_cells_alone_run_the_answers_and_what_they_read(assignment):
    """The program of the answer cells alone: each answer cell (magics made Python) and the release statements
    that bind the names the answers read (the reference solutions read torch); no plot, no print, no hidden
    test, nothing the student added."""
    release = nbformat.read(str(release_path(assignment)), as_version=4)
    solutions = nbgrader_cells(assignment, "solution")
    nb = copy.deepcopy(release)
    answers = [c for c in nb.cells if is_solution(c) and c.cell_type == "code"]
    for cell in answers:
        cell.source = solutions[grade_id(cell)]
    answers[0].source = "%matplotlib inline\n" + answers[0].source
    nb.cells.insert(1, nbformat.v4.new_code_cell("import pandas as added"))
    graded, _ = graded_notebook(nb, release)
    program = answer_program(graded, release)
    labels = [cell["label"] for cell in program]
    assert [label for label in labels if not label.startswith("release cell")] == [grade_id(c) for c in answers]
    first = program[labels.index(grade_id(answers[0]))]["source"]
    assert first.startswith("get_ipython().run_line_magic('matplotlib', 'inline')")
    kept = "\n".join(cell["source"] for cell in program if cell["label"].startswith("release cell"))
    assert "import torch" in kept
    assert "name_unfinished_exercises" not in kept and "plot" not in kept and "print(" not in kept
    assert "pandas" not in kept and "record(" not in kept and "device = try_gpu()" not in kept  # no answer reads it


def test_the_answer_cells_alone_get_the_release_variables_they_read():
    """An answer reading a variable that a release cell assigns gets that assignment, and what it needs."""
    release = nbformat.read(str(release_path("initialization")), as_version=4)
    nb = copy.deepcopy(release)
    answer = next(c for c in nb.cells if is_solution(c) and c.cell_type == "code")
    answer.source = "def var_init(model, std=0.01):\n    return images.shape, device"
    graded, _ = graded_notebook(nb, release)
    kept = "\n".join(cell["source"] for cell in answer_program(graded, release)
                     if cell["label"].startswith("release cell"))
    assert kept.splitlines() == [
        "from course_lib.data import CLASS_NAMES, TRAIN_MEAN, TRAIN_STD, load_fashion_mnist",
        "from course_lib.device import seed_everything, try_gpu", "device = try_gpu()",
        "data = load_fashion_mnist(device=device)",
        "images, labels = (data.train_images[:1024], data.train_labels[:1024])"]


def test_cells_parse_in_threads_without_cpython_s_shared_depth_counter_failing():
    """Four threads parsing at once, with finalizers running mid-parse, never fail: two submissions graded in
    one worker parse their cells in threads (the plain ``ast.parse`` fails here with "AST constructor recursion
    depth mismatch" within a second on CPython 3.11)."""
    import sys
    import threading

    from grading.intake.python_source import parse

    source = "\n".join(f"def f{i}(a, b=[1, (2, 3)]):\n    return [x * y for x in a if (x and (y or z))]"
                       for i in range(100))

    class Cycle:
        def __del__(self):
            sum(range(50))

    failures: list[BaseException] = []

    def parse_while_collecting():
        for _ in range(15):
            cycles = [Cycle() for _ in range(50)]
            for cycle in cycles:
                cycle.self = cycle  # a garbage collection frees them, running __del__ between two parses' steps
            del cycles
            try:
                assert parse(source) is not None
            except BaseException as error:  # noqa: BLE001 - any failure is the finding
                failures.append(error)
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=parse_while_collecting) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures[0]
