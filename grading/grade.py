"""Grade a folder or LMS zip of submitted notebooks with nbgrader; export grades and safe feedback.

    python -m grading.grade ASSIGNMENT PATH [--jobs N] [--force] [--db-url URL] [--timeout S]

See grading/README.md for what happens, the file-name rules and what the sandbox isolates.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import nbformat
from tqdm import tqdm

from grading.collect import Submission, collect
from grading.metadata import prepare_submission
from grading.sandbox import bwrap_available
from grading.workspace import REPO_ROOT, GradingSettings, Workspace, nbgrader_api, prepare, release_notebooks


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m grading.grade", description=__doc__.split("\n")[0])
    p.add_argument("assignment", help="assignment name: a folder of solutions/ (initialization, optimization)")
    p.add_argument("path", type=Path, help="folder of submitted notebooks, or an LMS zip")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--force", action="store_true", help="regrade every submission, not only new ones")
    p.add_argument("--db-url", default=None, help="gradebook URL (default sqlite in the workspace)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per notebook cell (default 60)")
    p.add_argument("--workspace", type=Path, default=Path("grading_workspace"),
                   help="scratch nbgrader course folder (default ./grading_workspace)")
    p.add_argument("--solutions", type=Path, default=REPO_ROOT / "solutions", help="source notebooks folder")
    p.add_argument("--pattern", default=None, help="regex with a named group student_id, matched on file paths")
    p.add_argument("--memory-mb", type=int, default=8192, help="address-space limit of a kernel (default 8192)")
    p.add_argument("--cpu-s", type=int, default=900, help="CPU-seconds limit of a kernel (default 900)")
    p.add_argument("--submission-timeout", type=int, default=1200,
                   help="wall-clock seconds for one whole submission (default 1200)")
    p.add_argument("--kernel-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the kernels (repeatable), e.g. COURSE_QUICK=1")
    p.add_argument("--no-sandbox", action="store_true", help="run kernels unconfined (trusted notebooks only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def load_state(ws: Workspace) -> dict:
    """What previous runs graded."""
    path = ws.state_file()
    return json.loads(path.read_text()) if path.exists() else {"students": {}}


def place(ws: Workspace, sub: Submission, notebook_name: str, releases: dict) -> tuple[bytes, list[str], list[str]]:
    """Repair a submission and write it where nbgrader expects it; return its bytes, notes, flags."""
    notes, flags = list(sub.notes), []
    try:
        nb, repair_notes, flags = prepare_submission(sub.data.decode("utf-8", errors="replace"),
                                                     releases[notebook_name])
        notes += repair_notes
        data = nbformat.writes(nb).encode()
    except Exception as exc:  # not a notebook at all: nbgrader gets nothing and the row says why
        notes.append(f"ERROR: unreadable notebook ({type(exc).__name__}: {exc})")
        data = b""
    target = ws.submitted_notebook(sub.student_id, notebook_name)
    if target.parent.exists():
        shutil.rmtree(target.parent)
    target.parent.mkdir(parents=True)
    if data:
        target.write_bytes(data)
    (target.parent / "timestamp.txt").write_text(sub.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f"))
    return data, notes, flags


def grade_one(ws: Workspace, student: str, timeout_s: int) -> dict:
    """Run grading.autograde_one in its own process group; kill it whole on timeout."""
    # a short private folder: Unix socket paths must stay under 108 bytes
    runtime = Path(tempfile.mkdtemp(prefix="grade-", dir="/tmp" if os.path.isdir("/tmp") else None))
    env = dict(os.environ, JUPYTER_PATH=str(ws.root / "jupyter"), JUPYTER_RUNTIME_DIR=str(runtime),
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               GRADING_SCRATCH=str(runtime / "work"))
    cmd = [sys.executable, "-m", "grading.autograde_one", str(ws.root), ws.assignment, student, str(runtime)]
    proc = subprocess.Popen(cmd, env=env, cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"autograde": False, "feedback": False, "leaks": [],
                "error": f"whole submission exceeded {timeout_s} s and was stopped"}
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"autograde": False, "feedback": False, "leaks": [], "error": (err or out)[-3000:]}
    return json.loads(lines[-1])


def export_csv(ws: Workspace, db_url: str, state: dict) -> list[dict]:
    """Write the grade CSV (student, points per graded cell, total) from the gradebook; return rows."""
    from nbgrader.api import Gradebook, MissingEntry

    rows, cells = [], []
    with Gradebook(db_url, "init-optim") as gb:
        assignment = gb.find_assignment(ws.assignment)
        for notebook in assignment.notebooks:
            cells += [(notebook.name, c.name, c.max_score) for c in notebook.grade_cells]
        for student, info in sorted(state["students"].items()):
            row = {"student_id": student}
            total = 0.0
            try:
                submission = gb.find_submission(ws.assignment, student)
                scores = {(nb.name, g.name): g.score for nb in submission.notebooks for g in nb.grades}
            except MissingEntry:
                scores = {}
            graded = info.get("status") == "graded"
            for nb_name, cell, _ in cells:
                score = scores.get((nb_name, cell)) if graded else None
                row[cell] = "" if score is None else round(score, 3)
                total += score or 0.0
            row["total"] = round(total, 3) if graded else ""
            row["max_total"] = sum(c[2] for c in cells)
            row["status"] = info.get("status", "")
            row["notes"] = " | ".join(info.get("notes", []))
            row["review_flags"] = " | ".join(info.get("flags", []))
            pages = ws.feedback_pages(student)
            row["feedback"] = " ".join(str(p.relative_to(ws.root)) for p in pages)
            rows.append(row)
    fields = ["student_id"] + [c[1] for c in cells] + ["total", "max_total", "status", "notes",
                                                        "review_flags", "feedback"]
    with open(ws.grades_csv(), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def ensure_assignment(ws: Workspace) -> None:
    """Run nbgrader generate_assignment: the release notebook and the gradebook's assignment."""
    api, _ = nbgrader_api(ws.root)
    cwd = os.getcwd()
    os.chdir(ws.root)
    try:
        result = api.generate_assignment(ws.assignment, force=True, create=True)
    finally:
        os.chdir(cwd)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.get('error') or result.get('log')}")


