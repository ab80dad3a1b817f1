"""grading.intake.metadata: the nbgrader metadata students break is repaired, in bounded time, with notes."""

from __future__ import annotations

import copy
import difflib
import json
import random
import sys
from pathlib import Path

import nbformat
import pytest

from grading.course import grade_id, is_grade, is_solution, is_test, nbgrader_meta, release_notebook, source_notebook
from grading.intake import metadata
from grading.intake.answer_cells import NOT_RUN
from grading.intake.metadata import COMPARED_CHARS, prepare_submission, similarity

sys.path.insert(0, str(Path(__file__).parent))
from grading_corpus.cases import colab_round_trip  # noqa: E402

ASSIGNMENTS = ("initialization", "optimization")


class Case:
    """Stands for a corpus case: just its notebook."""

    def __init__(self, notebook):
        self.notebook = notebook


def reference_of(source, release):
    """The release with the source's solutions (markers dropped) in its answer cells."""
    solutions = {grade_id(c): "\n".join(line for line in c.source.splitlines() if "### BEGIN SOLUTION" not in line
                                        and "### END SOLUTION" not in line)
                 for c in source.cells if is_solution(c)}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if grade_id(cell) in solutions:
            cell.source = solutions[grade_id(cell)]
    return nb


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def corpus(request):
    """(release notebook, the corpus cases these tests use), built here without running anything."""
    release = nbformat.read(str(release_notebook(request.param)), 4)
    reference = reference_of(nbformat.read(str(source_notebook(request.param)), 4), release)
    stripped = copy.deepcopy(reference)
    for cell in stripped.cells:
        cell.metadata = {}
    deleted = copy.deepcopy(reference)
    deleted.cells = [c for c in deleted.cells if not is_test(c)][:]
    cases = {"untouched_release": release, "reference": reference, "stripped_metadata": stripped,
             "colab_saved": colab_round_trip(reference), "deleted_test_cell": deleted}
    return release, {name: Case(nb) for name, nb in cases.items()}


def ids(nb) -> list:
    return [grade_id(c) for c in nb.cells if grade_id(c)]


def prepared(nb, release):
    return prepare_submission(nbformat.writes(nb), release)


def test_intact_notebooks_need_no_repair(corpus):
    """The release and the reference solution pass unchanged, without notes."""
    release, cases = corpus
    for name in ("untouched_release", "reference"):
        nb, notes, _ = prepared(cases[name].notebook, release)
        assert notes == [] and ids(nb) == ids(release)


@pytest.mark.parametrize("case", ["stripped_metadata", "colab_saved"])
def test_stripped_metadata_is_restored(corpus, case):
    """Every graded cell gets its metadata back, in order, on the corpus cases that lost it."""
    release, cases = corpus
    nb, notes, _ = prepared(cases[case].notebook, release)
    assert ids(nb) == ids(release)
    for cell in nb.cells:
        if grade_id(cell):
            assert nbgrader_meta(cell) == nbgrader_meta(next(c for c in release.cells if grade_id(c) == grade_id(cell)))
    if case == "stripped_metadata":
        assert sum("restored nbgrader metadata" in n for n in notes) == len(ids(release))


class CountingMatcher(difflib.SequenceMatcher):
    """A SequenceMatcher that records the longest texts it is asked to compare."""

    longest = 0

    def set_seqs(self, a, b):
        CountingMatcher.longest = max(CountingMatcher.longest, len(a), len(b))
        super().set_seqs(a, b)


