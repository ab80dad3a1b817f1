"""The examples on the instructor page, from a real batch.

A class of twelve for the initialization assignment (reference answers, the untouched release and the
typical mistakes of the verdict tests' catalogue) is graded in the sandbox; one score is then set by hand,
as nbgrader's formgrader sets it, and every export is written again from the gradebook. Headless Chromium
takes the pictures the page shows. Last, the regrade preview runs as if one property's weight had been
raised. The lines the page quotes are printed.

    python scripts/instructor_examples.py     # about 3 minutes on 2 cores; needs bubblewrap and chromium

writes book/_static/instructors/class_report.png and feedback_set_by_hand.png (look at them before you
commit them: they are what instructors will read).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the course, and the verdict tests' catalogue of mistakes

ASSIGNMENT = "initialization"
# Student -> {answer cell: mistake of the catalogue}; None: the untouched release.
CLASS: dict[str, Optional[dict[str, str]]] = {
    "Ada Lovelace": {}, "Grace Hopper": {}, "Alan Turing": {}, "Emmy Noether": {}, "Kurt Gödel": {},
    "Blaise Pascal": None,
    "Sofia Kovalevskaya": {"var_init": "std squared used as std"},
    "Carl Gauss": {"var_init": "std squared used as std", "xavier_init": "fan_in only"},
    "Ada Yonath": {"xavier_init": "fan_in only"},
    "Srinivasa Ramanujan": {"kaiming_init": "no factor 2 (equal variance)"},
    "Mary Somerville": {"equal_var_init": "the last layer forgotten", "kaiming_init": "no factor 2 (equal variance)"},
    "Pierre Laplace": {"backward_variance_ratio": "product transposed"},
}
SET_BY_HAND = ("Sofia Kovalevskaya", "var_init_tests", 2.0)  # a student's points raised by the instructor
# The preview's example: as if the instructor had raised this property's weight in course_lib/checks/initializers.py.
HEAVIER = ("var_init", "weight variance std^2 for the std given", 0.6)


def write_class(folder: Path) -> None:
    """One folder per student with their notebook."""
    from test_verdicts import MISTAKES

    from grading.authoring.release import filled_release, release_path

    for student, mistakes in CLASS.items():
        if mistakes is None:
            notebook = nbformat.read(release_path(ASSIGNMENT), as_version=4)
        else:
            notebook = filled_release(ASSIGNMENT, {cell: MISTAKES[cell][m][0].strip() for cell, m in mistakes.items()})
        (folder / student).mkdir(parents=True)
        nbformat.write(notebook, str(folder / student / f"{ASSIGNMENT}.ipynb"))


def raise_weight() -> None:
    """Judge with HEAVIER's weight from now on (in this process only; the checks on disk stay as they are)."""
    from course_lib.checks import initializers

    judge = initializers.judge
    exercise, name, weight = HEAVIER

    def heavier(key: str, spec: dict, results):
        props, note = judge(key, spec, results)
        if key == exercise:
            props = [dataclasses.replace(p, weight=weight) if p.name == name else p for p in props]
        return props, note

    initializers.judge = heavier


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    """A picture of the top of a page as headless Chromium shows it (offline)."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
                        "--host-resolver-rules=MAP * ~NOTFOUND", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "book" / "_static" / "instructors")
    parser.add_argument("--workspace", type=Path, help="keep the graded workspace here (default: a temporary one)")
    args = parser.parse_args()
    from nbgrader.api import Gradebook

    from grading import api, grade
    from grading.course import COURSE_ID
    from grading.settings import GradingSettings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_class(root / "class")
        settings = GradingSettings(workspace=args.workspace or root / "ws", jobs=2, quiet=True)
        report = api.grade(ASSIGNMENT, root / "class", settings)
        by_name = {r.student_name: r for r in report.students.values()}
        student, cell, score = SET_BY_HAND
        sid = by_name[student].student_id
        with Gradebook(settings.gradebook_url(), COURSE_ID) as gb:  # as the formgrader does
            cell_grade = gb.find_grade(cell, ASSIGNMENT, ASSIGNMENT, sid)
            print(f"{student}: {cell} {cell_grade.auto_score} -> {score} by hand")
            cell_grade.manual_score = score
            gb.db.commit()
        report = api.export(ASSIGNMENT, settings)
        for r in sorted(report.students.values(), key=lambda r: r.student_name):
            print(f"{r.student_name}: {r.total()} of {sum(report.max_points.values()):g}")
        args.out.mkdir(parents=True, exist_ok=True)
        ws = Path(settings.workspace)
        screenshot(ws / f"class_{ASSIGNMENT}.html", args.out / "class_report.png", 1100, 1900)
        screenshot(ws / report.students[sid].feedback, args.out / "feedback_set_by_hand.png", 1100, 900)
        print(f"wrote {args.out / 'class_report.png'} and {args.out / 'feedback_set_by_hand.png'}")
        raise_weight()
        print(f"--preview, with the weight of {HEAVIER[0]}'s property {HEAVIER[1]!r} raised to {HEAVIER[2]}:")
        sys.stderr = sys.stdout  # the command prints its lines on stderr
        grade.main([ASSIGNMENT, "unread", "--preview", "--workspace", str(ws)])


if __name__ == "__main__":
    main()
