"""Command line: ``python -m grading.export WORKSPACE ASSIGNMENT`` rewrites every export from the gradebook.

After a score was changed in nbgrader's formgrader (to zero a delegating exercise, say), this writes the
grade CSV, the JSON report, the class report and every feedback page again, grading nothing; the changed
points show as set by the instructor. ``--canvas FILE`` / ``--moodle FILE`` also write the LMS files
(as ``python -m grading.reports.lms`` does, from the new CSV).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.api import GradingError, export
from grading.course import ASSIGNMENTS
from grading.reports import lms
from grading.settings import GradingSettings


def main(argv: Optional[list[str]] = None) -> int:
    """Rewrite the exports; 0, 1 when an LMS file left rows out, 2 on error."""
    p = argparse.ArgumentParser(prog="python -m grading.export", description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path, help="the graded workspace (grading.grade's --workspace)")
    p.add_argument("assignment", choices=ASSIGNMENTS)
    p.add_argument("--db-url", help="the gradebook's database URL, when it is not the workspace's SQLite file")
    p.add_argument("--canvas", type=Path, metavar="FILE", help="also write the Canvas gradebook import here")
    p.add_argument("--moodle", type=Path, metavar="FILE", help="also write the Moodle grade import here")
    args = p.parse_args(argv)
    try:
        report = export(args.assignment, GradingSettings(workspace=args.workspace, db_url=args.db_url))
    except (GradingError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    adjusted = sorted(s for s, r in report.students.items() if r.adjustments)
    print(f"{args.assignment}: {len(report.students)} students; points set by the instructor for "
          f"{len(adjusted)}{': ' + ', '.join(adjusted) if adjusted else ''}", file=sys.stderr)
    print(f"grade table: {report.csv_path}; report: {report.report_path}", file=sys.stderr)
    status = 0
    for kind, out in (("canvas", args.canvas), ("moodle", args.moodle)):
        if out is None:
            continue
        try:
            left_out = lms.export(kind, report.csv_path, out)
        except (lms.NothingToImport, OSError, ValueError) as error:
            print(f"error: {kind}: {error}", file=sys.stderr)
            return 2
        for line in left_out:
            print(f"!! {line}", file=sys.stderr)
        status = 1 if left_out else status
        print(f"{kind} import: {out}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
