"""Grading as a Python API: ``grade(assignment, path, settings) -> Report``; the CLI (grading.grade) wraps it.

One batch:
1. the workspace is prepared (nbgrader config, sandbox kernelspec, source, gradebook);
2. a canary grades the reference solution and the untouched release in the same environment:
   anything but full marks and zero stops the batch (a kernel importing another course_lib, a
   broken sandbox...);
3. each submission is repaired, then executed by ``nbgrader autograde`` in a process of its own,
   its kernel in the sandbox; hidden test cells only run probes that record what the student's
   code computes for inputs the grader chose;
4. after that process ended (or was stopped), the grader judges the recorded results against
   PyTorch, writes the points into nbgrader's gradebook and composes the feedback page;
5. the grade CSV and a JSON report with every property are written, whatever happened.

Nothing here changes the caller's working folder or environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import nbformat
from tqdm.auto import tqdm

from grading import judging
from grading.authoring.release import colab_cells
from grading.course import EXERCISES, Exercise
from grading.intake.collect import collect
from grading.intake.metadata import prepare_submission
from grading.reports import gradebook
from grading.reports.feedback import ExerciseFeedback, compose_feedback, find_leaks, grading_code_lines
from grading.running.autograde_one import AutograderPool
from grading.running.workspace import (
    Workspace,
    digest_files,
    generate_assignment,
    prepare,
    sandbox_settings,
    scrub_lines,
    test_cell_points,
    tool_env,
)
from grading.sandbox import launcher
from grading.settings import GradingSettings


class GradingError(RuntimeError):
    """The batch cannot be graded (bad settings, no sandbox, a failed canary)."""


@dataclass
class StudentResult:
    """One student's row of the grade table, plus the verdicts behind it."""

    student_id: str
    student_name: str = ""
    origin: str = ""
    status: str = "pending"  # graded, unreadable, FAILED
    points: dict[str, Optional[float]] = field(default_factory=dict)  # test cell -> points
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    feedback: str = ""  # page path, relative to the workspace
    verdicts: dict[str, dict] = field(default_factory=dict)  # exercise -> verdict as JSON
    key: str = ""  # what was graded: submission bytes + grading fingerprint

    def total(self) -> Optional[float]:
        """Sum of the points, or None when the student was not graded."""
        if self.status != "graded":
            return None
        return round(sum(p or 0.0 for p in self.points.values()), 3)


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


@dataclass
class _Batch:
    """What every submission of one batch shares."""

    ws: Workspace
    settings: GradingSettings
    db_url: str
    fingerprint: str
    release: nbformat.NotebookNode
    points: dict[str, float]
    scrub: list[str]
    sandbox: launcher.SandboxSettings
    timestamp: str = ""  # one per batch: on every feedback page of the batch
    autograders: AutograderPool = field(default_factory=lambda: AutograderPool(tool_env()))


