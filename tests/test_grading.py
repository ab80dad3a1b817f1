"""The grading pipeline: real nbgrader runs, in the sandbox, over the corpus of clumsy and hostile submissions.

One corpus run per assignment (module fixtures, ``--jobs 2`` through the Python API) serves every
assertion: points per exercise and per property, notes, review flags, feedback pages, the gradebook.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import host_listener
from grading_corpus.cases import build_corpus

from grading import api, grade, judging
from grading.authoring.release import release_path
from grading.course import ASSIGNMENTS, COURSE_ID, EXERCISES, REPO_ROOT, source_notebook
from grading.reports import lms, similarity, tables
from grading.reports.feedback import find_leaks, grading_code_lines
from grading.running.workspace import Workspace, scrub_lines
from grading.sandbox.launcher import bwrap_available
from grading.settings import GradingSettings

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap missing: apt-get install bubblewrap")]

# Per-cell and per-submission limits of the corpus runs: short, so endless cells cost little. A cell past its
# limit is interrupted, again every 12 s until it ends: 60 s leaves room for a second interrupt and the rest of
# the notebook on a loaded machine (at 40 s, an endless loop once cost the exercises after it).
CORPUS_SETTINGS = dict(jobs=2, cell_timeout_s=12, submission_timeout_s=60, quiet=True)
OPTIMIZATION_SUBSET = ("untouched_release", "reference", "displayhook_forgery", "ipython_machinery",
                       "frame_and_code_tampering", "forged_results", "full_control", "leaks_hidden_tests",
                       "warnings_on_stderr", "stripped_metadata", "duplicated_test_cell", "foreign_cell",
                       "delegates_to_torch", "monkeypatch_torch", "one_mistake", "optimizer_nan",
                       "forged_evidence_added_cells", "forged_evidence_answer_cell", "touches_evidence",
                       "honest_unusual_style", "delegates_by_a_computed_name", "delegates_through_a_closure",
                       "records_again_after_the_probe", "delegates_to_the_fused_kernel",
                       "delegates_to_the_course_library", "answer_needs_the_notebook")
# The optional assignment: the reference, the release, its common mistakes, delegations, forged results.
DEEPER_SUBSET = ("untouched_release", "reference", "one_mistake", "lsuv_ignores_biases", "warmup_off_by_one",
                 "orthogonal_without_sign_fix", "delegates_to_torch", "forged_results", "delegates_by_a_computed_name")
# Students whose names must stay apart: each folder gets a copy of the reference or the release.
NAMES = {"张三": "reference", "李四": "untouched_release", "Zoë": "reference", "Zoé": "untouched_release",
         "Ng, Anh": "reference", "Ng Anh": "untouched_release"}
# Files as LMS downloads and odd file systems name them (relative path as bytes -> the case it copies):
# namesakes told apart by their Canvas user id and Moodle participant id, a Latin-1 file name, a formula.
FORMULA_NAME = "=1+2+cmd|' -C calc'!A0"
LMS_FILES = {b"smithjohn_2001_501_initialization.ipynb": "reference",
             b"smithjohn_2002_502_initialization.ipynb": "untouched_release",
             b"John Smith_11_assignsubmission_file_/initialization.ipynb": "untouched_release",
             b"John Smith_12_assignsubmission_file_/initialization.ipynb": "reference",
             b"Zo\xeb_initialization.ipynb": "reference",
             FORMULA_NAME.encode() + b"_13_assignsubmission_file_/initialization.ipynb": "reference",
             b"flood_of_empty_cells/initialization.ipynb": "reference+empty_cells"}
EMPTY_CELLS = 300_000
# One student, three notebooks and no LMS id (oldest first): the reference, the untouched release, a broken file.
SEVERAL_FILES = {b"kept_the_best/initialization.ipynb": "reference",
                 b"kept_the_best/initialization (1).ipynb": "untouched_release",
                 b"kept_the_best/initialization (2).ipynb": "not_a_notebook"}


def read_csv(path: Path) -> dict[str, dict]:
    """The grade CSV, by student id."""
    with open(path) as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def read(assignment: str, where: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(where), as_version=4)


PLANTED = ("COURSE_DB_PASSWORD", "pw-7c1e9a-planted")  # in the grader's environment while a corpus is graded


def grade_corpus(assignment: str, root: Path, canary_dir: Path, names=None, db_url=None, people=NAMES,
                 files=None, **settings) -> dict:
    """Write the corpus to folders, grade it through grading.api, return cases, rows and paths."""
    ws = root / "ws"
    listener = host_listener()
    secrets = {"paths": [str(REPO_ROOT / "grading" / "judging" / "core.py"), str(ws / "gradebook.db"),
                         str(source_notebook(assignment)),
                         str(ws / "submitted" / "reference" / assignment / f"{assignment}.ipynb")],
               "port": listener.getsockname()[1]}
    other = next(a for a in ASSIGNMENTS if a != assignment)
    cases = build_corpus(assignment, read(assignment, source_notebook(assignment)),
                         read(assignment, release_path(assignment)), secrets, read(other, release_path(other)))
    if names:
        cases = {k: v for k, v in cases.items() if k in names}
    subs = root / "subs"
    for name, case in cases.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(case.notebook, str(subs / name / f"{assignment}.ipynb"))
    for person, like in people.items():
        (subs / person).mkdir(parents=True)
        nbformat.write(cases[like].notebook, str(subs / person / f"{assignment}.ipynb"))
    for age, (relative, like) in enumerate((files or {}).items()):  # written oldest first
        path = os.path.join(os.fsencode(subs), relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if like == "not_a_notebook":
            with open(path, "w") as f:
                f.write("this is not a notebook")
            os.utime(path, (1_700_000_000 + age,) * 2)
            continue
        data = json.loads(nbformat.writes(cases[like.removesuffix("+empty_cells")].notebook))
        if like.endswith("+empty_cells"):  # a flood of empty cells after the answer (written as JSON: fast)
            data["cells"] += [{"cell_type": "code", "id": f"e{i}", "source": "", "metadata": {}, "outputs": [],
                               "execution_count": None} for i in range(EMPTY_CELLS)]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.utime(path, (1_700_000_000 + age,) * 2)
    config = GradingSettings(workspace=ws, db_url=db_url, canary_dir=canary_dir, **{**CORPUS_SETTINGS, **settings})
    os.environ[PLANTED[0]] = PLANTED[1]  # as a database password in the instructor's shell
    try:
        report = api.grade(assignment, subs, config)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # no kernel reached the host's listener
            listener.accept()
    finally:
        listener.close()
        os.environ.pop(PLANTED[0], None)
    rows = read_csv(ws / f"grades_{assignment}.csv")
    by_name = {row["student_name"] or sid: row for sid, row in rows.items()}
    return {"assignment": assignment, "cases": cases, "rows": by_name, "ids": rows, "ws": ws, "subs": subs,
            "settings": config, "report": report}


@pytest.fixture(scope="module")
def init_corpus(tmp_path_factory, canary_dir):
    """The whole corpus of the initialization assignment, graded with --jobs 2."""
    return grade_corpus("initialization", tmp_path_factory.mktemp("init"), canary_dir,
                        files={**LMS_FILES, **SEVERAL_FILES})


@pytest.fixture(scope="module")
def opt_corpus(tmp_path_factory, canary_dir):
    """The optimizer-specific part of the optimization corpus, graded with --jobs 2."""
    return grade_corpus("optimization", tmp_path_factory.mktemp("opt"), canary_dir, OPTIMIZATION_SUBSET)


@pytest.fixture(scope="module")
def deeper_corpus(tmp_path_factory, canary_dir):
    """A small corpus of the optional assignment (no name variants), graded with --jobs 2."""
    return grade_corpus("deeper", tmp_path_factory.mktemp("deeper"), canary_dir, DEEPER_SUBSET, people={})


CORPORA = ["init_corpus", "opt_corpus", "deeper_corpus"]


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_every_case_scores_its_expected_points(corpus_name, request):
    """Each case gets exactly its expected points per exercise, and a complete CSV row."""
    corpus = request.getfixturevalue(corpus_name)
    wrong = {}
    for name, case in corpus["cases"].items():
        row = corpus["rows"][name]
        got = {cell: float(row[cell]) if row[cell] != "" else None for cell in case.expected}
        if case.stopped_partway:  # the exercises tested before the stop keep their points, the rest score 0
            kept = [got[cell] == points for cell, points in case.expected.items()]
            ok = row["status"] == "graded" and not all(kept) and kept == sorted(kept, reverse=True) \
                and all(got[cell] == 0.0 for cell, k in zip(case.expected, kept) if not k)
            if not ok:
                wrong[name] = (row["status"], got, "a prefix of", case.expected, row["notes"][:400])
        elif row["status"] != "graded" or got != case.expected:
            wrong[name] = (row["status"], got, case.expected, row["notes"][:400])
    assert not wrong, json.dumps(wrong, indent=1, ensure_ascii=False)


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_properties_of_partial_credit_cases(corpus_name, request):
    """A submission with one mistake passes every property but the ones that mistake breaks."""
    corpus = request.getfixturevalue(corpus_name)
    report = json.loads((corpus["ws"] / f"report_{corpus['assignment']}.json").read_text())
    checked = 0
    for name, case in corpus["cases"].items():
        for exercise, expected in case.properties.items():
            verdict = report[corpus["rows"][name]["student_id"]]["verdicts"][exercise]
            got = {p["name"]: p["passed"] for p in verdict["properties"]}
            assert got == expected, (name, exercise)
            checked += 1
    assert checked, "the corpus has no partial-credit case"


# Cases whose answer cells are plain code (no attack on the pipeline): the self-check must judge them as the
# grader did. Delegating cases are left out on purpose: outside the grader torch's optimizers compute.
HONEST_CASES = ("untouched_release", "reference", "honest_unusual_style")


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_self_check_agrees_with_the_graded_corpus(corpus_name, request):
    """The answer cells of every honest case (one mistake, the reference, an unusual style, the untouched
    release), judged by the notebooks' self-check on its own fresh inputs, pass and fail the same properties
    as the real grading run did on the grader's."""
    from course_lib.self_check import fresh_verdict
    from grading.authoring.solutions import solution_namespace

    corpus = request.getfixturevalue(corpus_name)
    assignment = corpus["assignment"]
    report = json.loads((corpus["ws"] / f"report_{assignment}.json").read_text())
    compared = 0
    for name, case in corpus["cases"].items():
        if not (case.properties or name in HONEST_CASES):
            continue
        answers = [c.source for c in case.notebook.cells
                   if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
        namespace = solution_namespace(assignment, answers)
        verdicts = report[corpus["rows"][name]["student_id"]]["verdicts"]
        for exercise in EXERCISES[assignment]:
            graded = {p["name"]: p["passed"] for p in verdicts[exercise.key]["properties"]}
            checked, _, seed = fresh_verdict(namespace[exercise.name], exercise.name)
            assert {p.name: p.passed for p in checked.properties} == graded, (name, exercise.key, seed)
            compared += 1
    assert compared >= 3 * len(EXERCISES[assignment]), compared


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_notes_and_review_flags(corpus_name, request):
    """Repairs and failures are in the notes; flags name what the student changed, and only that."""
    corpus = request.getfixturevalue(corpus_name)
    for name, case in corpus["cases"].items():
        row = corpus["rows"][name]
        for text in case.notes_contain:
            assert text in row["notes"], (name, text, row["notes"])
        for text in case.flags_contain:
            assert text in row["review_flags"], (name, text, row["review_flags"])
        if case.flags_empty:
            assert row["review_flags"] == "", (name, row["review_flags"])


def test_autograded_notebooks_show_what_happened(init_corpus):
    """Timeouts, top-level errors, blocked reads/network and MemoryError are recorded, not fatal."""
    for name, case in init_corpus["cases"].items():
        sid = init_corpus["rows"][name]["student_id"]
        path = init_corpus["ws"] / "autograded" / sid / "initialization" / "initialization.ipynb"
        if case.output_contains:  # in the outputs (a cell's source is shown too, and must not count)
            text = json.dumps([c.get("outputs", []) for c in json.loads(path.read_text())["cells"]])
            for expected in case.output_contains:
                assert expected in text, (name, expected)
    escaped = json.dumps([c.get("outputs", []) for c in json.loads(
        (init_corpus["ws"] / "autograded" / "reads_outside_and_network" / "initialization"
         / "initialization.ipynb").read_text())["cells"]])
    assert "network blocked" in escaped and "def judge" not in escaped


def test_no_file_of_the_workspace_shows_the_graders_environment(init_corpus):
    """A variable planted in the grader's environment is in no autograded notebook, feedback page, CSV, LMS file,
    report or gradebook, though one submission printed every process environment it could read."""
    sid = init_corpus["rows"]["reads_process_environments"]["student_id"]
    path = init_corpus["ws"] / "autograded" / sid / "initialization" / "initialization.ipynb"
    shown = json.dumps([c.get("outputs", []) for c in json.loads(path.read_text())["cells"]])
    assert "environ of 1 " in shown and "MPLBACKEND=Agg" in shown  # the kernel read its own environment
    files = [p for p in init_corpus["ws"].rglob("*") if p.is_file()]
    assert len(files) > 100
    assert [p for p in files if PLANTED[1].encode() in p.read_bytes()] == []


@pytest.mark.parametrize("corpus_name", CORPORA)
def test_no_feedback_file_shows_a_hidden_test_or_grading_code(corpus_name, request):
    """Every graded student has a feedback page; none holds a hidden-test line or a line of grading code."""
    corpus = request.getfixturevalue(corpus_name)
    assignment = corpus["assignment"]
    hidden = scrub_lines(source_notebook(assignment))
    code = grading_code_lines()
    assert hidden and len(code) > 100
    pages = sorted((corpus["ws"] / "feedback").rglob("*.html"))
    students = {row["student_id"] for row in corpus["ids"].values() if row["status"] == "graded"}
    assert {p.parts[-3] for p in pages} == students
    machine = [str(REPO_ROOT), sys.prefix, sys.base_prefix]
    shown_sources = 0
    for page in pages:
        text = page.read_text()
        assert not find_leaks(text, hidden + code), page
        assert len(text) < 10 * 2**20, page
        assert "<script" not in text.lower(), page
        # where the course lies on the grading machine: never in an output (tracebacks show site-packages/...,
        # course_lib/...), only where the student's own source wrote it
        outputs = re.sub(r'<pre class="source">.*?</pre>', "", text, flags=re.DOTALL)
        assert not [folder for folder in machine if folder in outputs], page
        shown_sources += text.count('<pre class="source">')
    assert shown_sources


def test_feedback_lists_properties_with_actionable_messages(opt_corpus):
    """The one-mistake student's page names the failed property and says what to check, not test code."""
    sid = opt_corpus["rows"]["one_mistake"]["student_id"]
    page = html.unescape((opt_corpus["ws"] / "feedback" / sid / "optimization" / "optimization.html").read_text())
    report = json.loads((opt_corpus["ws"] / "report_optimization.json").read_text())[sid]
    failed = [p for v in report["verdicts"].values() for p in v["properties"] if not p["passed"]]
    assert failed
    for prop in failed:
        assert prop["name"] in page and prop["message"].split(";")[0][:40] in page


def test_a_page_says_when_the_answer_cells_alone_earned_less(opt_corpus):
    """Where the answer cells alone earn less, the page shows that run's verdict: its note says which run it
    is and names the error once, not again under each failed property."""
    sid = opt_corpus["rows"]["answer_needs_the_notebook"]["student_id"]
    page = html.unescape((opt_corpus["ws"] / "feedback" / sid / "optimization" / "optimization.html").read_text())
    error = "TypeError: 'function' object is not subscriptable"
    assert page.count(judging.ALONE_NOTE + "your code raised " + error) == 1
    assert page.count(error) == 1


def test_students_with_similar_names_stay_apart(init_corpus):
    """Non-ASCII, accented and comma names give distinct ids; the CSV keeps each original name."""
    rows = init_corpus["rows"]
    ids = [rows[name]["student_id"] for name in NAMES]
    assert len(set(ids)) == len(NAMES)
    full = sum(init_corpus["cases"]["reference"].expected.values())
    for name, like in NAMES.items():
        assert rows[name]["student_name"] == name
        assert float(rows[name]["total"]) == (full if like == "reference" else 0.0), name


def test_namesakes_odd_file_names_and_formulas_from_lms_downloads(init_corpus, tmp_path):
    """Namesakes in Canvas and Moodle downloads are graded apart and reach the right LMS rows; a Latin-1
    file name is graded; a formula as a name is inert in the grade CSV, both LMS files and the similarity CSV;
    a reference with 300,000 empty cells after it is graded like the reference."""
    full = sum(init_corpus["cases"]["reference"].expected.values())
    by_origin = {row["origin"]: row for row in init_corpus["ids"].values()}
    for relative, like in LMS_FILES.items():  # the CSV keeps the origin inert too ('=... for =...)
        row = by_origin[tables.safe_cell(relative.decode("utf-8", "backslashreplace"))]
        assert row["status"] == "graded" and float(row["total"]) == (0 if like == "untouched_release" else full), row
    assert f"{EMPTY_CELLS} empty cells removed" in by_origin["flood_of_empty_cells/initialization.ipynb"]["notes"]
    assert "not valid UTF-8" in by_origin["Zo\\xeb_initialization.ipynb"]["notes"]
    grades = init_corpus["ws"] / "grades_initialization.csv"
    canvas, moodle = tmp_path / "canvas.csv", tmp_path / "moodle.csv"
    lms.export("canvas", grades, canvas)
    lms.export("moodle", grades, moodle, moodle_format="worksheet")
    _, canvas_rows = tables.read_dicts(canvas)
    assert {(r["Student"], r["ID"], float(r["initialization"])) for r in canvas_rows[1:]} == {
        ("smithjohn", "2001", full), ("smithjohn", "2002", 0.0)}
    _, moodle_rows = tables.read_dicts(moodle)
    assert {(r["Identifier"], r["Full name"], float(r["Grade"])) for r in moodle_rows} == {
        ("Participant 11", "John Smith", 0.0), ("Participant 12", "John Smith", full),
        ("Participant 13", "'" + FORMULA_NAME, full)}
    pairs_csv, _, _ = similarity.similarity_report("initialization", init_corpus["ws"])
    for path in (grades, canvas, moodle, pairs_csv):
        with open(path, newline="", encoding="utf-8") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert not [c for c in cells if c.startswith(tables.FORMULA_STARTS) and not tables.NUMBER.fullmatch(c)]
    assert "'" + FORMULA_NAME in grades.read_text(encoding="utf-8")


def test_several_notebooks_under_one_name_are_each_graded_and_the_best_kept(init_corpus):
    """A folder with the reference, then the release, then a broken file: each is tried, the older reference is
    kept (graded again, so the workspace, the gradebook and the page are its), the row names the others."""
    from grading.reports import gradebook

    full = sum(init_corpus["cases"]["reference"].expected.values())
    [row] = [r for r in init_corpus["ids"].values() if r["origin"].startswith("kept_the_best/")]
    assert row["origin"] == "kept_the_best/initialization.ipynb" and row["status"] == "graded"
    assert float(row["total"]) == full
    assert ("WARNING: 3 notebooks handed in under one name, and no LMS id says which counts: graded each and kept "
            f"the best, kept_the_best/initialization.ipynb ({full:g} points); the others: kept_the_best/"
            "initialization (1).ipynb (0 points), kept_the_best/initialization (2).ipynb (unreadable)") in row["notes"]
    assert "set by the instructor" not in row["notes"]
    sid, ws = row["student_id"], Workspace(init_corpus["settings"].workspace, "initialization")
    recorded = gradebook.recorded_grades(init_corpus["settings"].gradebook_url(), "initialization", [sid])[sid]
    assert sum(score for _, score in recorded.values()) == full
    kept = read("initialization", ws.submitted_notebook(sid))
    reference = init_corpus["cases"]["reference"].notebook
    assert [c.source for c in kept.cells] == [c.source for c in reference.cells]
    page = (ws.root / row["feedback"]).read_text()
    assert "kept the best" in page and f"<th>Total</th><th>{full:g} / {full:g}</th>" in page
    report = json.loads(ws.report_json().read_text())[sid]
    assert set(report["seconds"]) >= {"nbgrader", "judging", "feedback"} and report["seconds"]["nbgrader"] > 0


def test_a_score_changed_in_the_formgrader_reaches_every_export(init_corpus, tmp_path):
    """Manual scores set in the gradebook (as the formgrader sets them) for a Canvas and a Moodle student, then
    `python -m grading.export` on a copy of the workspace: the CSV, the report, the class report (its table of
    points set by hand), the student's page and the Canvas and Moodle files show the instructor's points; the
    page says they were set by hand; other students are unchanged."""
    from nbgrader.api import Gradebook

    ws = tmp_path / "ws"
    shutil.copytree(init_corpus["ws"], ws, symlinks=True)
    by_origin = {row["origin"]: row for row in init_corpus["ids"].values()}
    sid = by_origin["smithjohn_2001_501_initialization.ipynb"]["student_id"]
    moodle_sid = by_origin["John Smith_12_assignsubmission_file_/initialization.ipynb"]["student_id"]
    full = sum(init_corpus["cases"]["reference"].expected.values())
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}", COURSE_ID) as gb:
        for student, score in ((sid, 0.0), (moodle_sid, 1.0)):
            grade = gb.find_grade("xavier_init_tests", "initialization", "initialization", student)
            grade.manual_score = score
        gb.db.commit()
    canvas, moodle = tmp_path / "canvas.csv", tmp_path / "moodle.csv"
    run = subprocess.run([sys.executable, "-m", "grading.export", str(ws), "initialization", "--canvas", str(canvas),
                          "--moodle", str(moodle)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert run.returncode in (0, 1), run.stderr  # 1: rows without an LMS id are left out, and listed
    assert f"points set by the instructor for 2: {', '.join(sorted([sid, moodle_sid]))}" in run.stderr
    rows = read_csv(ws / "grades_initialization.csv")
    assert float(rows[sid]["xavier_init_tests"]) == 0.0 and float(rows[sid]["total"]) == full - 3.0
    assert "xavier_init_tests set by the instructor: 3.0 -> 0.0" in rows[sid]["notes"]
    before = read_csv(init_corpus["ws"] / "grades_initialization.csv")
    assert {k: r["total"] for k, r in rows.items() if k not in (sid, moodle_sid)} == {
        k: r["total"] for k, r in before.items() if k not in (sid, moodle_sid)}
    report = json.loads((ws / "report_initialization.json").read_text())[sid]
    assert report["points"]["xavier_init_tests"] == 0.0 and report["grader_points"]["xavier_init_tests"] == 3.0
    page = (ws / rows[sid]["feedback"]).read_text()
    assert "set by your instructor" in page and "Your instructor set these points to 0 by hand" in page
    summary = json.loads((ws / "class_initialization.json").read_text())
    assert summary["totals"] == sorted(float(r["total"]) for r in rows.values() if r["status"] == "graded")
    xavier = next(e.name for e in EXERCISES["initialization"] if e.test_cell == "xavier_init_tests")
    assert summary["set_by_hand"] == [
        {"student_id": s, "exercise": xavier, "grader": 3.0, "instructor": score}
        for s, score in sorted([(sid, 0.0), (moodle_sid, 1.0)])]
    class_page = (ws / "class_initialization.html").read_text()
    assert "Points set by hand" in class_page and html.escape(moodle_sid) in class_page
    _, canvas_rows = tables.read_dicts(canvas)
    assert ("2001", full - 3.0) in {(r["ID"], float(r["initialization"])) for r in canvas_rows[1:]}
    _, moodle_rows = tables.read_dicts(moodle)
    assert ("Participant 12", full - 2.0) in {(r["Identifier"], float(r["Grade"])) for r in moodle_rows}


def test_a_changed_weight_is_previewed_then_applied_without_running_a_notebook(opt_corpus, tmp_path, monkeypatch):
    """With the same checks a regrade moves nothing. After a property's weight changes, the preview names exactly
    the student whose points move (the one with a bias-correction mistake) and writes nothing but its table;
    --apply puts the new points in the gradebook, the CSV and that student's page; no notebook runs."""
    from nbgrader.api import Gradebook

    from course_lib.checks import optimizers
    from grading.judging import property_weights

    ws = tmp_path / "ws"
    shutil.copytree(opt_corpus["ws"], ws, symlinks=True)
    settings = GradingSettings(workspace=ws)
    assert api.regrade("optimization", settings) == []
    spec = optimizers.SPECS["adam"]
    heavier = tuple(dataclasses.replace(p, weight=0.6) if p.name.startswith("bias correction") else p
                    for p in spec.properties)
    monkeypatch.setitem(optimizers.SPECS, "adam", dataclasses.replace(spec, properties=heavier))
    grades, executed = ws / "grades_optimization.csv", sorted((ws / "autograded").rglob("*.ipynb"))
    before = {p: p.read_bytes() for p in [grades, *executed]}
    one = opt_corpus["rows"]["one_mistake"]["student_id"]
    moved = [c for c in api.regrade("optimization", settings) if c.points_before != c.points_after]
    assert [(c.student_id, c.exercise) for c in moved] == [(one, "adam")] and moved[0].properties == []
    assert {p: p.read_bytes() for p in before} == before and one in (ws / "regrade_optimization.csv").read_text()
    report = json.loads((ws / "report_optimization.json").read_text())[one]
    challenge = json.loads((ws / "evidence" / "optimization" / one / "challenge.json").read_text())
    weights = property_weights("optimization", "adam", challenge)
    passed = sum(weights[p["name"]] for p in report["verdicts"]["adam"]["properties"] if p["passed"])
    expected = round(opt_corpus["cases"]["reference"].expected["adam_tests"] * passed / sum(weights.values()), 3)
    assert moved[0].points_after == expected != moved[0].points_before
    api.regrade("optimization", settings, apply=True)
    assert float(read_csv(grades)[one]["adam_tests"]) == expected
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}", COURSE_ID) as gb:
        assert gb.find_grade("adam_tests", "optimization", "optimization", one).score == pytest.approx(expected)
    page = (ws / read_csv(grades)[one]["feedback"]).read_text()
    assert f"{round(expected, 2):g} / " in page
    assert {p: p.read_bytes() for p in executed} == {p: before[p] for p in executed}
    assert api.regrade("optimization", settings) == []
    # the command line, with the checks as shipped: that student's points would move back, nothing is written
    applied = grades.read_bytes()
    run = subprocess.run([sys.executable, "-m", "grading.grade", "optimization", "unread", "--preview",
                          "--workspace", str(ws)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert run.returncode == 1 and f"{one} adam: {expected} -> {moved[0].points_before}" in run.stderr, run.stderr
    assert "1 student: points would move" in run.stderr and grades.read_bytes() == applied
    # a score set by hand (as the formgrader sets it) is listed by the regrade and stays when it is applied
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}", COURSE_ID) as gb:
        gb.find_grade("adam_tests", "optimization", "optimization", one).manual_score = 1.0
        gb.db.commit()
    run = subprocess.run([sys.executable, "-m", "grading.grade", "optimization", "unread", "--apply",
                          "--workspace", str(ws)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert f"{one} adam: {expected} -> {moved[0].points_before}; set by hand to 1.0, which stays" in run.stderr
    assert "0 students: points moved" in run.stderr and run.returncode == 0, run.stderr
    assert float(read_csv(grades)[one]["adam_tests"]) == 1.0
    with Gradebook(f"sqlite:///{ws / 'gradebook.db'}", COURSE_ID) as gb:
        assert gb.find_grade("adam_tests", "optimization", "optimization", one).score == pytest.approx(1.0)


def test_workspace_notebooks_are_inert_and_nbgrader_feedback_is_refused(init_corpus):
    """The formgrader's notebooks keep no active output type; `nbgrader generate_feedback --force`, run as an
    instructor would in the workspace, is refused with a message naming grading.grade and changes no page."""
    ws = init_corpus["ws"]
    graded = list((ws / "autograded").glob("*/initialization/initialization.ipynb"))
    assert len(graded) >= len(init_corpus["cases"])
    for path in graded:
        nb = nbformat.read(str(path), as_version=4)
        assert "widgets" not in nb.metadata and all(c.cell_type != "raw" for c in nb.cells), path
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                assert set(output.get("data", {})) <= {"text/plain", "text/html", "image/png", "image/jpeg"}, path
                assert "<script" not in str(output.get("data", {}).get("text/html", "")).lower(), path
    pages = {p: p.read_bytes() for p in (ws / "feedback").rglob("*.html")}
    assert pages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", "initialization", "--force"],
                         cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "python -m grading.grade writes the students' pages" in run.stdout + run.stderr
    assert {p: p.read_bytes() for p in (ws / "feedback").rglob("*.html")} == pages
    assert not [p for p in ws.rglob("*.html") if "BEGIN HIDDEN TESTS" in p.read_text(errors="replace")]


def test_class_report_counts_what_the_csv_and_report_hold(init_corpus, tmp_path):
    """The class report written by the batch: status counts and totals as in the CSV, the one-mistake case
    under its diagnosis, hostile cases under their flags, reference copies close to the reference once the
    similarity report exists; a page with no script, alt text on its figure, no sideways scroll at 390 px, nothing
    serious or critical for axe-core."""
    from collections import Counter

    from grading.reports.class_report import write_class_report
    from tests.site_helpers import SiteServer, axe_violations, chromium

    ws, ids = init_corpus["ws"], init_corpus["ids"]
    summary = json.loads((ws / "class_initialization.json").read_text())
    assert summary["status"] == dict(Counter(r["status"] for r in ids.values()))
    assert len(summary["totals"]) == sum(r["status"] == "graded" for r in ids.values())
    one = init_corpus["rows"]["one_mistake"]["student_id"]
    assert any(one in m["students"] for e in summary["exercises"].values() for m in e["mistakes"])
    forger = init_corpus["rows"]["displayhook_forgery"]["student_id"]
    assert any(forger in who and "IPython" in kind for kind, who in summary["flags"].items())
    similarity.similarity_report("initialization", ws)
    report = write_class_report(ws, "initialization")
    close = dict(json.loads(report.json.read_text())["similarity"]["close_to_reference"])
    assert init_corpus["rows"]["reference"]["student_id"] in close
    page = report.html.read_text()
    assert "<script" not in page and "default-src 'none'" in page
    assert not find_leaks(page, scrub_lines(Workspace(ws, "initialization").source_notebook()))  # no hidden test
    memory = json.loads(report.json.read_text())["memory_mb"]  # every kernel ran in its own cgroup
    assert 50 < memory["median"] <= memory["max"] and "Peak memory of a student" in page
    # one line per diagnosis and set of students: an exercise not started reads once, not once per property
    assert 0 < page.count("not implemented yet: fill in `var_init` above") <= 1
    assert "your code raised NotImplementedError" not in page
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
    assert alts and all(len(a) > 40 and "Histograms of the points" in a for a in alts)
    with open(report.csv, newline="", encoding="utf-8") as f:
        assert not [c for row in csv.reader(f) for c in row
                    if c.startswith(tables.FORMULA_STARTS) and not tables.NUMBER.fullmatch(c)]
    with SiteServer(ws) as server:
        driver = chromium(tmp_path / "profile")
        try:
            driver.set_window_size(390, 900)
            driver.get(f"{server.url}/{report.html.name}")
            assert driver.execute_script("return document.scrollingElement.scrollWidth <= window.innerWidth")
            assert driver.execute_script("return document.images[0].naturalWidth") > 500  # the figure decoded
            assert axe_violations(driver) == []  # the site's accessibility check: nothing serious or critical
        finally:
            driver.quit()


def test_sqlite_gradebook_matches_the_csv_after_two_workers(init_corpus):
    """After --jobs 2 the gradebook is intact: one submission per student, its score equals the CSV."""
    db = init_corpus["ws"] / "gradebook.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        per_student = dict(con.execute(
            "SELECT student.id, COUNT(*) FROM submitted_assignment JOIN student "
            "ON submitted_assignment.student_id = student.id GROUP BY student.id").fetchall())
    graded = {sid for sid, row in init_corpus["ids"].items() if row["status"] == "graded"}
    assert set(per_student) == graded and set(per_student.values()) == {1}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        for sid in graded:
            assert gb.find_submission("initialization", sid).score == pytest.approx(
                float(init_corpus["ids"][sid]["total"]), abs=1e-3)


def test_rerun_grades_only_new_submissions(init_corpus):
    """A second run grades nothing; a changed notebook alone is regraded."""
    subs, settings = init_corpus["subs"], init_corpus["settings"]
    report = api.grade("initialization", subs, settings)
    assert report.graded_now == []
    untouched = subs / "untouched_release" / "initialization.ipynb"
    untouched.write_bytes((subs / "reference" / "initialization.ipynb").read_bytes())
    report = api.grade("initialization", subs, settings)
    assert report.graded_now == ["untouched_release"]
    rows = read_csv(init_corpus["ws"] / "grades_initialization.csv")
    assert float(rows["untouched_release"]["total"]) == float(rows["reference"]["total"]) > 0


def test_canary_verdict_is_kept_for_batches_that_share_its_folder(init_corpus, tmp_path):
    """A batch in another workspace with the same canary folder and settings reuses the canary's verdict."""
    settings = init_corpus["settings"]
    marker = Path(settings.canary_dir) / "verdict_initialization.json"
    written = marker.stat().st_mtime_ns
    (tmp_path / "none").mkdir()
    api.grade("initialization", tmp_path / "none", dataclasses.replace(settings, workspace=tmp_path / "ws"))
    assert marker.stat().st_mtime_ns == written
    api.grade("initialization", tmp_path / "none", dataclasses.replace(settings, workspace=tmp_path / "ws",
                                                                      canary_dir=tmp_path / "canary"))
    assert (tmp_path / "canary" / "verdict_initialization.json").is_file()


def test_canary_stops_a_batch_whose_reference_solution_fails(tmp_path):
    """Solutions out of step with the grader (here: a reference Adam without bias correction) make the canary
    fail: the batch stops before any student is graded, with the likely causes named."""
    import shutil

    solutions = tmp_path / "solutions"
    shutil.copytree(source_notebook("optimization").parent, solutions / "optimization")
    notebook = solutions / "optimization" / "optimization.ipynb"
    nb = read("optimization", notebook)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "adam":
            cell.source = cell.source.replace("m_hat = m / (1 - self.beta1**t)", "m_hat = m")
    nbformat.write(nb, str(notebook))
    subs = tmp_path / "subs" / "alice"
    subs.mkdir(parents=True)
    nbformat.write(read("optimization", release_path("optimization")), str(subs / "optimization.ipynb"))
    settings = GradingSettings(workspace=tmp_path / "ws", solutions=solutions, quiet=True)
    with pytest.raises(api.GradingError, match=r"(?s)Canary failed.*reference notebook scored [0-9.]+/10\.0"):
        api.grade("optimization", subs.parent, settings)
    assert not (tmp_path / "ws" / "grades_optimization.csv").exists()


def test_cli_wraps_the_api(tmp_path, capsys):
    """`python -m grading.grade` maps its options onto GradingSettings and reports through exit codes."""
    assignment, path, settings = grade.parse_args(["optimization", str(tmp_path), "--jobs", "3",
                                                   "--timeout", "7", "--allow-no-cgroup", "--no-canary"])
    assert (assignment, path, settings.jobs, settings.cell_timeout_s) == ("optimization", tmp_path, 3, 7)
    assert settings.cgroups == "warn" and not settings.canary
    assert GradingSettings().memory_mb == grade.parse_args(["optimization", "x"])[2].memory_mb
    with pytest.raises(SystemExit):
        grade.parse_args(["no-such-assignment", str(tmp_path)])
