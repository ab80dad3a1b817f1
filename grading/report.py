"""Command line: ``python -m grading.report WORKSPACE ASSIGNMENT`` writes the class report of a graded workspace.

Every grading run writes it too (``grading.reports.class_report``): this rewrites it, for instance after a
similarity report was added.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.course import ASSIGNMENTS
from grading.reports.class_report import write_class_report


def main(argv: Optional[list[str]] = None) -> int:
    """Write class_ASSIGNMENT.html/.json/.csv into the workspace; 0, or 2 when it has no grade table."""
    p = argparse.ArgumentParser(prog="python -m grading.report", description=__doc__.split("\n")[0])
    p.add_argument("workspace", type=Path, help="the graded workspace (grading.grade's --workspace)")
    p.add_argument("assignment", choices=ASSIGNMENTS)
    args = p.parse_args(argv)
    try:
        out = write_class_report(args.workspace, args.assignment)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"class report: {out.html} (numbers: {out.json.name}, {out.csv.name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
