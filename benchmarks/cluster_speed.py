"""How fast grading on Dask is: throughput with 1 and 2 workers, and the cluster path's overhead against --jobs.

    python benchmarks/cluster_speed.py [--count 200] [--with-jobs1] [--only RUN ...] [--quick]

Grades COUNT reference submissions of the optimization assignment (each with a distinct extra cell,
so none is skipped as unchanged) three times, each in a fresh workspace prepared before the clock
starts: --jobs 2, --cluster local with 1 worker and with 2 (a LocalCluster of worker
processes; its start and each worker's setup are inside the timing, as an instructor pays them).
The canary is off in every run (it costs the same on both paths, once per worker). speedup_2_workers is
cluster2/cluster1 throughput; overhead_pct compares --cluster local with 2 workers to --jobs 2.
--with-jobs1 adds a --jobs 1 run (for reference; the targets do not use it). --only times some of the runs
(e.g. one disturbed run again); the ratios are printed when their runs are there.
--quick: 2 submissions, --jobs 2 and --cluster local with 2 workers (a CI smoke test: overhead_pct, no
speedup_2_workers). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from grading_speed import timed_grade  # noqa: E402  (the same timing as the --jobs benchmark)

from grading.authoring.release import filled_release  # noqa: E402

ASSIGNMENT = "optimization"


def main() -> None:
    """Measure and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--with-jobs1", action="store_true", help="also time --jobs 1 (not needed for the targets)")
    parser.add_argument("--only", nargs="+", choices=("jobs1", "jobs2", "cluster1", "cluster2"),
                        help="time only these runs")
    parser.add_argument("--quick", action="store_true", help="2 submissions, 2 runs (CI smoke test)")
    args = parser.parse_args()
    count = 2 if args.quick else args.count
    notebooks = []
    for i in range(count):
        nb = copy.deepcopy(filled_release(ASSIGNMENT))
        nb.cells.append(nbformat.v4.new_code_cell(f"submission_number = {i}"))
        notebooks.append(nb)
    runs = {"jobs2": (2, None), "cluster1": (1, "local"), "cluster2": (2, "local")}
    if args.quick:
        del runs["cluster1"]
    if args.with_jobs1 and not args.quick:
        runs = {"jobs1": (1, None), **runs}
    if args.only:
        runs = {tag: run for tag, run in {"jobs1": (1, None), **runs}.items() if tag in args.only}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, (jobs, cluster) in runs.items():
            seconds[tag], _ = timed_grade(ASSIGNMENT, notebooks, Path(tmp), jobs, canary=False, cluster=cluster,
                                          tag=tag)
            print(f"{tag:9s}: {count} submissions in {seconds[tag]:.1f} s "
                  f"({count / seconds[tag] * 60:.2f}/min)", flush=True)
    rate = {tag: count / s * 60 for tag, s in seconds.items()}
    result = {
        "submissions": count,
        "assignment": ASSIGNMENT,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        **{f"{tag}_per_min": round(r, 2) for tag, r in rate.items()},
        "quick": args.quick,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if {"cluster1", "cluster2"} <= rate.keys():
        result["speedup_2_workers"] = round(rate["cluster2"] / rate["cluster1"], 2)
    if {"jobs2", "cluster2"} <= rate.keys():
        result["overhead_pct"] = round((seconds["cluster2"] / seconds["jobs2"] - 1) * 100, 1)
        result["overhead_s_per_submission"] = round((seconds["cluster2"] - seconds["jobs2"]) / count, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