def test_cell_comparison_is_bounded(corpus, monkeypatch):
    """A 10 MB cell (one that starts like a solution, and one of noise) costs no comparison beyond
    COMPARED_CHARS characters, and the graded cells are still found."""
    monkeypatch.setattr(metadata.difflib, "SequenceMatcher", CountingMatcher)
    CountingMatcher.longest = 0
    release, cases = corpus
    nb = copy.deepcopy(cases["stripped_metadata"].notebook)
    solution = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(("class", "def")))
    noise = random.Random(0).randbytes(10 * 2**20).translate(bytes(b"abcdefgh ()=\n"[i % 13] for i in range(256)))
    noise = noise.decode()
    nb.cells.insert(2, nbformat.v4.new_code_cell(noise))
    nb.cells.insert(2, nbformat.v4.new_code_cell(solution.source + "\n" + "# pad\n" * (10 * 2**20 // 6)))
    restored, _, _ = prepare_submission(json.dumps(nb), release)  # json: one string per source, written fast
    assert ids(restored) == ids(release)
    assert 0 < CountingMatcher.longest <= COMPARED_CHARS
    # two long, similar texts are compared on their heads and tails only
    CountingMatcher.longest = 0
    text = noise[: 2**20]
    assert similarity(text, text[:-10] + "0123456789") > 0.99
    assert CountingMatcher.longest <= COMPARED_CHARS


def test_similarity_is_zero_when_lengths_rule_it_out():
    """No comparison is made when even a perfect overlap could not reach the floor."""
    assert similarity("a" * 100, "a" * 10_000, floor=0.2) == 0.0
    assert similarity("abc", "abc") == 1.0 and similarity("", "") == 1.0


def _cell_index(nb, gid: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)


def test_duplicated_graded_cells_keep_one_graded_copy(corpus):
    """A copied test cell and a copied solution cell: one graded copy each (the test most like the
    release, the solution's last copy), the others ordinary cells, with notes."""
    release, cases = corpus
    nb = copy.deepcopy(cases["reference"].notebook)
    test_id = next(grade_id(c) for c in nb.cells if is_grade(c) and not is_solution(c))
    solution_id = next(grade_id(c) for c in nb.cells if is_solution(c))
    index = _cell_index(nb, test_id)
    edited = copy.deepcopy(nb.cells[index])
    edited.source = "assert True  # my own check"
    nb.cells.insert(index, edited)  # the edited copy first, the release's copy second
    index = _cell_index(nb, solution_id)
    second = copy.deepcopy(nb.cells[index])
    second.source = nb.cells[index].source + "\n# my second try"
    nb.cells.insert(index + 1, second)
    repaired, notes, _ = prepared(nb, release)
    assert ids(repaired) == ids(release)
    kept_test = repaired.cells[_cell_index(repaired, test_id)]
    assert kept_test.source == next(c.source for c in release.cells if grade_id(c) == test_id)
    assert repaired.cells[_cell_index(repaired, solution_id)].source.endswith("# my second try")
    assert any(f"'{test_id}' duplicated (2 copies" in n for n in notes)
    assert any(f"'{solution_id}' duplicated (2 copies" in n for n in notes)


def test_cell_from_the_other_assignment_loses_its_metadata(corpus):
    """A graded cell pasted from the other assignment loses its nbgrader metadata; its code is shown, not run."""
    release, cases = corpus
    other = next(a for a in ASSIGNMENTS if a != release_assignment(release))
    foreign = next(c for c in nbformat.read(str(release_notebook(other)), 4).cells if is_solution(c))
    nb = copy.deepcopy(cases["reference"].notebook)
    nb.cells.insert(3, copy.deepcopy(foreign))
    repaired, notes, _ = prepared(nb, release)
    assert ids(repaired) == ids(release)
    shown = repaired.cells[3]
    assert shown.cell_type == "markdown" and shown.source.startswith(NOT_RUN) and foreign.source in shown.source
    assert any(f"'{grade_id(foreign)}' comes from another assignment" in n for n in notes)


def release_assignment(release) -> str:
    gids = set(ids(release))
    return next(a for a in ASSIGNMENTS if gids <= set(ids(nbformat.read(str(release_notebook(a)), 4))))


def test_changed_metadata_is_restored_from_the_release(corpus):
    """grade: true added to a solution, a test's points raised, a test unlocked: the release's come back."""
    release, cases = corpus
    nb = copy.deepcopy(cases["reference"].notebook)
    solution = next(c for c in nb.cells if is_solution(c))
    solution.metadata.nbgrader.update(grade=True, points=100)
    test = next(c for c in nb.cells if is_grade(c) and not is_solution(c))
    test.metadata.nbgrader.update(points=1000, locked=False)
    repaired, notes, _ = prepared(nb, release)
    for cell in repaired.cells:
        if grade_id(cell):
            assert nbgrader_meta(cell) == nbgrader_meta(next(c for c in release.cells if grade_id(c) == grade_id(cell)))
    assert any(f"'{grade_id(solution)}': nbgrader metadata changed" in n and "grade" in n for n in notes)
    assert any(f"'{grade_id(test)}': nbgrader metadata changed" in n and "points" in n for n in notes)


def test_deleted_test_cell_is_reinserted(corpus):
    """A graded test cell the student deleted comes back from the release."""
    release, cases = corpus
    repaired, notes, _ = prepared(cases["deleted_test_cell"].notebook, release)
    assert ids(repaired) == ids(release)
    assert any("re-inserted from the release" in n for n in notes)


def test_old_nbformat_is_upgraded_with_unique_ids(corpus):
    """An nbformat 4.0 notebook with duplicated cell ids becomes 4.5 with unique ids."""
    release, cases = corpus
    data = json.loads(nbformat.writes(cases["reference"].notebook))
    data["nbformat_minor"] = 4
    for cell in data["cells"]:
        cell.pop("id", None)
    repaired, notes, _ = prepare_submission(json.dumps(data), release)
    assert repaired.nbformat_minor == 5 and len({c.id for c in repaired.cells}) == len(repaired.cells)
    assert notes == ["saved in an older notebook format (4.4, as Colab saves it): read as the current one (4.5), "
                     "nothing in it changed"]


def test_malformed_nbgrader_metadata_is_dropped(corpus):
    """nbgrader metadata that is not a dict, or a grade_id that is not a string, is dropped with a note."""
    release, cases = corpus
    nb = copy.deepcopy(cases["reference"].notebook)
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": "oops"}))
    nb.cells.insert(2, nbformat.v4.new_code_cell("y = 1", metadata={"nbgrader": {"grade_id": ["a"], "grade": True}}))
    repaired, notes, _ = prepared(nb, release)
    assert ids(repaired) == ids(release)
    assert sum("malformed nbgrader metadata dropped" in n for n in notes) == 2


@pytest.mark.slow
def test_a_flood_of_cells_is_cut_or_refused_in_bounded_time():
    """300,000 empty cells are dropped (with a note) and the answer kept; 6,000 cells of code are refused."""
    from grading.intake.metadata import MAX_CELLS, TooManyCells, prepare_submission

    release = nbformat.read(str(release_notebook("optimization")), as_version=4)
    data = json.loads(nbformat.writes(release))
    empty = {"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None}
    data["cells"] += [dict(empty, id=f"e{i}") for i in range(300_000)]
    nb, notes, _ = prepare_submission(json.dumps(data), release)
    assert "300000 empty cells removed" in notes and len(nb.cells) == len(release.cells)
    data["cells"] += [dict(empty, id=f"p{i}", source="pass") for i in range(MAX_CELLS + 1)]
    with pytest.raises(TooManyCells, match="not graded"):
        prepare_submission(json.dumps(data), release)
