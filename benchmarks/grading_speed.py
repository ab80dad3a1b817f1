"""How fast the grading pipeline is: seconds per submission and throughput with --jobs 1 and 2.

    python benchmarks/grading_speed.py [--count 40] [--quick]

Grades one reference submission of each assignment (per_submission_s: the slower one), then COUNT
reference submissions of the initialization assignment (each with a distinct extra cell, so nothing
is skipped as unchanged) with --jobs 1 and --jobs 2, in fresh workspaces. Workspaces are prepared
and their canary graded before the clock starts. --quick: one assignment, 2 submissions, jobs 1
and 2, no canary (a CI smoke test). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from grading import api  # noqa: E402
from grading.authoring.release import filled_release  # noqa: E402
from grading.course import source_notebook  # noqa: E402
from grading.settings import GradingSettings  # noqa: E402


def timed_grade(assignment: str, notebooks: list, root: Path, jobs: int, canary: bool,
                cluster: str | None = None, tag: str | None = None) -> float:
    """Wall seconds to grade the notebooks in a fresh workspace (prepared and canaried untimed)."""
    tag = tag or f"{assignment}_{jobs}_{len(notebooks)}"
    subs, empty = root / f"subs_{tag}", root / f"empty_{tag}"
    empty.mkdir()
    for i, nb in enumerate(notebooks):
        (subs / f"student{i:03d}").mkdir(parents=True)
        nbformat.write(nb, str(subs / f"student{i:03d}" / f"{assignment}.ipynb"))
    settings = GradingSettings(workspace=root / f"ws_{tag}", jobs=jobs, cluster=cluster, quiet=True, canary=canary)
    api.grade(assignment, empty, settings)  # workspace, gradebook and canary: not timed
    start = time.perf_counter()
    report = api.grade(assignment, subs, settings)
    seconds = time.perf_counter() - start
    bad = [s.student_id for s in report.students.values() if s.total() != sum(report.max_points.values())]
    if bad:
        raise SystemExit(f"reference submissions not graded full marks: {bad}")
    return seconds


def main() -> None:
    """Measure and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="2 submissions, no canary (CI smoke test)")
    args = parser.parse_args()
    count = 2 if args.quick else args.count
    assignments = ("optimization",) if args.quick else ("initialization", "optimization")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_submission = {}
        for assignment in assignments:
            per_submission[assignment] = timed_grade(assignment, [filled_release(assignment)], root, 1,
                                                     not args.quick)
            print(f"{assignment}: {per_submission[assignment]:.1f} s for one submission", flush=True)
        assignment = "optimization" if args.quick else "initialization"
        assert source_notebook(assignment).is_file()
        notebooks = []
        for i in range(count):
            nb = copy.deepcopy(filled_release(assignment))
            nb.cells.append(nbformat.v4.new_code_cell(f"submission_number = {i}"))
            notebooks.append(nb)
        rates = {}
        for jobs in (1, 2):
            seconds = timed_grade(assignment, notebooks, root, jobs, not args.quick)
            rates[jobs] = count / seconds * 60
            print(f"--jobs {jobs}: {count} {assignment} submissions in {seconds:.1f} s", flush=True)
    result = {
        "per_submission_s": round(max(per_submission.values()), 2),
        "per_submission_by_assignment_s": {k: round(v, 2) for k, v in per_submission.items()},
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
