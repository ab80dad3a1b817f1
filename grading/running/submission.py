"""One submission, from its repaired notebook to its row: the step both runners call.

``grade_job(batch, job)`` places a student's notebook; ``grade_submission(batch, result, seed)`` draws
its challenge (a keyed hash of its bytes picks the seed), has nbgrader execute it in a sandboxed kernel
of its own (through one of the batch's long-lived autograde processes), judges what the probes recorded
outside the sandbox, records the points in the gradebook and writes the feedback page. Neither raises:
a failure is recorded in the row. ``grading.running.local`` calls ``grade_job`` in threads, ``grading.running.cluster``
on Dask workers; the canary calls ``grade_submission``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import nbformat

from grading import judging
from grading.course import EXERCISES, Exercise
from grading.intake.metadata import prepare_submission
from grading.reports import gradebook, safe_notebook
from grading.reports.feedback import ExerciseFeedback, compose_feedback, find_leaks
from grading.running import evidence
from grading.running.alone import AloneRun
from grading.running.autograde_one import AutograderPool
from grading.running.workspace import Workspace, tool_env
from grading.sandbox import launcher
from grading.sandbox.tripwires import AGAIN_EVENT
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
    # where its grading time went: nbgrader (of which before_first_cell, cells, after_last_cell), judging, feedback
    seconds: dict[str, float] = field(default_factory=dict)
    # test cell -> {"grader": the grader's points, "instructor": the gradebook's} where they differ (formgrader)
    adjustments: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    checks: str = ""  # judging.checks_version() of the verdicts
    memory_mb: Optional[float] = None  # the kernel's peak memory (its cgroup's), None without a cgroup

    def total(self) -> Optional[float]:
        """Sum of the points, or None when the student was not graded."""
        if self.status != "graded":
            return None
        return round(sum(p or 0.0 for p in self.points.values()), 3)


@dataclass
class Batch:
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


@dataclass
class Attempt:
    """One notebook of a student: where it came from, its repaired text and its challenge seed."""

    origin: str
    notebook: Optional[str]  # repaired; None when it could not be read as a notebook
    seed: int
    notes: list[str] = field(default_factory=list)  # from its repair
    flags: list[str] = field(default_factory=list)


@dataclass
class Job:
    """One student to grade: the row (with the notes every attempt shares) and their notebooks, oldest first.

    Usually one notebook. Several when one key that is no LMS id (a name, a folder) has several and nothing
    says which one counts: ``grade_job`` grades each and keeps the best."""

    result: StudentResult
    attempts: list[Attempt]


def exercises_of(assignment: str) -> tuple[Exercise, ...]:
    if assignment not in EXERCISES:
        raise GradingError(f"unknown assignment {assignment!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[assignment]


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


def batch_timestamp() -> str:
    """The time printed on every feedback page of a batch (one per batch, so pages do not depend on when
    each submission happened to be graded)."""
    return time.strftime("%Y-%m-%d %H:%M")


def repair(batch: Batch, data: bytes) -> tuple[Optional[str], list[str], list[str]]:
    """Repair a submission; return (notebook text or None when unreadable, notes, flags)."""
    try:
        nb, notes, flags = prepare_submission(data.decode("utf-8", errors="replace"), batch.release)
        return nbformat.writes(nb), notes, flags
    except Exception as exc:  # not a notebook at all: nbgrader gets nothing and the row says why
        return None, [f"ERROR: unreadable notebook ({type(exc).__name__}: {str(exc)[:300]})"], []


def write_submission(batch: Batch, student: str, text: Optional[str]) -> None:
    """Write a repaired notebook where nbgrader expects it (None: only clear the folder)."""
    target = batch.ws.submitted_notebook(student)
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    if text is not None:
        target.write_text(text)


def _tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` bytes of a file, as text."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _execute(batch: Batch, student: str, runtime: Path, io: Path) -> tuple[dict, list[str]]:
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


def verdict_json(v: judging.ExerciseVerdict) -> dict:
    """A verdict as the row keeps it (JSON)."""
    return {"fraction": v.fraction, "note": v.note,
            "properties": [dataclasses.asdict(p) for p in v.properties]}


def _grade_student(batch: Batch, result: StudentResult, seed: int, feedback: bool = True) -> StudentResult:
    """Execute, judge, record and give feedback for one placed submission."""
    ws, student = batch.ws, result.student_id
    # short private folders (Unix socket paths must stay under 108 bytes); the kernel sees only the
    # runtime folder (its sockets) and io/results, each bound by the sandbox at another path
    scratch = "/tmp" if os.path.isdir("/tmp") else None
    runtime = Path(tempfile.mkdtemp(prefix="grade-", dir=scratch))
    io = Path(tempfile.mkdtemp(prefix="grade-io-", dir=scratch))
    io.chmod(0o711)  # the sandbox user may pass through to results/, not list or read the rest
    launcher.claim(io)  # no other batch's sweep unmounts results/ before this process has read them
    alone: Optional[AloneRun] = None  # the answer cells alone (grading.running.alone), beside the kernel run
    try:
        (io / "results").mkdir()
        evidence.evidence_dir(io).mkdir(mode=0o700)
        challenge = judging.make_challenge(ws.assignment, seed)
        (io / "challenge.json").write_text(json.dumps(challenge))
        started = time.perf_counter()
        alone = AloneRun.start(batch.sandbox, nbformat.read(str(ws.submitted_notebook(student)), as_version=4),
                               batch.release, exercises_of(ws.assignment), challenge, batch.settings.cell_timeout_s,
                               batch.settings.submission_timeout_s, tool_env())
        outcome, notes = _execute(batch, student, runtime, io)
        result.seconds = {"nbgrader": time.perf_counter() - started,
                          **_kernel_seconds(ws.autograded_notebook(student), outcome)}
        result.notes += notes
        alone_dir = alone.wait([e.key for e in exercises_of(ws.assignment)])
        result.seconds["waiting_for_answer_cells_alone"] = alone.waited_s
        result.notes += [n for n in alone.notes if n not in result.notes]
        started = time.perf_counter()
        evidence.collect(io, evidence.open_test_cell(io))  # the test cell a time limit stopped
        refused = evidence.refused_accesses(io)
        judged = judging.judge(ws.assignment, challenge, evidence.evidence_dir(io), refused, alone_dir, alone.refused)
        result.checks = judging.checks_version()
        evidence.keep(io, ws.kept_evidence(student), challenge, refused, alone_dir, alone.refused)
        result.seconds["judging"] = time.perf_counter() - started
        result.flags += [v.review for v in judged.values() if v.review and v.review not in result.flags]
        guards = (("the kernel's guard", refused), ("the guard of the answer cells alone", alone.refused))
        for guard, logged in guards:
            accesses = [entry for entry in logged if entry["event"] != AGAIN_EVENT]  # judged per exercise
            if accesses:
                shown = "; ".join(f"{r['event']} {', '.join(r['path'])}" for r in accesses[:3])
                result.flags.append(f"{guard} refused {len(accesses)} "
                                    f"access{'es' if len(accesses) != 1 else ''} to the grader's files outside the "
                                    f"probe ({shown}" + (f"; and {len(accesses) - 3} more)" if len(accesses) > 3
                                                         else ")"))
        status = launcher.read_status(io_dir=str(io))
        result.notes += [w for w in status.get("warnings", []) if w not in result.notes]
        memory = [m for m in (launcher.peak_memory_mb(batch.sandbox, io_dir=str(io)), alone.memory_mb) if m]
        result.memory_mb = max(memory) if memory else None
    finally:
        if alone is not None:
            alone.close()
        launcher.cleanup(batch.sandbox, io_dir=str(io))
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(io, ignore_errors=True)
    scores = {}
    for exercise in exercises_of(ws.assignment):
        verdict = judged[exercise.key]
        scores[exercise.test_cell] = round(batch.points[exercise.test_cell] * verdict.fraction, 3)
        result.verdicts[exercise.key] = verdict_json(verdict)
    gradebook.record_scores(batch.db_url, ws.assignment, Path(ws.notebook_name()).stem, student, scores)
    result.points = scores
    result.status = "graded"
    if feedback:
        started = time.perf_counter()
        write_feedback(batch, result, judged)
        result.seconds["feedback"] = time.perf_counter() - started
    result.seconds = {k: round(v, 3) for k, v in result.seconds.items()}
    return result


def _kernel_seconds(executed: Path, outcome: dict) -> dict[str, float]:
    """From the cells' execution times that nbgrader recorded: seconds from the start of the autograde run
    to the first cell (kernel start, nbgrader's set-up), in cells, and after the last cell ({} if unknown)."""
    try:
        cells = json.loads(executed.read_text()).get("cells", [])
        spans = [(datetime.fromisoformat(t["iopub.execute_input"]).timestamp(),
                  datetime.fromisoformat(t["shell.execute_reply"]).timestamp())
                 for t in (c.get("metadata", {}).get("execution") for c in cells)
                 if isinstance(t, dict) and "iopub.execute_input" in t and "shell.execute_reply" in t]
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    if not spans or "started" not in outcome or "ended" not in outcome:
        return {}
    return {"before_first_cell": spans[0][0] - outcome["started"], "cells": sum(b - a for a, b in spans),
            "after_last_cell": outcome["ended"] - spans[-1][1]}


def verdicts_of(result: StudentResult) -> dict[str, judging.ExerciseVerdict]:
    """The verdicts a row keeps as JSON, as objects again (for a page composed after grading)."""
    return {key: judging.ExerciseVerdict(key, [judging.PropertyVerdict(**p) for p in v.get("properties", [])],
                                         v.get("fraction", 0.0), v.get("note", ""))
            for key, v in result.verdicts.items()}


def write_feedback(batch: Batch, result: StudentResult, judged: dict) -> None:
    """Compose the student's page from the verdicts, the points (the instructor's where they changed them)
    and their own (sanitized) cells."""
    ws, student = batch.ws, result.student_id
    executed = ws.autograded_notebook(student)
    source = executed if executed.is_file() else ws.submitted_notebook(student)
    notebook = nbformat.read(str(source), as_version=4)
    exercises = []
    for e in exercises_of(ws.assignment):
        adjusted = result.adjustments.get(e.test_cell)
        points = adjusted["instructor"] if adjusted else result.points[e.test_cell]
        exercises.append(ExerciseFeedback(e.name, points, batch.points[e.test_cell], judged.get(e.key),
                                          grader_points=(adjusted["grader"] or 0.0) if adjusted else None))
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


def _sanitize_autograded(batch: Batch, result: StudentResult) -> None:
    """Leave the formgrader only an inert copy of the graded notebook; none when it cannot be made inert."""
    executed = batch.ws.autograded_notebook(result.student_id)
    try:
        safe_notebook.sanitize_file(executed)
    except Exception as exc:  # unreadable as a notebook: nothing the formgrader should render
        executed.unlink(missing_ok=True)
        result.notes.append(f"autograded notebook removed from the workspace: it could not be made safe to "
                            f"show ({type(exc).__name__})")


def grade_job(batch: Batch, job: Job) -> StudentResult:
    """Place and grade a student's notebook (never raises). Of several, grade each and keep the best total (the
    newest of equals); the workspace, the gradebook and the feedback page are the kept one's, and the row
    names the others with their points."""
    if len(job.attempts) == 1:
        return _grade_attempt(batch, job.result, job.attempts[0], feedback=True)
    runs = [(a, _grade_attempt(batch, job.result, a)) for a in job.attempts if a.notebook is not None]
    if not runs:
        job.result.status = "unreadable"
        return job.result
    best = max(range(len(runs)), key=lambda i: (runs[i][1].status == "graded", runs[i][1].total() or 0.0, i))
    attempt, result = runs[best]
    if best != len(runs) - 1:  # the workspace and the gradebook hold the last run's: grade the best again
        result = _grade_attempt(batch, job.result, attempt)
    spent = [r for _, r in runs] + ([result] if best != len(runs) - 1 else [])
    result.seconds = {k: round(sum(r.seconds.get(k, 0.0) for r in spent), 3)
                      for k in dict.fromkeys(k for r in spent for k in r.seconds)}
    memory = [r.memory_mb for r in spent if r.memory_mb is not None]
    result.memory_mb = max(memory) if memory else None
    others = [f"{a.origin} ({_points_of(r)})" for a, r in runs if a is not attempt]
    others += [f"{a.origin} (unreadable)" for a in job.attempts if a.notebook is None]
    result.notes.append(f"WARNING: {len(job.attempts)} notebooks handed in under one name, and no LMS id says "
                        f"which counts: graded each and kept the best, {attempt.origin} ({_points_of(result)}); "
                        f"the others: {', '.join(others)}")
    if result.status == "graded":
        started = time.perf_counter()
        try:
            write_feedback(batch, result, verdicts_of(result))
        except Exception as exc:  # the grades stand; the row says the page is missing
            result.notes.append(f"ERROR: feedback page not written ({type(exc).__name__})")
        result.seconds["feedback"] = round(time.perf_counter() - started, 3)
    return result


def _points_of(result: StudentResult) -> str:
    return f"{result.total():g} points" if result.status == "graded" else result.status


def _grade_attempt(batch: Batch, shared: StudentResult, attempt: Attempt, feedback: bool = False) -> StudentResult:
    """Place one notebook in the workspace and grade it into a row of its own."""
    result = dataclasses.replace(shared, origin=attempt.origin, notes=shared.notes + attempt.notes,
                                 flags=shared.flags + attempt.flags, points={}, verdicts={}, seconds={},
                                 adjustments={})
    write_submission(batch, result.student_id, attempt.notebook)
    return grade_submission(batch, result, attempt.seed, feedback)


def grade_submission(batch: Batch, result: StudentResult, seed: int, feedback: bool = True) -> StudentResult:
    """_grade_student that never raises: a failure is recorded in the row."""
    try:
        result = _grade_student(batch, result, seed, feedback)
        _sanitize_autograded(batch, result)
        return result
    except Exception as exc:  # the batch goes on; the instructor sees why in the CSV
        _sanitize_autograded(batch, result)
        result.status = "FAILED"
        result.notes.append(f"ERROR: grading failed: {type(exc).__name__}: {str(exc)[:500]}")
        (batch.ws.private("logs", result.student_id, ".grader.log")).write_text(traceback.format_exc())
        try:  # nbgrader may have scored the notebook's own asserts: the gradebook never keeps those
            gradebook.record_scores(batch.db_url, batch.ws.assignment, Path(batch.ws.notebook_name()).stem,
                                    result.student_id, {cell: 0.0 for cell in batch.points})
        except Exception as error:  # the row already says FAILED; say this too
            result.notes.append(f"ERROR: the gradebook may still hold nbgrader's own scores ({type(error).__name__})")
        return result
