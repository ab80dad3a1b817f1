"""nbgrader's gradebook as the grader uses it: students, the scores of the verdicts, the grade table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Mapping, Optional

from grading.course import COURSE_ID
from grading.reports import tables

# One writer at a time from this process (sqlite); other processes wait on the database's own lock.
_LOCK = threading.Lock()


def create_students(db_url: str, students: Mapping[str, str]) -> None:
    """Add students (id -> original name) before the workers start, so no two workers create rows."""
    from nbgrader.api import Gradebook

    with _LOCK, Gradebook(db_url, COURSE_ID) as gb:
        for student, name in students.items():
            gb.update_or_create_student(student, last_name=name[:128])


def record_scores(db_url: str, assignment: str, notebook: str, student: str, scores: Mapping[str, float]) -> None:
    """Write the verdicts' points (test cell grade_id -> points) as the cells' auto scores."""
    from nbgrader.api import Gradebook

    with _LOCK, Gradebook(db_url, COURSE_ID) as gb:
        gb.update_or_create_submission(assignment, student)  # creates every grade row when missing
        for cell, score in scores.items():
            grade = gb.find_grade(cell, notebook, assignment, student)
            grade.auto_score = float(score)
            grade.needs_manual_grade = False
        gb.db.commit()


def recorded_grades(db_url: str, assignment: str,
                    students: Iterable[str]) -> dict[str, dict[str, tuple[Optional[float], float]]]:
    """Student -> test cell -> (the grader's auto score, the score nbgrader counts): the two differ where the
    instructor set a manual score or extra credit in the formgrader (missing submissions: {})."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, dict[str, tuple[Optional[float], float]]] = {}
    with _LOCK, Gradebook(db_url, COURSE_ID) as gb:
        for student in students:
            try:
                submission = gb.find_submission(assignment, student)
                out[student] = {g.name: (g.auto_score, float(g.score)) for nb in submission.notebooks
                                for g in nb.grades}
            except MissingEntry:
                out[student] = {}
    return out


def write_csv(path: Path, rows: list[dict], cells: list[str]) -> None:
    """The grade table: one row per student, points per test cell, total, status, notes, flags."""
    fields = ["student_id", "student_name", "origin", *cells, "total", "max_total", "status", "notes",
              "review_flags", "feedback"]
    tables.write_dicts(path, fields, rows)
