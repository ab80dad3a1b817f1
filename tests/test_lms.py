"""grading.reports.lms: Canvas and Moodle grade-import files, read back with csv.

Headers as documented:
- Canvas, "How do I import grades in the Gradebook?":
  https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807
  (Student, ID, SIS User ID, SIS Login ID, Section, then "<assignment> (<id>)"; the second row is Canvas's
  "    Points Possible" row, as canvas-lms's lib/gradebook_exporter.rb writes it).
- Moodle, "Grade import": https://docs.moodle.org/en/Grade_import (map "Email address" to useremail or
  "ID number" to useridnumber; item columns named as Moodle's export names them, "<Module>: <item> (Real)"),
  and the assignment's offline grading worksheet (mod/assign/feedback/offline: "Identifier" holding
  "Participant <id>", "Grade", "Last modified (grade)", "Feedback comments").
"""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from grading.reports.gradebook import write_csv
from grading.reports.lms import (
    CANVAS_HEADER,
    MOODLE_WORKSHEET,
    export,
    identity_from_origin,
    main,
    read_grades,
)
from grading.running.workspace import Workspace

CELLS = ["sgd_tests", "sgd_momentum_tests", "adam_tests"]
CANVAS_DOC_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]  # as the Canvas guide lists them


def grade_row(student_id, name, origin, points, status="graded"):
    graded = status == "graded"
    return {"student_id": student_id, "student_name": name, "origin": origin,
            **{c: p if graded else "" for c, p in zip(CELLS, points)},
            "total": round(sum(points), 3) if graded else "", "max_total": 10.0, "status": status,
            "notes": "", "review_flags": "", "feedback": ""}


@pytest.fixture
def canvas_grades(tmp_path):
    """A grade table as grading.api writes it, from a Canvas submissions zip."""
    path = tmp_path / "grades_optimization.csv"
    rows = [grade_row("doejane", "doejane", "doejane_1234_98765_optimization.ipynb", [2, 3, 4.5]),
            grade_row("muellerzoe", "müllerzoë", "müllerzoë_LATE_5678_11111_optimization-1.ipynb", [2, 0, 1.25]),
            grade_row("broken", "broken", "broken_4321_55555_optimization.ipynb", [0, 0, 0], status="unreadable"),
            grade_row("nobody", "nobody", "nobody.ipynb", [1, 1, 1])]
    write_csv(path, rows, CELLS)
    return path


@pytest.fixture
def moodle_grades(tmp_path):
    """A grade table from a Moodle 'Download all submissions' zip (one folder per participant)."""
    path = tmp_path / "grades_optimization.csv"
    rows = [grade_row("Jane-Doe-0123456789", "Jane Doe_301_assignsubmission_file_",
                      "Jane Doe_301_assignsubmission_file_/optimization.ipynb", [2, 3, 5]),
            grade_row("Zoe-Muller-abcdef0123", "Zoë Müller_302_assignsubmission_file_",
                      "Zoë Müller_302_assignsubmission_file_/optimization (1).ipynb", [1, 1.5, 0]),
            grade_row("Late-abcdef0124", "Late One_303_assignsubmission_file_",
                      "Late One_303_assignsubmission_file_/optimization.ipynb", [0, 0, 0], status="FAILED")]
    write_csv(path, rows, CELLS)
    return path


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_ids_from_canvas_and_moodle_names():
    assert identity_from_origin("doejane_1234_98765_optimization.ipynb").canvas_id == "1234"
    assert identity_from_origin("sub/doejane_LATE_77_88_opt.ipynb").canvas_id == "77"
    assert identity_from_origin("alice/optimization.ipynb").canvas_id == ""
    moodle = identity_from_origin("Zoë Müller_302_assignsubmission_file_/optimization.ipynb")
    assert (moodle.participant, moodle.name) == ("302", "Zoë Müller")
    assert identity_from_origin("Ng, Anh_9_assignsubmission_onlinetext_/a.ipynb").participant == "9"


