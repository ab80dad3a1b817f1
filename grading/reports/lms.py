"""Grade-import files for Canvas and Moodle, written from the grade table (``grades_ASSIGNMENT.csv``).

    python -m grading.reports.lms {canvas,moodle} ASSIGNMENT OUT [--workspace W] [--roster CSV] ...

Formats, as the LMSs document and export them:
- **Canvas** (Grades > Import; https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807,
  and the gradebook export it mirrors, canvas-lms ``lib/gradebook_exporter.rb``): the header
  ``Student, ID, SIS User ID, SIS Login ID, Section, <assignment name> (<assignment id>)``, then the row
  ``"    Points Possible"`` (four spaces) with the assignment's points, then one row per student. Canvas
  finds the student by ``ID`` (its user id), else the SIS ids; the assignment by the id in parentheses
  (without one, by name, creating a new assignment when none has it).
- **Moodle, gradebook** (Grades > Import > CSV file; https://docs.moodle.org/en/Grade_import): a user
  identifier column the teacher maps in "Map from"/"Map to" (``Email address`` -> useremail, ``ID number``
  -> useridnumber, ``Username`` -> username), then the grade item and its feedback, named as Moodle's own
  export names them: ``<Module>: <item> (Real)`` and ``<Module>: <item> (Feedback)``.
- **Moodle, grading worksheet** (an assignment with offline grading: Assignment > Upload grading
  worksheet; the ``assignfeedback_offline`` importer): ``Identifier`` (``Participant <id>``), ``Full name``,
  ``Grade``, ``Maximum Grade``, ``Last modified (grade)``, ``Feedback comments``. This is what the
  participant id in the folders of Moodle's "Download all submissions" zip identifies.

Who is who: a roster CSV (``--roster``) with a ``student_id`` column (the grader's id, or the original
name as the grade table's ``student_name`` has it) and any of ``name, canvas_id, sis_user_id,
sis_login_id, section, email, idnumber, username, participant``; where it has no entry, the ids are read
from the submission's path in the LMS zip (the grade table's ``origin``): Canvas names files
``<lastfirst>[_LATE]_<user id>_<submission id>_<file name>``, Moodle folders
``<Full Name>_<participant id>_assignsubmission_file_``. The Moodle format defaults to the gradebook when
every student has an email, ID number or username, else to the grading worksheet.

Only graded rows are written; the others (and students with no LMS identity) are left out with a warning.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Optional, Sequence

from grading.course import ASSIGNMENTS, EXERCISES
from grading.intake.collect import CANVAS_FILE, MOODLE_FOLDER
from grading.reports import tables

CANVAS_HEADER = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS = "    Points Possible"  # Canvas's own export writes four spaces before the label
MOODLE_IDENTIFIERS = {"email": "Email address", "idnumber": "ID number", "username": "Username"}
MOODLE_WORKSHEET = ("Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)", "Feedback comments")
MOODLE_PARTICIPANT = "Participant "


@dataclass
class Identity:
    """What an LMS knows a student by (empty strings where unknown)."""

    name: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    email: str = ""
    idnumber: str = ""
    username: str = ""
    participant: str = ""


ROSTER_FIELDS = tuple(f.name for f in fields(Identity))


@dataclass
class GradeRow:
    """One graded student: the grader's id and name, the zip path, the points."""

    student_id: str
    student_name: str
    origin: str
    total: float
    max_total: float
    cells: dict[str, float] = field(default_factory=dict)


def identity_from_origin(origin: str) -> Identity:
    """The LMS ids a submission's path in an LMS zip carries (Canvas file names, Moodle folder names)."""
    path = PurePosixPath(origin)
    found = Identity()
    canvas = CANVAS_FILE.match(path.name)
    if canvas:
        found.canvas_id = canvas["user"]
    for part in path.parts[:-1]:
        moodle = MOODLE_FOLDER.match(part)
        if moodle:
            found.participant, found.name = moodle["participant"], moodle["name"]
    return found


def read_roster(path: Path) -> dict[str, Identity]:
    """student_id (or original name) -> Identity, from a roster CSV (UTF-8, a BOM allowed)."""
    header, rows = tables.read_dicts(path)
    columns = [c.strip() for c in header]
    if "student_id" not in columns:
        raise ValueError(f"{path}: a roster needs a student_id column (has {columns})")
    unknown = set(columns) - {"student_id", *ROSTER_FIELDS}
    if unknown:
        raise ValueError(f"{path}: unknown roster columns {sorted(unknown)}; known: student_id, "
                         + ", ".join(ROSTER_FIELDS))
    roster = {}
    for row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        if row.get("student_id"):
            roster[row["student_id"]] = Identity(**{k: row.get(k, "") for k in ROSTER_FIELDS})
    return roster


