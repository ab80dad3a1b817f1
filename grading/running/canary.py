"""The canary: before a batch, the reference solution and the untouched release are graded with the
batch's own sandbox and settings; anything but full marks and zero stops the batch (a kernel importing
another course_lib, a sandbox that cannot start, solutions/ out of step with grading/). Its verdict
is kept beside the workspace, keyed by everything it depends on, so it runs once per change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from grading.reports import gradebook
from grading.running.submission import (
    Batch,
    GradingError,
    StudentResult,
    batch_timestamp,
    challenge_seed,
    exercises_of,
    grade_submission,
    repair,
    seed_salt,
    write_submission,
)
from grading.running.workspace import (
    Workspace,
    digest_files,
    generate_assignment,
    prepare,
    sandbox_settings,
    scrub_lines,
    student_release,
    test_cell_points,
)
from grading.settings import GradingSettings


def place(batch: Batch, student: str, data: bytes) -> tuple[bool, list[str], list[str]]:
    """Repair a submission and write it where nbgrader expects it; return (ok, notes, flags)."""
    text, notes, flags = repair(batch, data)
    write_submission(batch, student, text)
    return text is not None, notes, flags


def reference_notebook(release: nbformat.NotebookNode, source_nb: Path) -> nbformat.NotebookNode:
    """The release with the source's solution cells put in (markers removed): what a perfect student hands in."""
    from grading.course import grade_id, is_solution

    source = nbformat.read(str(source_nb), as_version=4)
    solutions = {grade_id(c): "\n".join(line for line in c.source.splitlines()
                                        if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
                 for c in source.cells if is_solution(c)}
    nb = nbformat.from_dict(json.loads(nbformat.writes(release)))
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) in solutions:
            cell.source = solutions[grade_id(cell)]
    return nb


def _canary_key(fingerprint: str) -> str:
    """What the canary's verdict depends on: the grading fingerprint and the kernel's environment."""
    import course_lib

    env = [sys.executable, str(Path(course_lib.__file__).resolve()), *sys.path]
    return hashlib.sha256((fingerprint + digest_files([Path(course_lib.__file__).resolve().parent])
                           + json.dumps(env)).encode()).hexdigest()[:16]


def run_canary(assignment: str, settings: GradingSettings, fingerprint: str) -> None:
    """Grade the reference solution and the untouched release in a workspace of their own, with the
    batch's sandbox and settings; raise GradingError unless they score full marks and zero.

    Its verdict is kept in ``settings.canary_dir`` (default WORKSPACE/canary), keyed by all it depends on:
    a batch that finds a passing verdict with the same key does not run it again."""
    root = Path(settings.canary_dir) if settings.canary_dir else Path(settings.workspace) / "canary"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"lock_{assignment}", "w") as lock:  # batches sharing the folder: one runs, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run_canary_locked(assignment, settings, fingerprint, root)


def _run_canary_locked(assignment: str, settings: GradingSettings, fingerprint: str, root: Path) -> None:
    ws = Workspace(root, assignment)
    marker = root / f"verdict_{assignment}.json"
    key = _canary_key(fingerprint)
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return
    db_url = f"sqlite:///{ws.root / 'gradebook.db'}?timeout=120"
    prepare(ws, settings, db_url)
    generate_assignment(ws)
    release = student_release(ws)
    points = test_cell_points(ws.source_notebook())
    batch = Batch(ws, settings, db_url, fingerprint, release,
                  {e.test_cell: points[e.test_cell] for e in exercises_of(assignment)},
                  scrub_lines(ws.source_notebook()), sandbox_settings(settings), batch_timestamp())
    notebooks = {"reference": reference_notebook(release, ws.source_notebook()), "release": release}
    salt = seed_salt(ws)
    expected = {"reference": 1.0, "release": 0.0}
    gradebook.create_students(db_url, {s: s for s in notebooks})
    try:
        with ThreadPoolExecutor(max_workers=min(2, max(1, settings.jobs))) as pool:
            futures = {}
            for student, nb in notebooks.items():
                data = nbformat.writes(nb).encode()
                _, notes, _ = place(batch, student, data)
                futures[student] = pool.submit(grade_submission, batch, StudentResult(student, notes=notes),
                                               challenge_seed(salt, assignment, data), False)
            results = {s: f.result() for s, f in futures.items()}
    finally:
        batch.autograders.close()
    problems = []
    best = sum(batch.points.values())
    for student, result in results.items():
        total, want = result.total() or 0.0, expected[student] * best
        if result.status != "graded" or abs(total - want) > 1e-6:
            wrong = [f"{ex} ({v['note'] or 'no note'}): "
                     + "; ".join(p["message"] for p in v["properties"] if p["passed"] != (want > 0))[:300]
                     for ex, v in result.verdicts.items() if (v["fraction"] < 1) == (want > 0)]
            problems.append(f"the {student} notebook scored {total}/{best} (expected {want}), status "
                            f"{result.status}; notes: {' | '.join(result.notes)[:600]}; {' | '.join(wrong)[:900]}")
    if problems:
        raise GradingError(
            "Canary failed: grading the reference solution and the untouched release did not give full marks "
            "and zero, so no grade of this batch could be trusted. Likely causes: the kernel imports a different "
            "course_lib than the grader (a venv built from another checkout, or a stale non-editable install: "
            "reinstall with `pip install .` from this checkout), a sandbox that cannot start, or solutions/ out of "
            f"step with grading/. Logs: {ws.root / 'logs'}. Details:\n  " + "\n  ".join(problems))
    marker.write_text(json.dumps({"key": key, "at": time.strftime("%Y-%m-%d %H:%M:%S")}))
