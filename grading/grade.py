"""Grade a folder or LMS zip of submitted notebooks; export grades and safe feedback.

    python -m grading.grade ASSIGNMENT PATH [--jobs N | --cluster tcp://HOST:8786] [--force] [--db-url URL] ...
    python -m grading.grade ASSIGNMENT PATH --preview | --apply   (judge the kept evidence again; PATH unread)

A thin command line over grading.api.grade; every option is a field of grading.settings.GradingSettings
and takes its default from there. See the instructor documentation (book/instructors.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.api import GradingError, grade, regrade
from grading.course import ASSIGNMENTS
from grading.settings import GradingSettings, defaults

# option -> (settings field, help); the defaults come from GradingSettings
OPTIONS = {
    "--workspace": ("workspace", "scratch nbgrader course folder; it holds the gradebook"),
    "--solutions": ("solutions", "folder of the nbgrader source notebooks"),
    "--db-url": ("db_url", "gradebook URL (default: sqlite in the workspace)"),
    "--jobs": ("jobs", "submissions graded at once (with --cluster local: worker processes)"),
    "--cluster": ("cluster", "grade on Dask workers: a scheduler address tcp://HOST:8786, or 'local'"),
    "--pattern": ("pattern", "regex with a named group student_id, matched on file paths"),
    "--timeout": ("cell_timeout_s", "seconds per notebook cell"),
    "--submission-timeout": ("submission_timeout_s", "wall-clock seconds for one whole submission"),
    "--memory-mb": ("memory_mb", "memory of a kernel, its children and its tmpfs included (cgroup)"),
    "--cpu-s": ("cpu_s", "CPU seconds of a kernel process"),
    "--pids-max": ("pids_max", "processes and threads of a kernel"),
    "--tmpfs-mb": ("tmpfs_mb", "size of the sandbox's /tmp"),
    "--max-notebook-mb": ("max_notebook_mb", "larger submitted notebooks are left out with a warning"),
    "--canary-dir": ("canary_dir", "where the canary runs and keeps its verdict; batches (of any workspace) that "
                                   "share it, one after the other, run it once"),
}


def parse_args(argv: Optional[list[str]]) -> tuple[str, Optional[Path], GradingSettings]:
    """Command-line options -> (assignment, path (None for --preview and --apply), settings)."""
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
    again = p.add_mutually_exclusive_group()
    again.add_argument("--preview", action="store_true",
                       help="after the checks changed: judge every graded submission's kept evidence again, running "
                            "no notebook, and write regrade_ASSIGNMENT.csv (whose points move and why), nothing else")
    again.add_argument("--apply", action="store_true",
                       help="as --preview, then put the new verdicts in the gradebook, the exports and the pages")
    add_export_options(p)
    args = vars(p.parse_args(argv))
    assignment, path = args.pop("assignment"), args.pop("path")
    if args["preview"] or args["apply"]:
        path = None  # a regrade reads the workspace only
    settings = GradingSettings(
        **{name: args[name] for _, (name, _) in OPTIONS.items()}, force=args["force"],
        kernel_env=tuple(args["kernel_env"]), cgroups="warn" if args["allow_no_cgroup"] else "require",
        sandbox=not args["no_sandbox"], canary=not args["no_canary"], quiet=args["quiet"])
    return assignment, path, settings


def add_export_options(p: argparse.ArgumentParser) -> None:
    """The options of what is written after grading: the similarity report and the LMS import files."""
    p.add_argument("--similarity", action="store_true",
                   help="write the similarity report (similarity_ASSIGNMENT.html/.csv in the workspace)")
    p.add_argument("--canvas", type=Path, metavar="FILE", help="write a Canvas gradebook import CSV")
    p.add_argument("--moodle", type=Path, metavar="FILE", help="write a Moodle grade import CSV")
    p.add_argument("--roster", type=Path, metavar="CSV",
                   help="student_id -> LMS ids for --canvas/--moodle (see python -m grading.reports.lms --help)")


def export_options(argv: Optional[list[str]]) -> argparse.Namespace:
    """Just the export options of a command line (parse_args has already checked all of it)."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_export_options(p)
    return p.parse_known_args(argv)[0]


def write_exports(assignment: str, settings: GradingSettings, options: argparse.Namespace) -> int:
    """Write the similarity report and LMS files asked for; 0, 1 when rows were left out, 2 when one failed."""
    from grading.reports import lms, similarity

    code = 0
    if options.similarity:
        try:
            _, page, _ = similarity.similarity_report(assignment, Path(settings.workspace))
            print(f"similarity report: {page}", file=sys.stderr)
        except (OSError, ValueError) as error:  # e.g. fewer than two submissions: grading itself went fine
            print(f"WARNING: no similarity report: {error}", file=sys.stderr)
    try:
        for kind in ("canvas", "moodle"):
            out = getattr(options, kind)
            if out is not None:
                grades = Path(settings.workspace) / f"grades_{assignment}.csv"
                for warning in lms.export(kind, grades, out, roster=options.roster, name=assignment):
                    print(f"!! {kind}: {warning}", file=sys.stderr)
                    code = max(code, 1)
                print(f"{kind} import file: {out}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    return code


def main(argv: Optional[list[str]] = None) -> int:
    """Grade; return 0 when every submission was graded cleanly, 1 when some need attention, 2 on error."""
    assignment, path, settings = parse_args(argv)
    exports = export_options(argv)
    if path is None:
        mode = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        mode.add_argument("--apply", action="store_true")
        return _regrade(assignment, settings, apply=mode.parse_known_args(argv)[0].apply)
    try:
        report = grade(assignment, path, settings)
    except (GradingError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in report.attention():
        print(f"!! {row.student_id}: {row.status}: {' | '.join(row.notes)}", file=sys.stderr)
    print(f"graded {len(report.graded_now)} in {report.seconds:.1f} s; grades: {report.csv_path}; "
          f"feedback: {report.csv_path.parent / 'feedback'}", file=sys.stderr)
    return max(write_exports(assignment, settings, exports), 1 if report.attention() else 0)


def _regrade(assignment: str, settings: GradingSettings, apply: bool) -> int:
    """--preview / --apply: print the changes; 0 when nothing moves, 1 when points move, 2 on error."""
    try:
        changes = regrade(assignment, settings, apply=apply)
    except (GradingError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for c in changes:
        print(f"{c.student_id} {c.exercise}: {c.points_before} -> {c.points_after}"
              + (f" ({'; '.join(c.properties)})" if c.properties else "")
              + (f"; set by hand to {c.instructor}, which stays" if c.instructor is not None else ""), file=sys.stderr)
    moved = {c.student_id for c in changes if c.points_before != c.points_after and c.instructor is None}
    table = Path(settings.workspace) / f"regrade_{assignment}.csv"
    print(f"{len(moved)} student{'s' if len(moved) != 1 else ''}: points {'moved' if apply else 'would move'}; "
          f"{len(changes)} change{'s' if len(changes) != 1 else ''} in {table}"
          + ("" if apply else "; nothing else was written (--apply writes them)"), file=sys.stderr)
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