def identity(row: GradeRow, roster: Mapping[str, Identity]) -> Identity:
    """The student's identity: the roster's fields first, then what the zip path says, then the name."""
    found = identity_from_origin(row.origin)
    listed = roster.get(row.student_id) or roster.get(row.student_name) or Identity()
    merged = Identity(**{k: getattr(listed, k) or getattr(found, k) for k in ROSTER_FIELDS})
    merged.name = merged.name or row.student_name or row.student_id
    return merged


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_grades(path: Path) -> tuple[list[GradeRow], list[str]]:
    """The graded rows of a grade table, and a warning for each row left out (not graded)."""
    rows, warnings = [], []
    header, table = tables.read_dicts(path)
    tests = {e.test_cell for exercises in EXERCISES.values() for e in exercises}
    cells = [c for c in header if c in tests]  # the points of each graded test cell
    for r in table:
        total, best = _number(r.get("total", "")), _number(r.get("max_total", ""))
        if r.get("status") != "graded" or total is None or best is None:
            warnings.append(f"{r.get('student_id')}: status {r.get('status') or 'unknown'}, no grade exported")
            continue
        rows.append(GradeRow(r["student_id"], r.get("student_name", ""), r.get("origin", ""), total, best,
                             {c: _number(r.get(c, "")) or 0.0 for c in cells}))
    return rows, warnings


def _points(value: float) -> str:
    """A score as the LMS reads it: at most 3 decimals, no trailing zeros."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _scaled(row: GradeRow, points: Optional[float]) -> float:
    """The total, rescaled to ``points`` when the LMS assignment has another maximum."""
    if points is None or row.max_total == 0:
        return row.total
    return row.total / row.max_total * points


def feedback_text(row: GradeRow) -> str:
    """A one-line summary of the points per test cell."""
    return "; ".join(f"{cell}: {_points(score)}" for cell, score in row.cells.items()) + \
        f"; total {_points(row.total)}/{_points(row.max_total)}"


Table = list[list[str]]


def canvas_table(rows: Sequence[GradeRow], roster: Mapping[str, Identity], assignment_name: str,
                 assignment_id: Optional[str] = None, points: Optional[float] = None) -> tuple[Table, list[str]]:
    """The rows of a Canvas gradebook import (header and Points Possible first) and warnings."""
    column = f"{assignment_name} ({assignment_id})" if assignment_id else assignment_name
    best = points if points is not None else max((r.max_total for r in rows), default=0.0)
    table = [[*CANVAS_HEADER, column], [CANVAS_POINTS, "", "", "", "", _points(best)]]
    warnings = []
    for row in rows:
        who = identity(row, roster)
        if not (who.canvas_id or who.sis_user_id or who.sis_login_id):
            warnings.append(f"{row.student_id}: no Canvas user id or SIS id (add it to the roster), left out")
            continue
        table.append([who.name, who.canvas_id, who.sis_user_id, who.sis_login_id, who.section,
                      _points(_scaled(row, points))])
    return table, warnings


def moodle_table(rows: Sequence[GradeRow], roster: Mapping[str, Identity], item: str, fmt: Optional[str] = None,
                 module: str = "Assignment", points: Optional[float] = None, feedback: bool = True,
                 now: Optional[dt.datetime] = None) -> tuple[Table, list[str]]:
    """The rows of a Moodle import (``fmt`` 'gradebook' or 'worksheet'; None: gradebook when every student
    has an email, ID number or username) and warnings."""
    people = [(row, identity(row, roster)) for row in rows]
    kinds = [k for k in MOODLE_IDENTIFIERS if people and all(getattr(who, k) for _, who in people)]
    if fmt is None:
        fmt = "gradebook" if kinds else "worksheet"
    warnings: list[str] = []
    if fmt == "gradebook":
        kinds = kinds or [k for k in MOODLE_IDENTIFIERS if any(getattr(who, k) for _, who in people)][:1] or ["email"]
        header = [MOODLE_IDENTIFIERS[k] for k in kinds] + ["Full name", f"{module}: {item} (Real)"]
        header += [f"{module}: {item} (Feedback)"] if feedback else []
        table = [header]
        for row, who in people:
            if not all(getattr(who, k) for k in kinds):
                warnings.append(f"{row.student_id}: no {' / '.join(MOODLE_IDENTIFIERS[k] for k in kinds)} "
                                "(add it to the roster), left out")
                continue
            table.append([getattr(who, k) for k in kinds] + [who.name, _points(_scaled(row, points))]
                         + ([feedback_text(row)] if feedback else []))
        return table, warnings
    if fmt != "worksheet":
        raise ValueError(f"unknown Moodle format {fmt!r}: 'gradebook' or 'worksheet'")
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d %H:%M:%S")
    table = [list(MOODLE_WORKSHEET)]
    for row, who in people:
        if not who.participant:
            warnings.append(f"{row.student_id}: no Moodle participant id (from the submission folder or the "
                            "roster), left out")
            continue
        best = points if points is not None else row.max_total
        table.append([f"{MOODLE_PARTICIPANT}{who.participant}", who.name, _points(_scaled(row, points)),
                      _points(best), stamp, feedback_text(row) if feedback else ""])
    return table, warnings


def write_table(path: Path, table: Iterable[Sequence[str]]) -> None:
    """A CSV file in UTF-8 (no BOM; both LMSs read UTF-8), every field quoted as Canvas's export does."""
    tables.write_rows(path, table, quote_all=True)


