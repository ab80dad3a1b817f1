"""The grading pipeline: real nbgrader runs, in the sandbox, over the corpus of hostile submissions."""

from __future__ import annotations

import csv
import json
import socket
import sqlite3
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grading import grade
from grading.collect import collect
from grading.feedback import find_leaks, hidden_test_lines
from grading.metadata import prepare_submission
from grading.sandbox import bwrap_available
from grading.workspace import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parent))
from grading_corpus.cases import build_corpus  # noqa: E402

SOLUTIONS = REPO_ROOT / "solutions"
OPTIMIZATION_SUBSET = ("untouched_release", "reference", "optimizer_nan", "monkeypatch_torch",
                       "stripped_metadata")

needs_sandbox = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap missing: apt-get install bubblewrap")


def read_csv(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_collect_maps_folders_flat_names_zips_and_patterns(tmp_path):
    """Student ids come from folders, file-name prefixes, zips and a custom regex; newest file wins."""
    (tmp_path / "dir" / "alice").mkdir(parents=True)
    (tmp_path / "dir" / "alice" / "Copy of optimization.ipynb").write_text("{}")
    (tmp_path / "dir" / "bob_optimization.ipynb").write_text("{}")
    (tmp_path / "dir" / "nounderscore.ipynb").write_text("{}")
    subs, warnings = collect(tmp_path / "dir")
    assert [s.student_id for s in subs] == ["alice", "bob"]
    assert len(warnings) == 1 and "nounderscore" in warnings[0]
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo("Jane Doe_123_assignsubmission_file_/opt.ipynb", (2024, 1, 1, 0, 0, 0)), "{}")
        z.writestr(zipfile.ZipInfo("Jane Doe_123_assignsubmission_file_/v2.ipynb", (2024, 1, 2, 0, 0, 0)), "{}")
    subs, _ = collect(archive, pattern=r"^[^_]+_(?P<student_id>\d+)_")
    assert [(s.student_id, s.origin) for s in subs] == [("123", "Jane Doe_123_assignsubmission_file_/v2.ipynb")]
    assert "graded the newest" in subs[0].notes[0]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A workspace per assignment with its generated release, from a first (empty) grading run."""
    root = tmp_path_factory.mktemp("released")
    out = {}
    for assignment in ("initialization", "optimization"):
        empty = root / f"empty_{assignment}"
        empty.mkdir()
        grade.main([assignment, str(empty), "--workspace", str(root / "ws"), "--quiet"])
        out[assignment] = nbformat.read(str(root / "ws" / "release" / assignment / f"{assignment}.ipynb"), 4)
    return out


def test_stripped_metadata_is_restored_by_matching_cells(released):
    """A notebook without nbgrader metadata gets every graded cell's metadata back, with a note."""
    release = released["optimization"]
    stripped = nbformat.from_dict(json.loads(nbformat.writes(release)))
    for cell in stripped.cells:
        cell.metadata = {}
    nb, notes, _ = prepare_submission(nbformat.writes(stripped), release)
    ids = lambda n: [c.metadata.get("nbgrader", {}).get("grade_id") for c in n.cells]  # noqa: E731
    assert ids(nb) == ids(release)
    assert any("restored nbgrader metadata" in n for n in notes)


def test_feedback_leak_finder_sees_highlighted_html():
    """find_leaks catches a hidden line split by syntax-highlighting markup and HTML escaping."""
    page = '<span class="kn">from</span> grading.checks <span>import</span> check_x; check_x(A &amp; B)'
    assert find_leaks(page, ["from grading.checks import check_x; check_x(A & B)"])
    assert not find_leaks(page, ["check_y(C)"])


def grade_corpus(assignment: str, release, root: Path, jobs: int, names=None, db_url=None) -> dict:
    """Write the corpus, grade it, return (cases, csv rows, workspace)."""
    ws = root / "ws"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    secrets = {"paths": [str(REPO_ROOT / "grading" / "checks.py"), str(ws / "gradebook.db"),
                         str(SOLUTIONS / assignment / f"{assignment}.ipynb"),
                         str(ws / "submitted" / "reference" / assignment / f"{assignment}.ipynb")],
               "port": listener.getsockname()[1]}
    source = nbformat.read(str(SOLUTIONS / assignment / f"{assignment}.ipynb"), 4)
    cases = build_corpus(source, release, secrets)
    if names:
        cases = {k: v for k, v in cases.items() if k in names}
    subs = root / "subs"
    for name, case in cases.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(case.notebook, str(subs / name / f"{assignment}.ipynb"))
    args = [assignment, str(subs), "--workspace", str(ws), "--jobs", str(jobs), "--timeout", "10", "--quiet"]
    if db_url:
        args += ["--db-url", db_url]
    try:
        grade.main(args)
    finally:
        listener.close()
    return {"cases": cases, "rows": read_csv(ws / f"grades_{assignment}.csv"), "ws": ws, "subs": subs, "args": args}


