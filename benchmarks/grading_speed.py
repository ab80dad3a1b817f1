"""How fast the grading pipeline is: seconds per submission and throughput with --jobs 1 and 2.

    python benchmarks/grading_speed.py [--count 40] [--quick]

Grades one reference submission of each assignment (per_submission_s: the slower one), then COUNT
generated submissions of the initialization assignment (reference solutions, each with a distinct
extra cell so nothing is skipped as unchanged) with --jobs 1 and --jobs 2, in fresh workspaces.
--quick: 2 submissions instead of 40 (a CI smoke test). The last line is one JSON object.
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
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from grading import grade  # noqa: E402
from grading_corpus.cases import build_corpus  # noqa: E402


def reference_notebook(assignment: str, root: Path):
    """The reference submission of an assignment, built from a generated release."""
    empty = root / f"empty_{assignment}"
    empty.mkdir()
    grade.main([assignment, str(empty), "--workspace", str(root / "release_ws"), "--quiet"])
    release = nbformat.read(str(root / "release_ws" / "release" / assignment / f"{assignment}.ipynb"), 4)
    source = nbformat.read(str(REPO / "solutions" / assignment / f"{assignment}.ipynb"), 4)
    return build_corpus(source, release, {"paths": [], "port": 9})["reference"].notebook


def timed_grade(assignment: str, notebooks: list, root: Path, jobs: int) -> float:
    """Wall seconds to grade the notebooks in a fresh workspace."""
    subs = root / f"subs_{assignment}_{jobs}_{len(notebooks)}"
    for i, nb in enumerate(notebooks):
        (subs / f"student{i:03d}").mkdir(parents=True)
        nbformat.write(nb, str(subs / f"student{i:03d}" / f"{assignment}.ipynb"))
    workspace = root / f"ws_{assignment}_{jobs}_{len(notebooks)}"
    # first generate the assignment in the new workspace, so only grading is timed
    grade.main([assignment, str(root / f"empty_{assignment}"), "--workspace", str(workspace), "--quiet"])
    start = time.perf_counter()
    grade.main([assignment, str(subs), "--workspace", str(workspace), "--jobs", str(jobs), "--quiet"])
    return time.perf_counter() - start


def main() -> None:
    """Measure and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="2 submissions (CI smoke test)")
    args = parser.parse_args()
    count = 2 if args.quick else args.count
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_submission = {}
        for assignment in ("initialization", "optimization"):
            reference = reference_notebook(assignment, root)
            per_submission[assignment] = timed_grade(assignment, [reference], root, 1)
            print(f"{assignment}: {per_submission[assignment]:.1f} s for one submission", flush=True)
        base = nbformat.read(str(next((root / "subs_initialization_1_1").rglob("*.ipynb"))), 4)
        notebooks = []
        for i in range(count):
            nb = copy.deepcopy(base)
            nb.cells.append(nbformat.v4.new_code_cell(f"submission_number = {i}"))
            notebooks.append(nb)
        rates = {}
        for jobs in (1, 2):
            seconds = timed_grade("initialization", notebooks, root, jobs)
            rates[jobs] = count / seconds * 60
            print(f"--jobs {jobs}: {count} submissions in {seconds:.1f} s", flush=True)
    result = {
        "per_submission_s": round(max(per_submission.values()), 2),
        "per_submission_by_assignment_s": {k: round(v, 2) for k, v in per_submission.items()},
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
