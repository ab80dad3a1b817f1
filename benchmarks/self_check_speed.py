"""How long the notebooks' self-check takes per exercise, as a student waits for it (not a test; prints numbers).

    .venv/bin/python benchmarks/self_check_speed.py           # every exercise, 5 fresh draws each
    .venv/bin/python benchmarks/self_check_speed.py --quick   # CI smoke test: one draw each

Each exercise's reference solution is checked by ``course_lib.self_check.fresh_verdict`` (draw the inputs,
run the solution as the grader's probe does, judge every property), in this process, one torch thread. Goal:
under 1 s per exercise on this course's 2-core machine. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_lib.checks import EXERCISE_NAMES  # noqa: E402
from course_lib.self_check import fresh_verdict  # noqa: E402
from grading.authoring.solutions import solution_namespace  # noqa: E402


def main() -> None:
    """Time the self-check of every exercise's reference solution; print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one draw per exercise (CI smoke test)")
    parser.add_argument("--draws", type=int, default=5, help="fresh draws per exercise")
    args = parser.parse_args()
    draws = 1 if args.quick else args.draws
    seconds = {}
    for assignment, names in EXERCISE_NAMES.items():
        namespace = solution_namespace(assignment)
        for name in names.values():
            times = []
            for seed in range(draws):
                start = time.perf_counter()
                verdict, _, _ = fresh_verdict(namespace[name], seed=seed)
                times.append(time.perf_counter() - start)
                assert verdict.fraction == 1.0, (name, seed)
            seconds[name] = statistics.median(times)
            print(f"{assignment:15s} {name:24s} median {seconds[name]:.3f} s over {draws} draws")
    print(json.dumps({"quick": args.quick, "draws": draws, "max_s_per_exercise": max(seconds.values()),
                      "median_s_per_exercise": statistics.median(seconds.values()), "seconds": seconds}))


if __name__ == "__main__":
    main()
