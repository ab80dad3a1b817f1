"""How fast the grading pipeline is, per assignment, and where the time goes.

    python benchmarks/grading_speed.py [--count 8] [--quick]

For each assignment, in fresh workspaces that share one canary folder:
- set-up: the first batch of a workspace (nothing to grade) with the canary run (``setup_cold_s``),
  then in another workspace with the canary's verdict kept (``setup_cached_s``);
- one reference submission alone, with one job (``alone_s``: its autograde process starts for it);
- COUNT reference submissions with one job (``batch_per_submission_s``: seconds per submission in a
  batch), each with a distinct extra cell so nothing is skipped as unchanged;
- where a submission's time goes (means over that batch, from the report's ``seconds``): nbgrader's
  whole run, of which the time before the first cell (kernel start, nbgrader's set-up), the cells and
  the time after the last cell (saving), the wait for the answer cells alone (``grading.running.alone``,
  started beside the kernel run) once the kernel run is done, then judging and the feedback page; and the start of an
  autograde process (Python and nbgrader imported; once per 25 submissions).
Then the initialization batch again with --jobs 2 (``speedup_jobs2``). --quick: the optimization
assignment only, 2 submissions, no canary, no set-up or alone timing (a CI smoke test). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from grading import api  # noqa: E402
from grading.authoring.release import filled_release  # noqa: E402
from grading.course import ASSIGNMENTS  # noqa: E402
from grading.settings import GradingSettings  # noqa: E402

PHASES = ("nbgrader", "before_first_cell", "cells", "after_last_cell", "waiting_for_answer_cells_alone", "judging",
          "feedback")


def timed_grade(assignment: str, notebooks: list, root: Path, jobs: int, canary: bool,
                cluster: str | None = None, tag: str | None = None,
                canary_dir: Path | None = None) -> tuple[float, api.Report]:
    """Wall seconds to grade the notebooks in a fresh workspace (prepared and canaried untimed), and the report."""
    tag = tag or f"{assignment}_{jobs}_{len(notebooks)}"
    subs, empty = root / f"subs_{tag}", root / f"empty_{tag}"
    empty.mkdir()
    for i, nb in enumerate(notebooks):
        (subs / f"student{i:03d}").mkdir(parents=True)
        nbformat.write(nb, str(subs / f"student{i:03d}" / f"{assignment}.ipynb"))
    settings = GradingSettings(workspace=root / f"ws_{tag}", jobs=jobs, cluster=cluster, quiet=True, canary=canary,
                               canary_dir=canary_dir)
    api.grade(assignment, empty, settings)  # workspace, gradebook and canary: not timed
    start = time.perf_counter()
    report = api.grade(assignment, subs, settings)
    seconds = time.perf_counter() - start
    bad = [s.student_id for s in report.students.values() if s.total() != sum(report.max_points.values())]
    if bad:
        raise SystemExit(f"reference submissions not graded full marks: {bad}")
    return seconds, report


def setup_seconds(assignment: str, root: Path, canary_dir: Path, tag: str) -> float:
    """Wall seconds of a batch with nothing to grade in a fresh workspace: workspace, gradebook, canary."""
    (root / f"none_{tag}").mkdir()
    start = time.perf_counter()
    api.grade(assignment, root / f"none_{tag}", GradingSettings(workspace=root / f"ws_setup_{tag}", quiet=True,
                                                                canary_dir=canary_dir))
    return time.perf_counter() - start


def numbered_copies(assignment: str, count: int) -> list:
    """``count`` reference submissions, each with a distinct extra cell (nothing is skipped as unchanged)."""
    notebooks = []
    for i in range(count):
        nb = copy.deepcopy(filled_release(assignment))
        nb.cells.append(nbformat.v4.new_code_cell(f"submission_number = {i}"))
        notebooks.append(nb)
    return notebooks


def autograde_start_seconds() -> float:
    """Wall seconds to start Python and import what an autograde process imports (nbgrader, nbformat)."""
    start = time.perf_counter()
    imports = "import grading.running.autograde_one, grading.running.workspace, nbgrader.apps"
    subprocess.run([sys.executable, "-c", imports], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def main() -> None:
    """Measure and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="optimization only, 2 submissions, no canary (CI)")
    args = parser.parse_args()
    count = 2 if args.quick else args.count
    assignments = ("optimization",) if args.quick else ASSIGNMENTS
    by_assignment: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root, canary_dir = Path(tmp), Path(tmp) / "canary"
        for assignment in assignments:
            numbers: dict = {}
            if not args.quick:
                numbers["setup_cold_s"] = setup_seconds(assignment, root, canary_dir, f"{assignment}_cold")
                numbers["setup_cached_s"] = setup_seconds(assignment, root, canary_dir, f"{assignment}_cached")
            if not args.quick:
                numbers["alone_s"], _ = timed_grade(assignment, [filled_release(assignment)], root, 1, True,
                                                    canary_dir=canary_dir)
            seconds, report = timed_grade(assignment, numbered_copies(assignment, count), root, 1, not args.quick,
                                          canary_dir=canary_dir)
            numbers["batch_per_submission_s"] = seconds / count
            numbers["phases_s"] = {phase: mean(s.seconds.get(phase, 0.0) for s in report.students.values())
                                   for phase in PHASES}
            by_assignment[assignment] = numbers
            print(f"{assignment}: " + ", ".join(f"{k} {v:.1f}" for k, v in numbers.items() if k != "phases_s")
                  + "; per submission: " + ", ".join(f"{k} {v:.2f}" for k, v in numbers["phases_s"].items()),
                  flush=True)
        assignment = assignments[0]
        notebooks = numbered_copies(assignment, count)
        rates = {1: 60 / by_assignment[assignment]["batch_per_submission_s"]}
        seconds, _ = timed_grade(assignment, notebooks, root, 2, not args.quick, canary_dir=canary_dir)
        rates[2] = count / seconds * 60
        print(f"--jobs 2: {count} {assignment} submissions in {seconds:.1f} s", flush=True)
    start_s = autograde_start_seconds()
    print(f"an autograde process starts in {start_s:.2f} s (once per 25 submissions of a job)")
    rounded = {a: {k: (round(v, 2) if isinstance(v, float) else {p: round(s, 3) for p, s in v.items()})
                   for k, v in n.items()} for a, n in by_assignment.items()}
    result = {
        "per_submission_s": round(max(n["batch_per_submission_s"] for n in by_assignment.values()), 2),
        "by_assignment": rounded,
        "autograde_process_start_s": round(start_s, 2),
        "throughput_assignment": assignment,
        "jobs1_per_min": round(rates[1], 2),
        "jobs2_per_min": round(rates[2], 2),
        "speedup_jobs2": round(rates[2] / rates[1], 2),
        "submissions": count,
        "quick": args.quick,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