def main(argv: Optional[list[str]] = None) -> int:
    """Grade; return 0 when every submission was graded, 1 when some need attention."""
    args = parse_args(argv)
    # nbgrader runs the `alembic` command of its own environment when it creates a gradebook
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    ws = Workspace(args.workspace, args.assignment)
    sandbox = not args.no_sandbox
    if sandbox and not bwrap_available():
        sys.exit("bubblewrap (apt package bubblewrap) is needed to sandbox student code; "
                 "install it, or pass --no-sandbox for trusted notebooks only")
    db_url = args.db_url or f"sqlite:///{ws.root / 'gradebook.db'}?timeout=120"
    settings = GradingSettings(args.assignment, db_url, args.timeout, args.memory_mb, args.cpu_s, sandbox,
                               tuple(args.kernel_env))
    fingerprint = prepare(ws, settings, args.solutions.resolve())
    state = load_state(ws)
    if state.get("fingerprint") != fingerprint or not ws.release_notebook(ws.source_notebooks()[0].name).exists():
        ensure_assignment(ws)
        state["fingerprint"] = fingerprint
        state["students"] = {s: dict(v, key="") for s, v in state["students"].items()}  # regrade all
    releases = release_notebooks(ws)
    notebook_name = ws.source_notebooks()[0].name  # each assignment has one notebook

    submissions, warnings = collect(args.path, args.pattern)
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    todo = []
    for sub in submissions:
        key = hashlib.sha256(sub.data).hexdigest()
        previous = state["students"].get(sub.student_id, {})
        if not args.force and previous.get("key") == key and previous.get("status") == "graded":
            continue
        data, notes, flags = place(ws, sub, notebook_name, releases)
        state["students"][sub.student_id] = {"key": key, "origin": sub.origin, "notes": notes,
                                             "flags": flags, "status": "pending" if data else "unreadable"}
        if data:
            todo.append(sub.student_id)
    _create_students(db_url, todo)
    print(f"{args.assignment}: {len(submissions)} submissions, {len(todo)} to grade "
          f"({len(submissions) - len(todo)} unchanged), {args.jobs} job(s)", file=sys.stderr)

    started = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(grade_one, ws, s, args.submission_timeout): s for s in todo}
        for future in tqdm(as_completed(futures), total=len(futures), unit="submission",
                           desc=args.assignment, disable=args.quiet, file=sys.stderr):
            student = futures[future]
            outcome = future.result()
            info = state["students"][student]
            if outcome["autograde"] and outcome["feedback"] and not outcome["leaks"]:
                info["status"] = "graded"
            elif outcome["autograde"]:
                info["status"] = "graded"
                info["notes"].append("ERROR: feedback withheld: " + (
                    "hidden test text found in it" if outcome["leaks"] else outcome["error"][-300:]))
            else:
                info["status"] = "FAILED"
                info["notes"].append("ERROR: autograde failed: " + outcome["error"].strip()[-500:])
            ws.state_file().write_text(json.dumps(state, indent=1))
    ws.state_file().write_text(json.dumps(state, indent=1))
    rows = export_csv(ws, db_url, state)
    attention = [r for r in rows if r["status"] != "graded" or "WARNING" in r["notes"] or "ERROR" in r["notes"]]
    for row in attention:
        print(f"!! {row['student_id']}: {row['status']}: {row['notes']}", file=sys.stderr)
    print(f"graded {len(todo)} in {time.time() - started:.1f} s; grades: {ws.grades_csv()}; "
          f"feedback: {ws.root / 'feedback'}", file=sys.stderr)
    return 1 if attention else 0


def _create_students(db_url: str, students: list[str]) -> None:
    """Add students to the gradebook before the workers start (no two workers create rows at once)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url, "init-optim") as gb:
        for student in students:
            gb.update_or_create_student(student)


if __name__ == "__main__":
    sys.exit(main())
