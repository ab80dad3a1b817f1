"""Grading on Dask workers: ``python -m grading.grade ASSIGNMENT PATH --cluster tcp://HOST:8786`` (or ``local``).

The client (grading.api.grade) prepares its workspace and the gradebook, repairs each submission and
sends one task per submission: the repaired notebook, the student's id and name, the challenge seed
(a keyed hash of the submission's bytes; the key never leaves the client's workspace), and once per
batch a spec with the settings, fingerprint, release notebook, points, hidden lines, the timestamp and
the client's course identity. A worker may be another machine: it shares no file with the client.

On its first task of a batch, a worker checks that its course is the client's (git commit, digests of
grading/, course_lib/ and the assignment's solutions, the python/torch/nbgrader versions) and refuses
with CourseMismatch naming what differs; then it checks its sandbox, prepares a workspace of its own
and runs the canary once. Each task executes, judges and records the scores into the shared gradebook
(PostgreSQL) and returns the row, the feedback page and the executed notebook; the client writes
those, the state file and the CSV. A worker that dies mid-task takes its nbgrader run with it
(grading.sandbox.lifeline); the scheduler runs the task again on another worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, Optional

import nbformat

from grading.course import GRADING_DIR, REPO_ROOT, SOURCE_DIR
from grading.running.canary import run_canary
from grading.running.submission import Attempt, Batch, GradingError, Job, StudentResult, grade_job
from grading.running.workspace import Workspace, digest_files, prepare, sandbox_settings
from grading.sandbox import launcher
from grading.settings import settings_from_json, settings_to_json

WORKER_DIR_ENV = "GRADING_WORKER_DIR"  # where a worker keeps its workspaces (default: Dask's local directory)


class CourseMismatch(RuntimeError):
    """A worker's course (code, solutions, versions) is not the client's: it refuses to grade."""


def check_gradebook(cluster: str, db_url: str) -> None:
    """Refuse a gradebook the workers cannot share: SQLite is a file on the client, except with ``local``."""
    if db_url.startswith("sqlite") and cluster != "local":
        raise GradingError(
            f"--cluster {cluster} needs a gradebook every worker can reach: pass --db-url "
            "postgresql+psycopg2://USER@HOST/DB (an SQLite file is only allowed with --cluster local)")


def _git_commit(root: Path) -> str:
    """The checkout's commit, or '' when it is not a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def course_identity(solutions: Path, assignment: str) -> dict[str, str]:
    """What makes this checkout's course, read now from disk (the kernels import course_lib afresh):
    commit, digests of grading/, course_lib/ and the assignment's solutions; python/torch/nbgrader versions."""
    import nbgrader
    import torch

    import course_lib

    return {"git commit": _git_commit(REPO_ROOT), "grading/": digest_files([GRADING_DIR]),
            "course_lib/": digest_files([Path(course_lib.__file__).resolve().parent]),
            f"solutions/{assignment}": digest_files([Path(solutions).resolve() / assignment]),
            "python": sys.version.split()[0], "torch": torch.__version__, "nbgrader": nbgrader.__version__}


def _short(value: str) -> str:
    return (value[:12] + "…") if len(value) > 16 else (value or "none")


def identity_differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """One line per item that differs ('grading/: worker abc…, client def…')."""
    return [f"{key}: worker {_short(mine.get(key, ''))}, client {_short(value)}"
            for key, value in theirs.items() if mine.get(key) != value]


def batch_spec(batch: Batch) -> dict:
    """What every task of the batch shares (JSON-able): settings, fingerprint, release, identity."""
    settings = batch.settings
    spec = {"assignment": batch.ws.assignment, "settings": settings_to_json(settings), "db_url": batch.db_url,
            "fingerprint": batch.fingerprint, "release": nbformat.writes(batch.release), "points": batch.points,
            "scrub": batch.scrub, "timestamp": batch.timestamp,
            "identity": course_identity(settings.solutions, batch.ws.assignment)}
    # a worker checks and prepares once per key: a changed course or gradebook is checked again
    spec["key"] = hashlib.sha256(json.dumps({k: spec[k] for k in ("assignment", "db_url", "fingerprint", "settings",
                                                                  "identity")}, sort_keys=True).encode()
                                 ).hexdigest()[:16]
    return spec


def _worker_root() -> Path:
    """This worker's folder for workspaces: $GRADING_WORKER_DIR/NAME (kept across restarts, so its canary
    is too), else its Dask local directory (one per worker process)."""
    from distributed import get_worker

    worker = get_worker()
    if os.environ.get(WORKER_DIR_ENV):
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(worker.name))
        return Path(os.environ[WORKER_DIR_ENV]) / name
    return Path(worker.local_directory) / "grading"


_SETUPS: dict[str, tuple[Batch, list[str]]] = {}
_SETUP_LOCK = threading.Lock()


def _where() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except ValueError:
        return f"process {os.getpid()}"


