"""Command line: ``python -m grading.export WORKSPACE ASSIGNMENT`` rewrites every export from the gradebook.

After a score was changed in nbgrader's formgrader (to zero a delegating exercise, say), this writes the
grade CSV, the JSON report, the class report and every feedback page again, grading nothing; the changed
points show as set by the instructor. The options of ``python -m grading.grade`` that write after grading
(``--canvas FILE``, ``--moodle FILE``, ``--roster CSV``, ``--similarity``) write the same files from the new CSV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.api import GradingError, export
from grading.course import ASSIGNMENTS
from grading.grade import add_export_options, write_exports
from grading.settings import GradingSettings


def main(argv: Optional[list[str]] = None) -> int:
    """Rewrite the exports; 0, 1 when an LMS file left rows out, 2 on error."""
    p = argparse.ArgumentParser(prog="python -m grading.export", description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path, help="the graded workspace (grading.grade's --workspace)")
    p.add_argument("assignment", choices=ASSIGNMENTS)
    p.add_argument("--db-url", help="the gradebook's database URL, when it is not the workspace's SQLite file")
    add_export_options(p)
    args = p.parse_args(argv)
    settings = GradingSettings(workspace=args.workspace, db_url=args.db_url)
    try:
        report = export(args.assignment, settings)
    except (GradingError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    adjusted = sorted(s for s, r in report.students.items() if r.adjustments)
    print(f"{args.assignment}: {len(report.students)} students; points set by the instructor for "
          f"{len(adjusted)}{': ' + ', '.join(adjusted) if adjusted else ''}", file=sys.stderr)
    print(f"grade table: {report.csv_path}; report: {report.report_path}", file=sys.stderr)
    return write_exports(args.assignment, settings, args)


if __name__ == "__main__":
    sys.exit(main())