def export(kind: str, grades_csv: Path, out: Path, *, roster: Optional[Path] = None, name: Optional[str] = None,
           assignment_id: Optional[str] = None, points: Optional[float] = None,
           moodle_format: Optional[str] = None) -> list[str]:
    """Write a Canvas or Moodle import file from a grade table; return the warnings (rows left out)."""
    rows, warnings = read_grades(grades_csv)
    people = read_roster(roster) if roster else {}
    item = name or grades_csv.stem.removeprefix("grades_")
    if kind == "canvas":
        table, more = canvas_table(rows, people, item, assignment_id, points)
    elif kind == "moodle":
        table, more = moodle_table(rows, people, item, moodle_format, points=points)
    else:
        raise ValueError(f"unknown LMS {kind!r}: 'canvas' or 'moodle'")
    if len(table) == (2 if kind == "canvas" else 1):  # the header alone: an import that would do nothing
        reasons = (warnings + more)[:3] or ["the grade table has no row"]
        raise NothingToImport(f"no student could be written to the {kind} file {out} (not written): "
                              + "; ".join(reasons) + (" ..." if len(warnings + more) > 3 else ""))
    write_table(out, table)
    return warnings + more


class NothingToImport(ValueError):
    """Not one student of the grade table can be identified in the LMS's terms: no file is written."""


def main(argv: Optional[list[str]] = None) -> int:
    """Write an LMS import file from a graded workspace; 0, 1 when rows were left out (``!!``), 2 on error."""
    from grading.running.workspace import Workspace
    from grading.settings import defaults

    p = argparse.ArgumentParser(prog="python -m grading.reports.lms", description=__doc__.split("\n")[0])
    p.add_argument("lms", choices=("canvas", "moodle"))
    p.add_argument("assignment", choices=ASSIGNMENTS)
    p.add_argument("out", type=Path, help="the CSV file to write")
    p.add_argument("--workspace", type=Path, default=defaults()["workspace"], help="the graded workspace")
    p.add_argument("--roster", type=Path, help="CSV: student_id and LMS fields (" + ", ".join(ROSTER_FIELDS) + ")")
    p.add_argument("--name", help="the assignment's (grade item's) name in the LMS (default: the assignment)")
    p.add_argument("--canvas-assignment-id", dest="assignment_id", help="Canvas: the assignment's id")
    p.add_argument("--points", type=float, help="the LMS assignment's maximum, when it is not the grader's")
    p.add_argument("--moodle-format", choices=("gradebook", "worksheet"), help="default: see the module doc")
    args = p.parse_args(argv)
    grades = Workspace(args.workspace, args.assignment).grades_csv()
    try:
        warnings = export(args.lms, grades, args.out, roster=args.roster, name=args.name or args.assignment,
                          assignment_id=args.assignment_id, points=args.points, moodle_format=args.moodle_format)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"!! {args.lms}: {warning}", file=sys.stderr)
    print(f"{args.lms} import file: {args.out}", file=sys.stderr)
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
