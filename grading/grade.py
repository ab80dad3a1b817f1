"""Grade a folder or LMS zip of submitted notebooks; export grades and safe feedback.

    python -m grading.grade ASSIGNMENT PATH [--jobs N] [--force] [--db-url URL] ...

A thin command line over grading.api.grade; every option is a field of grading.settings.GradingSettings
and takes its default from there. See the instructor documentation (book/instructors.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.api import GradingError, grade
from grading.course import ASSIGNMENTS
from grading.settings import GradingSettings, defaults

# option -> (settings field, help); the defaults come from GradingSettings
OPTIONS = {
    "--workspace": ("workspace", "scratch nbgrader course folder; it holds the gradebook"),
    "--solutions": ("solutions", "folder of the nbgrader source notebooks"),
    "--db-url": ("db_url", "gradebook URL (default: sqlite in the workspace)"),
    "--jobs": ("jobs", "submissions graded at once"),
    "--pattern": ("pattern", "regex with a named group student_id, matched on file paths"),
    "--timeout": ("cell_timeout_s", "seconds per notebook cell"),
    "--submission-timeout": ("submission_timeout_s", "wall-clock seconds for one whole submission"),
    "--memory-mb": ("memory_mb", "memory of a kernel, its children and its tmpfs included (cgroup)"),
    "--cpu-s": ("cpu_s", "CPU seconds of a kernel process"),
    "--pids-max": ("pids_max", "processes and threads of a kernel"),
    "--tmpfs-mb": ("tmpfs_mb", "size of the sandbox's /tmp"),
    "--max-notebook-mb": ("max_notebook_mb", "larger submitted notebooks are left out with a warning"),
}


def parse_args(argv: Optional[list[str]]) -> tuple[str, Path, GradingSettings]:
    """Command-line options -> (assignment, path, settings)."""
    default = defaults()
    p = argparse.ArgumentParser(prog="python -m grading.grade", description=__doc__.split("\n")[0])
    p.add_argument("assignment", choices=ASSIGNMENTS, help="the assignment to grade")
    p.add_argument("path", type=Path, help="folder of submitted notebooks, or an LMS zip")
    for option, (name, text) in OPTIONS.items():
        value = default[name]
        kind = int if isinstance(value, int) else Path if isinstance(value, Path) else str
        p.add_argument(option, dest=name, type=kind, default=value, help=f"{text} (default {value})")
    p.add_argument("--force", action="store_true", help="regrade every submission, not only new ones")
    p.add_argument("--kernel-env", dest="kernel_env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the kernels (repeatable), e.g. COURSE_QUICK=1")
    p.add_argument("--allow-no-cgroup", action="store_true",
                   help="where no cgroup can be created, grade anyway on rlimits alone, with a warning")
    p.add_argument("--no-sandbox", action="store_true", help="run kernels unconfined (trusted notebooks only)")
    p.add_argument("--no-canary", action="store_true", help="skip grading the reference and the release first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(p.parse_args(argv))
    assignment, path = args.pop("assignment"), args.pop("path")
    settings = GradingSettings(
        **{name: args[name] for _, (name, _) in OPTIONS.items()}, force=args["force"],
        kernel_env=tuple(args["kernel_env"]), cgroups="warn" if args["allow_no_cgroup"] else "require",
        sandbox=not args["no_sandbox"], canary=not args["no_canary"], quiet=args["quiet"])
    return assignment, path, settings


def main(argv: Optional[list[str]] = None) -> int:
    """Grade; return 0 when every submission was graded cleanly, 1 when some need attention, 2 on error."""
    assignment, path, settings = parse_args(argv)
    try:
        report = grade(assignment, path, settings)
    except (GradingError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in report.attention():
        print(f"!! {row.student_id}: {row.status}: {' | '.join(row.notes)}", file=sys.stderr)
    print(f"graded {len(report.graded_now)} in {report.seconds:.1f} s; grades: {report.csv_path}; "
          f"feedback: {report.csv_path.parent / 'feedback'}", file=sys.stderr)
    return 1 if report.attention() else 0


if __name__ == "__main__":
    sys.exit(main())