@pytest.fixture(scope="module")
def init_corpus(released, tmp_path_factory):
    """The whole corpus of the initialization assignment, graded with --jobs 2."""
    return grade_corpus("initialization", released["initialization"], tmp_path_factory.mktemp("init"), 2)


@pytest.fixture(scope="module")
def opt_corpus(released, tmp_path_factory):
    """Part of the corpus of the optimization assignment, graded with --jobs 2."""
    return grade_corpus("optimization", released["optimization"], tmp_path_factory.mktemp("opt"), 2,
                        OPTIMIZATION_SUBSET)


def check_scores(corpus):
    for name, case in corpus["cases"].items():
        row = corpus["rows"][name]
        assert row["status"] == "graded", (name, row["notes"])
        got = {cell: float(row[cell]) for cell in case.expected}
        assert got == case.expected, (name, row["notes"])
        assert float(row["total"]) == sum(case.expected.values())


@needs_sandbox
def test_initialization_corpus_scores(init_corpus):
    """Every case of the corpus gets exactly its expected points per exercise."""
    check_scores(init_corpus)


@needs_sandbox
def test_optimization_corpus_scores(opt_corpus):
    """The optimization cases (release, reference, NaN Adam, monkeypatching, stripped) score as expected."""
    check_scores(opt_corpus)


@needs_sandbox
def test_autograded_notebooks_show_what_happened(init_corpus):
    """Timeouts, top-level errors, blocked reads/network and MemoryError are recorded, not fatal."""
    for name, case in init_corpus["cases"].items():
        text = (init_corpus["ws"] / "autograded" / name / "initialization" / "initialization.ipynb").read_text()
        for expected in case.output_contains:
            assert expected in text, (name, expected)
    escaped = (init_corpus["ws"] / "autograded" / "reads_outside_and_network" / "initialization"
               / "initialization.ipynb").read_text()
    assert "network blocked" in escaped and "def check_" not in escaped


@needs_sandbox
@pytest.mark.parametrize("corpus_name", ["init_corpus", "opt_corpus"])
def test_no_feedback_file_contains_a_hidden_test_line(corpus_name, request):
    """Every student has feedback, and no line of any hidden test appears in any feedback file."""
    corpus = request.getfixturevalue(corpus_name)
    assignment = corpus["args"][0]
    hidden = hidden_test_lines(SOLUTIONS / assignment / f"{assignment}.ipynb")
    assert hidden
    pages = sorted((corpus["ws"] / "feedback").rglob("*.html"))
    assert {p.parts[-3] for p in pages} == set(corpus["cases"])
    for page in pages:
        text = page.read_text()
        assert not find_leaks(text, hidden), page
        assert len(text) < 3 * 2**20, page


@needs_sandbox
def test_repairs_and_suspicious_code_are_reported(init_corpus):
    """Restored metadata, re-inserted test cells and monkeypatching show in the CSV."""
    rows = init_corpus["rows"]
    assert "restored nbgrader metadata" in rows["stripped_metadata"]["notes"]
    assert "re-inserted" in rows["deleted_test_cell"]["notes"]
    assert "nbformat 4.0 upgraded" in rows["colab_saved"]["notes"]
    assert "torch/numpy attribute" in rows["monkeypatch_torch"]["review_flags"]
    assert rows["reference"]["review_flags"] == ""


@needs_sandbox
def test_sqlite_gradebook_consistent_after_two_workers(init_corpus):
    """After --jobs 2 the gradebook is intact: one submission per student, grades equal the CSV."""
    db = init_corpus["ws"] / "gradebook.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        per_student = con.execute(
            "SELECT student.id, COUNT(*) FROM submitted_assignment JOIN student "
            "ON submitted_assignment.student_id = student.id GROUP BY student.id").fetchall()
    assert sorted(s for s, _ in per_student) == sorted(init_corpus["cases"])
    assert all(n == 1 for _, n in per_student)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        for name in init_corpus["cases"]:
            assert gb.find_submission("initialization", name).score == float(init_corpus["rows"][name]["total"])


@needs_sandbox
def test_rerun_grades_only_new_submissions(init_corpus, capsys):
    """A second run grades nothing; a changed notebook alone is regraded; --force regrades all."""
    args = init_corpus["args"]
    subs = init_corpus["subs"]
    for name in list(init_corpus["cases"]):
        if name not in ("reference", "untouched_release"):
            (subs / name / "initialization.ipynb").unlink()
            (subs / name).rmdir()
    grade.main(args)
    assert "0 to grade" in capsys.readouterr().err
    untouched = subs / "untouched_release" / "initialization.ipynb"
    reference = (subs / "reference" / "initialization.ipynb").read_bytes()
    untouched.write_bytes(reference)
    grade.main(args)
    assert "1 to grade" in capsys.readouterr().err
    rows = read_csv(init_corpus["ws"] / "grades_initialization.csv")
    assert float(rows["untouched_release"]["total"]) == float(rows["reference"]["total"]) > 0
