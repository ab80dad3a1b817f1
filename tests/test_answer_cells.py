"""What grading runs: the release's cells with the student's answer cells, and each test cell's evidence."""

from __future__ import annotations

import copy
import os

import nbformat
import pytest

from grading.authoring.release import release_path
from grading.course import ASSIGNMENTS, grade_id, is_solution
from grading.intake.answer_cells import NOT_RUN, graded_notebook
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