def test_canvas_header_points_row_and_ids(canvas_grades, tmp_path, capsys):
    out = tmp_path / "canvas.csv"
    warnings = export("canvas", canvas_grades, out, name="Optimizers", assignment_id="4242")
    table = read(out)
    assert table[0] == CANVAS_DOC_HEADER + ["Optimizers (4242)"]
    assert tuple(table[0][:5]) == CANVAS_HEADER
    assert table[1] == ["    Points Possible", "", "", "", "", "10"]
    rows = {r[1]: r for r in table[2:]}
    assert rows["1234"] == ["doejane", "1234", "", "", "", "9.5"]
    assert rows["5678"] == ["müllerzoë", "5678", "", "", "", "3.25"]  # non-ASCII survives, late file matched
    assert len(table) == 4  # the unreadable row and the one without a Canvas id are left out...
    assert any("broken" in w and "unreadable" in w for w in warnings)  # ...with a warning each
    assert any("nobody" in w and "no Canvas user id" in w for w in warnings)
    with open(out, "rb") as f:
        assert not f.read(3).startswith(b"\xef\xbb\xbf")  # plain UTF-8


def test_canvas_roster_fallback_and_scaling(canvas_grades, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,sis_user_id,sis_login_id,section\n"
                      "nobody,\"Body, No\",S-9,nbody,Section 2\n"
                      "müllerzoë,\"Müller, Zoë\",S-2,zmueller,Section 1\n", encoding="utf-8")
    out = tmp_path / "canvas.csv"
    warnings = export("canvas", canvas_grades, out, roster=roster, points=100)
    table = read(out)
    assert table[0][-1] == "optimization" and table[1][-1] == "100"  # no id: matched by name; rescaled
    rows = {r[0]: r for r in table[2:]}
    assert rows["Body, No"] == ["Body, No", "", "S-9", "nbody", "Section 2", "30"]  # roster only
    assert rows["Müller, Zoë"] == ["Müller, Zoë", "5678", "S-2", "zmueller", "Section 1", "32.5"]  # merged
    assert rows["doejane"][-1] == "95"
    assert not any("nobody" in w for w in warnings)


def test_moodle_worksheet_from_participant_folders(moodle_grades, tmp_path):
    out = tmp_path / "moodle.csv"
    warnings = export("moodle", moodle_grades, out)
    table = read(out)
    assert table[0] == ["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)",
                        "Feedback comments"]
    assert tuple(table[0]) == MOODLE_WORKSHEET
    rows = {r[0]: r for r in table[1:]}
    assert set(rows) == {"Participant 301", "Participant 302"}
    assert rows["Participant 302"][1:4] == ["Zoë Müller", "2.5", "10"]
    dt.datetime.strptime(rows["Participant 301"][4], "%Y-%m-%d %H:%M:%S")  # a date Moodle's strtotime reads
    assert rows["Participant 301"][5] == "sgd_tests: 2; sgd_momentum_tests: 3; adam_tests: 5; total 10/10"
    assert any("Late-abcdef0124" in w and "FAILED" in w for w in warnings)