def worker_batch(spec: dict) -> tuple[Batch, list[str]]:
    """This worker's batch for ``spec`` (checked, prepared and canaried once per process); its host warnings."""
    with _SETUP_LOCK:
        if spec["key"] in _SETUPS:
            return _SETUPS[spec["key"]]
        assignment = spec["assignment"]
        differ = identity_differences(course_identity(SOURCE_DIR, assignment), spec["identity"])
        if differ:
            raise CourseMismatch(
                f"{_where()} refuses to grade: its course differs from the client's in "
                + "; ".join(differ) + f". Check out the client's commit in {REPO_ROOT} on this worker "
                "(and the same venv) and restart it.")
        root = _worker_root()
        settings = settings_from_json(spec["settings"], workspace=root / f"batch-{spec['key']}",
                                      solutions=SOURCE_DIR, db_url=spec["db_url"], jobs=1, quiet=True, cluster=None,
                                      canary_dir=root / "canary")  # the client's folder is not this machine's
        try:
            warnings = launcher.preflight(sandbox_settings(settings))
        except launcher.SandboxUnavailable as error:
            raise GradingError(f"{_where()} cannot sandbox student code: {error}") from error
        launcher.sweep(sandbox_settings(settings))
        ws = Workspace(settings.workspace, assignment)
        fingerprint = prepare(ws, settings, spec["db_url"])
        if fingerprint != spec["fingerprint"]:
            raise CourseMismatch(f"{_where()} refuses to grade: its grading fingerprint {fingerprint} is not the "
                                 f"client's {spec['fingerprint']} (settings or sources differ)")
        if settings.canary:  # one canary per worker root, kept across batches with the same fingerprint
            run_canary(assignment, settings, fingerprint)
        batch = Batch(ws, settings, spec["db_url"], fingerprint, nbformat.reads(spec["release"], as_version=4),
                           dict(spec["points"]), list(spec["scrub"]), sandbox_settings(settings), spec["timestamp"])
        _SETUPS[spec["key"]] = (batch, warnings)
        return batch, warnings


def grade_task(spec: dict, job: dict) -> dict:
    """On a worker: grade one submission; return its row, feedback page and executed notebook (JSON-able)."""
    batch, warnings = worker_batch(spec)
    result = StudentResult(**job["result"])
    result.notes += [w for w in warnings if w not in result.notes]
    result = grade_job(batch, Job(result, [Attempt(**a) for a in job["attempts"]]))
    page = (batch.ws.root / result.feedback).read_text() if result.feedback else None
    executed = batch.ws.autograded_notebook(result.student_id)
    limit = batch.settings.max_notebook_mb * 2**20
    autograded = executed.read_text() if executed.is_file() and executed.stat().st_size <= limit else None
    return {"result": dataclasses.asdict(result), "page": page, "autograded": autograded, "worker": _where()}


def _store(batch: Batch, returned: dict) -> StudentResult:
    """On the client: write a task's feedback page and executed notebook; return its row."""
    result = StudentResult(**returned["result"])
    ws, student = batch.ws, result.student_id
    page = ws.feedback_page(student)
    if returned["page"] is not None and result.feedback:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(returned["page"])
        result.feedback = str(page.relative_to(ws.root))
    elif result.status == "graded":  # withheld (it would show hidden test text), as grading.api does
        page.unlink(missing_ok=True)
    executed = ws.autograded_notebook(student)
    if returned["autograded"] is not None:
        executed.parent.mkdir(parents=True, exist_ok=True)
        executed.write_text(returned["autograded"])
    return result


def connect(address: str, workers: int, worker_dir: Path):
    """A Dask client: on the scheduler at ``address``, or on a new LocalCluster of ``workers`` processes
    that keep their workspaces under ``worker_dir``."""
    from distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, env={WORKER_DIR_ENV: str(worker_dir)},
                               silence_logs=logging.CRITICAL)  # task errors reach the client; no log spam
        return Client(cluster), cluster
    return Client(address, timeout="60s"), None


def grade_on_cluster(batch: Batch, todo: list[Job]) -> Iterator[StudentResult]:
    """Grade the jobs on the Dask cluster of ``batch.settings.cluster``; yield each row as it comes back.

    A task whose worker died is run again by the scheduler (up to distributed.scheduler.allowed-failures);
    a task that killed too many workers gives a FAILED row. A worker whose course differs, or whose
    canary fails, stops the batch with GradingError (the rows finished so far are kept).
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    if not todo:
        return
    try:
        client, cluster = connect(batch.settings.cluster, batch.settings.jobs, batch.ws.root / "workers")
    except (OSError, TimeoutError) as error:
        raise GradingError(f"cannot reach the Dask scheduler at {batch.settings.cluster}: {error}") from error
    try:
        spec = batch_spec(batch)
        [shared] = client.scatter([spec], broadcast=True, hash=False)
        futures = {client.submit(grade_task, shared, {"result": dataclasses.asdict(j.result),
                                                      "attempts": [dataclasses.asdict(a) for a in j.attempts]},
                                 key=f"grade-{spec['key']}-{j.result.student_id}-{j.attempts[-1].seed:x}", pure=False,
                                 retries=0): j for j in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                returned = future.result()
            except KilledWorker as error:
                job.result.status = "FAILED"
                job.result.notes.append(f"ERROR: grading failed: the workers grading it died ({error})")
                yield job.result
                continue
            except (CourseMismatch, GradingError) as error:
                client.cancel(list(futures))
                raise GradingError(str(error)) from error
            except FutureCancelledError as error:
                raise GradingError(f"the cluster cancelled the grading of {job.result.student_id}") from error
            yield _store(batch, returned)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def identity_json(solutions: Optional[Path] = None, assignment: str = "optimization") -> str:
    """This checkout's course identity as JSON (``python -m grading.running.cluster``: compare two machines)."""
    return json.dumps(course_identity(Path(solutions or SOURCE_DIR), assignment), indent=1)


if __name__ == "__main__":
    print(identity_json(assignment=sys.argv[1] if len(sys.argv) > 1 else "optimization"))
