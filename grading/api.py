"""Grading as a Python API: ``grade(assignment, path, settings) -> Report``; the CLI (grading.grade) wraps it.

One batch, stage by stage (the subpackages of grading):
1. running.workspace prepares the workspace (nbgrader config, sandbox kernelspec, source, gradebook);
2. running.canary grades the reference solution and the untouched release in the same environment:
   anything but full marks and zero stops the batch (a kernel importing another course_lib, a
   broken sandbox...);
3. intake collects the submissions and repairs each; running.submission has it executed by
   ``nbgrader autograde`` in one of the batch's long-lived autograde processes, its kernel in the
   sandbox (a kernel of its own per submission), where hidden test cells only run probes that record
   what the student's code computes for inputs the grader chose;
4. once the kernel is gone, judging compares the recorded results with PyTorch; the points go into
   nbgrader's gradebook and reports composes the feedback page;
5. the grade CSV and a JSON report with every property are written, whatever happened.

Submissions run on this machine (running.local) or on Dask workers (running.cluster). Nothing here
changes the caller's working folder or environment.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Optional

from tqdm.auto import tqdm

from grading import judging
from grading.intake.collect import Submission, collect
from grading.reports import gradebook, tables
from grading.reports.class_report import write_class_report
from grading.reports.feedback import grading_code_lines
from grading.running import evidence
from grading.running.canary import run_canary
from grading.running.local import grade_locally
from grading.running.submission import (
    Attempt,
    Batch,
    GradingError,
    Job,
    StudentResult,
    batch_timestamp,
    challenge_seed,
    exercises_of,
    repair,
    seed_salt,
    verdict_json,
    verdicts_of,
    write_feedback,
    write_submission,
)
from grading.running.workspace import (
    Workspace,
    generate_assignment,
    prepare,
    sandbox_settings,
    scrub_lines,
    student_release,
    test_cell_points,
)
from grading.sandbox import launcher
from grading.settings import GradingSettings

__all__ = ["Change", "GradingError", "Report", "StudentResult", "export", "grade", "regrade"]


@dataclass
class Report:
    """What a batch produced."""

    assignment: str
    students: dict[str, StudentResult]
    max_points: dict[str, float]
    csv_path: Path
    report_path: Path
    graded_now: list[str]
    seconds: float

    def attention(self) -> list[StudentResult]:
        """Students whose row needs a human look (not graded, or an error in the notes)."""
        return [s for s in self.students.values()
                if s.status != "graded" or any(n.startswith(("ERROR", "WARNING")) for n in s.notes)]


def _load_state(ws: Workspace) -> dict[str, StudentResult]:
    """What previous runs graded."""
    try:
        data = json.loads(ws.state_file().read_text())
        return {k: StudentResult(**v) for k, v in data.get("students", {}).items()}
    except (OSError, ValueError, TypeError):
        return {}


def _save_state(ws: Workspace, students: dict[str, StudentResult]) -> None:
    tmp = ws.state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps({"students": {k: dataclasses.asdict(v) for k, v in students.items()}}, indent=1))
    tmp.replace(ws.state_file())


def grade(assignment: str, path: Path, settings: Optional[GradingSettings] = None, *,
          progress: Optional[Callable[[str], None]] = None) -> Report:
    """Grade every submission under ``path`` (a folder or an LMS zip); return the report.

    ``settings.cluster`` set: the submissions are graded on Dask workers (grading.running.cluster), which
    sandbox, canary and record into the shared gradebook themselves; this process writes the CSV,
    the state file and the feedback pages.
    """
    settings = settings or GradingSettings()
    started = time.time()
    exercises = exercises_of(assignment)
    db_url = settings.gradebook_url()
    host_warnings: list[str] = []
    if settings.cluster:
        from grading.running.cluster import check_gradebook

        check_gradebook(settings.cluster, db_url)
    else:
        try:
            host_warnings = launcher.preflight(sandbox_settings(settings))
        except launcher.SandboxUnavailable as error:
            raise GradingError(f"cannot sandbox student code: {error}") from error
        for warning in host_warnings:
            print(warning, file=sys.stderr)
        launcher.sweep(sandbox_settings(settings))
    ws = Workspace(settings.workspace, assignment)
    fingerprint = prepare(ws, settings, db_url)
    students = _load_state(ws)
    stamp = ws.root / f"generated_{assignment}.txt"
    if not ws.release_notebook().is_file() or not stamp.is_file() or stamp.read_text() != fingerprint:
        generate_assignment(ws)
        stamp.write_text(fingerprint)
    release = student_release(ws)
    points = {e.test_cell: test_cell_points(ws.source_notebook())[e.test_cell] for e in exercises}
    batch = Batch(ws, settings, db_url, fingerprint, release, points,
                   scrub_lines(ws.source_notebook()) + grading_code_lines(), sandbox_settings(settings),
                   batch_timestamp())
    if settings.canary and not settings.cluster:  # on a cluster, each worker runs it before its first submission
        run_canary(assignment, settings, fingerprint)
    salt = seed_salt(ws)

    submissions, warnings = collect(Path(path), settings.pattern, max_notebook_bytes=settings.max_notebook_mb * 2**20)
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    todo: list[Job] = []
    for sub in submissions:
        handed_in = [*sub.alternates, sub]  # several: one name, no LMS id; each is graded, the best kept
        key = "".join(s.sha256[:32] for s in handed_in) + fingerprint
        previous = students.get(sub.student_id)
        if previous and not settings.force and previous.key == key and previous.status == "graded":
            continue
        attempts = [_attempt(batch, salt, s) for s in handed_in]
        shared = list(sub.notes) + ([] if settings.cluster else host_warnings)  # a worker adds its own host's
        readable = any(a.notebook is not None for a in attempts)
        why = [] if readable else [n if len(attempts) == 1 else n.replace(": ", f": {a.origin}: ", 1)
                                   for a in attempts for n in a.notes]
        if not readable and not settings.cluster:
            write_submission(batch, sub.student_id, None)  # no earlier notebook of theirs stays in the workspace
        result = StudentResult(sub.student_id, sub.student_name, sub.origin, "pending" if readable else "unreadable",
                               notes=shared + why, key=key)
        students[sub.student_id] = result
        if readable:
            todo.append(Job(result, attempts))
    gradebook.create_students(db_url, {j.result.student_id: j.result.student_name for j in todo})
    say = progress or (lambda text: print(text, file=sys.stderr))
    where = f"cluster {settings.cluster}" if settings.cluster else f"{settings.jobs} job(s)"
    say(f"{assignment}: {len(submissions)} submissions, {len(todo)} to grade "
        f"({len(submissions) - len(todo)} unchanged), {where}")
    try:
        if settings.cluster:
            from grading.running.cluster import grade_on_cluster

            finished = grade_on_cluster(batch, todo)
        else:
            finished = grade_locally(batch, todo)
        for done in tqdm(finished, total=len(todo), unit="submission", desc=assignment,
                         disable=settings.quiet, file=sys.stderr):
            students[done.student_id] = done
            _save_state(ws, students)
    finally:
        batch.autograders.close()
        _save_state(ws, students)
        _export(batch, students)
    return Report(assignment, students, points, ws.grades_csv(), ws.report_json(),
                  [j.result.student_id for j in todo], time.time() - started)


def _attempt(batch: Batch, salt: bytes, sub: Submission) -> Attempt:
    """A handed-in notebook read and repaired, with its challenge seed (its notebook None when unreadable)."""
    try:
        data = sub.read()
    except (OSError, ValueError) as error:
        return Attempt(sub.origin, None, 0, [f"ERROR: {error}"])
    text, notes, flags = repair(batch, data)
    return Attempt(sub.origin, text, challenge_seed(salt, batch.ws.assignment, data), notes, flags)


def _adjustments(grades: dict[str, tuple[Optional[float], float]]) -> dict[str, dict[str, Optional[float]]]:
    """Test cell -> the grader's and the instructor's points, where the gradebook's score is not the grader's."""
    return {cell: {"grader": auto, "instructor": round(score, 3)} for cell, (auto, score) in grades.items()
            if abs(score - (auto or 0.0)) > 1e-9}


def _export(batch: Batch, students: dict[str, StudentResult], rewrite: Collection[str] = ()) -> None:
    """Write the grade CSV, the JSON report and the class report from the gradebook (always, whatever happened
    to single students), and the feedback page of every student whose points the instructor changed since it
    was written, and of the students in ``rewrite``."""
    ws, cells = batch.ws, list(batch.points)
    graded = [s for s, r in students.items() if r.status == "graded"]
    try:
        recorded = gradebook.recorded_grades(batch.db_url, ws.assignment, graded)
    except Exception as exc:  # a broken gradebook must not cost the table: use what this run computed
        print(f"WARNING: gradebook unreadable ({exc}); the CSV holds this run's scores", file=sys.stderr)
        recorded = None
    for student in graded:
        r = students[student]
        adjustments = _adjustments(recorded.get(student, {})) if recorded is not None else r.adjustments
        if adjustments != r.adjustments or (student in rewrite and r.verdicts):
            r.adjustments = adjustments
            try:
                write_feedback(batch, r, verdicts_of(r))
            except Exception as exc:  # the grades stand; the page is stale and the row says so
                r.notes.append(f"ERROR: feedback page not rewritten ({type(exc).__name__})")
    rows = []
    for student, r in sorted(students.items()):
        points = {**r.points, **{c: a["instructor"] for c, a in r.adjustments.items()}} if r.status == "graded" else {}
        by_hand = [f"{c} set by the instructor: {a['grader']} -> {a['instructor']}" for c, a in r.adjustments.items()]
        row = {"student_id": student, "student_name": r.student_name, "origin": r.origin,
               **{c: "" if points.get(c) is None else round(points[c], 3) for c in cells},
               "total": "" if r.status != "graded" else round(sum(points.get(c) or 0.0 for c in cells), 3),
               "max_total": sum(batch.points.values()), "status": r.status, "notes": " | ".join(r.notes + by_hand),
               "review_flags": " | ".join(r.flags), "feedback": r.feedback}
        rows.append(row)
    gradebook.write_csv(ws.grades_csv(), rows, cells)
    report = {s: {"status": r.status, "points": {**r.points, **{c: a["instructor"] for c, a in r.adjustments.items()}},
                  "grader_points": r.points, "adjustments": r.adjustments, "verdicts": r.verdicts,
                  "notes": r.notes, "review_flags": r.flags, "seconds": r.seconds, "memory_mb": r.memory_mb}
              for s, r in sorted(students.items())}
    ws.report_json().write_text(json.dumps(report, indent=1))
    try:
        if students:  # an empty batch (a workspace being set up) has no class to show
            write_class_report(ws.root, ws.assignment)
    except Exception as exc:  # the grades are written: a report that fails says so and costs nothing else
        print(f"WARNING: no class report ({type(exc).__name__}: {exc})", file=sys.stderr)


def export(assignment: str, settings: Optional[GradingSettings] = None) -> Report:
    """Rewrite every export of a graded workspace from its gradebook, grading nothing: the grade CSV, the JSON
    report, the class report and every feedback page (a score changed in nbgrader's formgrader shows as
    set by the instructor). The LMS files are written from the CSV (``grading.reports.lms``)."""
    settings = settings or GradingSettings()
    started = time.time()
    ws = Workspace(settings.workspace, assignment)
    if not ws.state_file().is_file() or not ws.source_notebook().is_file():
        raise GradingError(f"{ws.root} holds no graded {assignment} (run python -m grading.grade first)")
    students = _load_state(ws)
    points = {e.test_cell: test_cell_points(ws.source_notebook())[e.test_cell] for e in exercises_of(assignment)}
    batch = Batch(ws, settings, settings.gradebook_url(), "", student_release(ws), points,
                  scrub_lines(ws.source_notebook()) + grading_code_lines(), sandbox_settings(settings),
                  batch_timestamp())
    _export(batch, students, rewrite=set(students))
    _save_state(ws, students)
    return Report(assignment, students, points, ws.grades_csv(), ws.report_json(), [], time.time() - started)


@dataclass
class Change:
    """One exercise whose points or verdicts move when its stored evidence is judged again."""

    student_id: str
    exercise: str
    points_before: Optional[float]
    points_after: float
    properties: list[str]  # the properties whose verdict flips, as "name: passed -> failed"
    checks_before: str
    checks_after: str
    instructor: Optional[float] = None  # the score set by hand in the formgrader, which stays (it wins over both)


def regrade(assignment: str, settings: Optional[GradingSettings] = None, apply: bool = False) -> list[Change]:
    """Judge every graded student's stored evidence again with the current checks, running no notebook; write
    ``regrade_ASSIGNMENT.csv`` (whose points move, by how much, which properties flip) and return the changes.
    With ``apply``, the new verdicts replace the old ones in the gradebook, the state, every export and the
    pages of the students whose points moved; without, nothing but the preview CSV is written. A score the
    instructor set by hand stays (nbgrader counts the manual score over the auto score the regrade writes);
    the change lists it as ``instructor``."""
    settings = settings or GradingSettings()
    ws = Workspace(settings.workspace, assignment)
    if not ws.state_file().is_file() or not ws.source_notebook().is_file():
        raise GradingError(f"{ws.root} holds no graded {assignment} (run python -m grading.grade first)")
    students = _load_state(ws)
    exercises = exercises_of(assignment)
    points = {e.test_cell: test_cell_points(ws.source_notebook())[e.test_cell] for e in exercises}
    version = judging.checks_version()
    changes: list[Change] = []
    moved: set[str] = set()
    recorded = gradebook.recorded_grades(settings.gradebook_url(), assignment,
                                         [s for s, r in students.items() if r.status == "graded"])
    for sid, r in sorted(students.items()):
        folder = ws.kept_evidence(sid)
        if r.status != "graded" or not (folder / "challenge.json").is_file():
            continue
        r.adjustments = _adjustments(recorded.get(sid, {}))  # scores set in the formgrader since the last export
        challenge = json.loads((folder / "challenge.json").read_text())
        refused = json.loads((folder / "refused.json").read_text()) if (folder / "refused.json").is_file() else []
        alone = folder / evidence.ALONE  # the answer cells alone (absent in evidence kept before they ran)
        alone_refused = json.loads((alone / "refused.json").read_text()) if alone.is_dir() else []
        judged = judging.judge(assignment, challenge, folder, refused, alone if alone.is_dir() else None,
                               alone_refused)
        for e in exercises:
            after = round(points[e.test_cell] * judged[e.key].fraction, 3)
            before = r.points.get(e.test_cell)
            old = {p["name"]: p["passed"] for p in r.verdicts.get(e.key, {}).get("properties", [])}
            new = {p.name: p.passed for p in judged[e.key].properties}
            flips = [f"{name}: {_passed(old.get(name))} -> {_passed(new.get(name))}"
                     for name in dict.fromkeys([*old, *new]) if old.get(name) != new.get(name)]
            if before is None or abs(after - before) > 1e-9 or flips:
                by_hand = r.adjustments.get(e.test_cell, {}).get("instructor")
                changes.append(Change(sid, e.key, before, after, flips, r.checks, version, by_hand))
        if apply:
            r.verdicts = {key: verdict_json(v) for key, v in judged.items()}
            if any(c.student_id == sid for c in changes):
                moved.add(sid)
                r.points = {e.test_cell: round(points[e.test_cell] * judged[e.key].fraction, 3) for e in exercises}
                gradebook.record_scores(settings.gradebook_url(), assignment, Path(ws.notebook_name()).stem, sid,
                                        r.points)
            r.checks = version
    tables.write_dicts(ws.root / f"regrade_{assignment}.csv", [f.name for f in dataclasses.fields(Change)],
                       [{**dataclasses.asdict(c), "properties": " | ".join(c.properties)} for c in changes])
    if apply:
        batch = Batch(ws, settings, settings.gradebook_url(), "", student_release(ws), points,
                      scrub_lines(ws.source_notebook()) + grading_code_lines(), sandbox_settings(settings),
                      batch_timestamp())
        _export(batch, students, rewrite=moved)
        _save_state(ws, students)
    return changes


def _passed(value: Optional[bool]) -> str:
    return "absent" if value is None else ("passed" if value else "failed")