def test_moodle_gradebook_with_roster(moodle_grades, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("\ufeffstudent_id,email,idnumber\n"  # a BOM, as Excel writes it
                      "Jane-Doe-0123456789,jane@example.org,A1\n"
                      "Zoë Müller_302_assignsubmission_file_,zoe@example.org,A2\n", encoding="utf-8")
    out = tmp_path / "moodle.csv"
    export("moodle", moodle_grades, out, roster=roster, name="Optimizers")
    table = read(out)
    assert table[0] == ["Email address", "ID number", "Full name", "Assignment: Optimizers (Real)",
                        "Assignment: Optimizers (Feedback)"]
    rows = {r[0]: r for r in table[1:]}
    assert rows["jane@example.org"][:4] == ["jane@example.org", "A1", "Jane Doe", "10"]
    assert rows["zoe@example.org"][:4] == ["zoe@example.org", "A2", "Zoë Müller", "2.5"]
    assert len(table) == 3


def test_bad_roster_and_ungraded_only(tmp_path, canvas_grades):
    roster = tmp_path / "roster.csv"
    roster.write_text("id,email\nx,y\n")
    with pytest.raises(ValueError, match="student_id"):
        export("canvas", canvas_grades, tmp_path / "c.csv", roster=roster)
    roster.write_text("student_id,favourite_colour\nx,y\n")
    with pytest.raises(ValueError, match="unknown roster columns"):
        export("canvas", canvas_grades, tmp_path / "c.csv", roster=roster)
    rows, warnings = read_grades(canvas_grades)
    assert [r.student_id for r in rows] == ["doejane", "muellerzoe", "nobody"] and len(warnings) == 1


def test_cli_over_a_workspace(tmp_path, canvas_grades, capsys):
    ws = Workspace(tmp_path / "ws", "optimization")
    ws.root.mkdir()
    ws.grades_csv().write_bytes(canvas_grades.read_bytes())
    out = tmp_path / "out" / "canvas.csv"
    # two rows left out (one unreadable, one without a Canvas id): written, but exit 1 with a !! line each
    assert main(["canvas", "optimization", str(out), "--workspace", str(ws.root),
                 "--canvas-assignment-id", "7"]) == 1
    assert read(out)[0][-1] == "optimization (7)"
    err = capsys.readouterr().err
    assert "!! canvas: nobody: no Canvas user id" in err and "!! canvas: broken: status unreadable" in err
    ws.grades_csv().write_bytes(b"student_id,student_name,origin,total,max_total,status\n"
                                b"doejane,doejane,doejane_1234_98765_optimization.ipynb,3,10,graded\n")
    assert main(["canvas", "optimization", str(out), "--workspace", str(ws.root)]) == 0
    assert main(["moodle", "optimization", str(out), "--workspace", str(tmp_path / "missing")]) == 2


def test_ids_survive_collect_from_lms_zips(tmp_path):
    """The origin and name grading.intake.collect keeps for Canvas and Moodle zips carry the LMS ids."""
    import zipfile

    from grading.intake.collect import collect

    for kind, member, want in [
            ("canvas", "doezoë_LATE_1234_98765_optimization.ipynb", ("canvas_id", "1234")),
            ("moodle", "Zoë Doe_301_assignsubmission_file_/optimization.ipynb", ("participant", "301"))]:
        archive = tmp_path / f"{kind}.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(member, '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        (sub,), _ = collect(archive)
        path = tmp_path / f"grades_{kind}.csv"
        write_csv(path, [grade_row(sub.student_id, sub.student_name, sub.origin, [1, 2, 3])], CELLS)
        out = tmp_path / f"{kind}.out.csv"
        assert export(kind, path, out) == []
        table = read(out)
        field, value = want
        assert value in (table[2][1] if kind == "canvas" else table[1][0])


def test_grade_cli_writes_the_exports_after_grading(tmp_path, canvas_grades, capsys):
    """grading.grade's --canvas/--moodle/--similarity, over the workspace a batch just wrote."""
    from grading.grade import export_options, write_exports
    from grading.settings import GradingSettings

    ws = Workspace(tmp_path / "ws", "optimization")
    ws.root.mkdir()
    ws.grades_csv().write_bytes(canvas_grades.read_bytes())
    argv = ["optimization", "subs.zip", "--workspace", str(ws.root), "--canvas", str(tmp_path / "c.csv"),
            "--moodle", str(tmp_path / "m.csv"), "--similarity"]
    assert write_exports("optimization", GradingSettings(workspace=ws.root), export_options(argv)) == 2
    assert read(tmp_path / "c.csv")[1][0] == "    Points Possible"
    err = capsys.readouterr().err
    assert "!! canvas: nobody: no Canvas user id" in err
    # a Moodle file from a Canvas zip: no participant folders, not one row: an error, no header-only file
    assert not (tmp_path / "m.csv").exists()
    assert "error: no student could be written to the moodle file" in err and "no Moodle participant id" in err
    assert "WARNING: no similarity report" in err  # no placed submissions in this workspace