def _exercises(assignment: str) -> tuple[Exercise, ...]:
    if assignment not in EXERCISES:
        raise GradingError(f"unknown assignment {assignment!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[assignment]


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


def seed_salt(ws: Workspace) -> bytes:
    """The workspace's secret key for challenge seeds: created once, readable by the grader only."""
    path = ws.root / "seed_salt.key"
    if not path.is_file():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:  # another grader created it at the same moment
            pass
    return bytes.fromhex(path.read_text().strip())


def challenge_seed(salt: bytes, assignment: str, data: bytes) -> int:
    """The seed of a submission's challenge: a keyed hash of its bytes (same bytes, same inputs; a student
    cannot predict them without the workspace's key)."""
    digest = hmac.new(salt, assignment.encode() + b"\0" + data, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def _repair(batch: _Batch, data: bytes) -> tuple[Optional[str], list[str], list[str]]:
    """Repair a submission; return (notebook text or None when unreadable, notes, flags)."""
    try:
        nb, notes, flags = prepare_submission(data.decode("utf-8", errors="replace"), batch.release)
        return nbformat.writes(nb), notes, flags
    except Exception as exc:  # not a notebook at all: nbgrader gets nothing and the row says why
        return None, [f"ERROR: unreadable notebook ({type(exc).__name__}: {str(exc)[:300]})"], []


def _write_submission(batch: _Batch, student: str, text: Optional[str]) -> None:
    """Write a repaired notebook where nbgrader expects it (None: only clear the folder)."""
    target = batch.ws.submitted_notebook(student)
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    if text is not None:
        target.write_text(text)


def _place(batch: _Batch, student: str, data: bytes) -> tuple[bool, list[str], list[str]]:
    """Repair a submission and write it where nbgrader expects it; return (ok, notes, flags)."""
    text, notes, flags = _repair(batch, data)
    _write_submission(batch, student, text)
    return text is not None, notes, flags


def _tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` bytes of a file, as text."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _execute(batch: _Batch, student: str, runtime: Path, io: Path) -> tuple[dict, list[str]]:
    """Autograde one student in one of the batch's autograde processes; stop it at the time limit."""
    ws, notes = batch.ws, []
    log_file = ws.private("logs", student, ".log")
    log_file.unlink(missing_ok=True)
    request = {"workspace": str(ws.root), "assignment": ws.assignment, "student": student, "runtime": str(runtime),
               "io": str(io), "log": str(log_file)}
    outcome = batch.autograders.mine().run(request, batch.settings.submission_timeout_s)
    if outcome is None:
        notes.append(f"ERROR: the notebook ran past {batch.settings.submission_timeout_s} s and was stopped; "
                     "exercises judged before that keep their points")
        outcome = {"executed": False, "error": ""}
    if not outcome.get("executed") and not outcome.get("error"):
        outcome["error"] = _tail(log_file)
    if not outcome.get("executed") and not notes:
        reason = (outcome.get("error") or "").strip().splitlines()
        why = f" ({reason[-1][:300]})" if reason else ""
        notes.append(f"WARNING: nbgrader could not run the whole notebook{why}; "
                     "exercises judged before that keep their points")
    return outcome, notes


def _verdict_json(v) -> dict:
    return {"fraction": v.fraction, "note": v.note,
            "properties": [dataclasses.asdict(p) for p in v.properties]}


def _grade_student(batch: _Batch, result: StudentResult, seed: int, feedback: bool = True) -> StudentResult:
    """Execute, judge, record and give feedback for one placed submission."""
    ws, student = batch.ws, result.student_id
    # short private folders (Unix socket paths must stay under 108 bytes); the kernel sees only the
    # runtime folder (its sockets) and io/results, each bound by the sandbox at another path
    scratch = "/tmp" if os.path.isdir("/tmp") else None
    runtime = Path(tempfile.mkdtemp(prefix="grade-", dir=scratch))
    io = Path(tempfile.mkdtemp(prefix="grade-io-", dir=scratch))
    io.chmod(0o711)  # the sandbox user may pass through to results/, not list or read the rest
    launcher.claim(io)  # no other batch's sweep unmounts results/ before this process has read them
    try:
        (io / "results").mkdir()
        challenge = judging.make_challenge(ws.assignment, seed)
        (io / "challenge.json").write_text(json.dumps(challenge))
        _, notes = _execute(batch, student, runtime, io)
        result.notes += notes
        judged = judging.judge(ws.assignment, challenge, io / "results")
        status = launcher.read_status(io_dir=str(io))
        result.notes += [w for w in status.get("warnings", []) if w not in result.notes]
    finally:
        launcher.cleanup(batch.sandbox, io_dir=str(io))
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(io, ignore_errors=True)
    scores = {}
    for exercise in _exercises(ws.assignment):
        verdict = judged[exercise.key]
        scores[exercise.test_cell] = round(batch.points[exercise.test_cell] * verdict.fraction, 3)
        result.verdicts[exercise.key] = _verdict_json(verdict)
    gradebook.record_scores(batch.db_url, ws.assignment, Path(ws.notebook_name()).stem, student, scores)
    result.points = scores
    result.status = "graded"
    if feedback:
        _write_feedback(batch, result, judged)
    return result


def _write_feedback(batch: _Batch, result: StudentResult, judged: dict) -> None:
    """Compose the student's page from the verdicts and their own (sanitized) cells."""
    ws, student = batch.ws, result.student_id
    executed = ws.autograded_notebook(student)
    source = executed if executed.is_file() else ws.submitted_notebook(student)
    notebook = nbformat.read(str(source), as_version=4)
    exercises = [ExerciseFeedback(e.name, result.points[e.test_cell], batch.points[e.test_cell], judged.get(e.key))
                 for e in _exercises(ws.assignment)]
    page = compose_feedback(exercises, notebook, batch.release, batch.scrub, student=result.student_name or student,
                            assignment=ws.assignment, timestamp=batch.timestamp,
                            notes=[n for n in result.notes if not n.startswith("ERROR: feedback")])
    leaks = find_leaks(page, batch.scrub)
    target = ws.feedback_page(student)
    target.parent.mkdir(parents=True, exist_ok=True)
    if leaks:  # never hand out a page that shows a hidden test or grading code
        target.unlink(missing_ok=True)
        result.notes.append("ERROR: feedback withheld: it would show hidden test text")
        return
    target.write_text(page)
    result.feedback = str(target.relative_to(ws.root))


def _safe_grade(batch: _Batch, result: StudentResult, seed: int, feedback: bool = True) -> StudentResult:
    """_grade_student that never raises: a failure is recorded in the row."""
    try:
        return _grade_student(batch, result, seed, feedback)
    except Exception as exc:  # the batch goes on; the instructor sees why in the CSV
        result.status = "FAILED"
        result.notes.append(f"ERROR: grading failed: {type(exc).__name__}: {str(exc)[:500]}")
        (batch.ws.private("logs", result.student_id, ".grader.log")).write_text(traceback.format_exc())
        return result


def _canary_key(fingerprint: str) -> str:
    """What the canary's verdict depends on: the grading fingerprint and the kernel's environment."""
    import course_lib

    env = [sys.executable, str(Path(course_lib.__file__).resolve()), *sys.path]
    return hashlib.sha256((fingerprint + digest_files([Path(course_lib.__file__).resolve().parent])
                           + json.dumps(env)).encode()).hexdigest()[:16]


def run_canary(assignment: str, settings: GradingSettings, fingerprint: str) -> None:
    """Grade the reference solution and the untouched release in a workspace of their own, with the
    batch's sandbox and settings; raise GradingError unless they score full marks and zero."""
    ws = Workspace(Path(settings.workspace) / "canary", assignment)
    marker = ws.root.parent / f"canary_{assignment}.json"
    key = _canary_key(fingerprint)
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return
    db_url = f"sqlite:///{ws.root / 'gradebook.db'}?timeout=120"
    prepare(ws, settings, db_url)
    generate_assignment(ws)
    release = _student_release(ws)
    points = test_cell_points(ws.source_notebook())
    batch = _Batch(ws, settings, db_url, fingerprint, release,
                   {e.test_cell: points[e.test_cell] for e in _exercises(assignment)},
                   scrub_lines(ws.source_notebook()), sandbox_settings(settings), batch_timestamp())
    notebooks = {"reference": _reference_notebook(release, ws.source_notebook()), "release": release}
    salt = seed_salt(ws)
    expected = {"reference": 1.0, "release": 0.0}
    gradebook.create_students(db_url, {s: s for s in notebooks})
    try:
        with ThreadPoolExecutor(max_workers=min(2, max(1, settings.jobs))) as pool:
            futures = {}
            for student, nb in notebooks.items():
                data = nbformat.writes(nb).encode()
                _, notes, _ = _place(batch, student, data)
                futures[student] = pool.submit(_safe_grade, batch, StudentResult(student, notes=notes),
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


def _student_release(ws: Workspace) -> nbformat.NotebookNode:
    """The notebook as students get it: nbgrader's release with the Colab badge and set-up cell in front."""
    release = nbformat.read(str(ws.release_notebook()), as_version=4)
    release.cells = colab_cells(ws.assignment) + release.cells
    return release


def _reference_notebook(release: nbformat.NotebookNode, source_nb: Path) -> nbformat.NotebookNode:
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


def batch_timestamp() -> str:
    """The time printed on every feedback page of a batch (one per batch, so pages do not depend on when
    each submission happened to be graded)."""
    return time.strftime("%Y-%m-%d %H:%M")


@dataclass
class Job:
    """One submission to grade: its row, its repaired notebook and its challenge seed."""

    result: StudentResult
    notebook: str
    seed: int


def grade(assignment: str, path: Path, settings: Optional[GradingSettings] = None, *,
          progress: Optional[Callable[[str], None]] = None) -> Report:
    """Grade every submission under ``path`` (a folder or an LMS zip); return the report.

    ``settings.cluster`` set: the submissions are graded on Dask workers (grading.running.cluster), which
    sandbox, canary and record into the shared gradebook themselves; this process writes the CSV,
    the state file and the feedback pages.
    """
    settings = settings or GradingSettings()
    started = time.time()
    exercises = _exercises(assignment)
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
    release = _student_release(ws)
    points = {e.test_cell: test_cell_points(ws.source_notebook())[e.test_cell] for e in exercises}
    batch = _Batch(ws, settings, db_url, fingerprint, release, points,
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
        key = sub.sha256[:32] + fingerprint
        previous = students.get(sub.student_id)
        if previous and not settings.force and previous.key == key and previous.status == "graded":
            continue
        try:
            data = sub.read()
        except (OSError, ValueError) as error:
            students[sub.student_id] = StudentResult(sub.student_id, sub.student_name, sub.origin, "unreadable",
                                                     notes=[f"ERROR: {error}"], key=key)
            continue
        text, notes, flags = _repair(batch, data)
        if not settings.cluster:
            _write_submission(batch, sub.student_id, text)
            notes += host_warnings  # on a cluster, the worker adds its own host's warnings
        result = StudentResult(sub.student_id, sub.student_name, sub.origin,
                               "pending" if text is not None else "unreadable",
                               notes=list(sub.notes) + notes, flags=flags, key=key)
        students[sub.student_id] = result
        if text is not None:
            todo.append(Job(result, text, challenge_seed(salt, assignment, data)))
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
            finished = _grade_locally(batch, todo)
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


def _grade_locally(batch: _Batch, todo: list[Job]) -> Iterator[StudentResult]:
    """Grade placed submissions on this machine, ``settings.jobs`` at once; yield each as it finishes."""
    with ThreadPoolExecutor(max_workers=max(1, batch.settings.jobs)) as pool:
        futures = [pool.submit(_safe_grade, batch, j.result, j.seed) for j in todo]
        for future in as_completed(futures):
            yield future.result()


def _export(batch: _Batch, students: dict[str, StudentResult]) -> None:
    """Write the grade CSV and the JSON report (always, whatever happened to single students)."""
    ws, cells = batch.ws, list(batch.points)
    try:
        recorded = gradebook.recorded_scores(batch.db_url, ws.assignment,
                                             [s for s, r in students.items() if r.status == "graded"])
    except Exception as exc:  # a broken gradebook must not cost the table: use what this run computed
        print(f"WARNING: gradebook unreadable ({exc}); the CSV holds this run's scores", file=sys.stderr)
        recorded = {}
    rows = []
    for student, r in sorted(students.items()):
        points = {**r.points, **recorded.get(student, {})} if r.status == "graded" else {}
        row = {"student_id": student, "student_name": r.student_name, "origin": r.origin,
               **{c: "" if points.get(c) is None else round(points[c], 3) for c in cells},
               "total": "" if r.status != "graded" else round(sum(points.get(c) or 0.0 for c in cells), 3),
               "max_total": sum(batch.points.values()), "status": r.status, "notes": " | ".join(r.notes),
               "review_flags": " | ".join(r.flags), "feedback": r.feedback}
        rows.append(row)
    gradebook.write_csv(ws.grades_csv(), rows, cells)
    report = {s: {"status": r.status, "points": r.points, "verdicts": r.verdicts, "notes": r.notes,
                  "review_flags": r.flags} for s, r in sorted(students.items())}
    ws.report_json().write_text(json.dumps(report, indent=1))
