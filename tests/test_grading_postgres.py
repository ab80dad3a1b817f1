"""The grader on a real PostgreSQL gradebook (the ``postgres`` fixture of conftest.py), with two workers."""

from __future__ import annotations

import csv

import nbformat
import pytest

from grading import api
from grading.authoring.release import filled_release, release_path
from grading.settings import GradingSettings


@pytest.mark.slow
def test_postgres_gradebook_with_two_workers(postgres, tmp_path, canary_dir):
    """Reference and untouched submissions graded with --jobs 2 into PostgreSQL score full and 0."""
    assignment = "optimization"
    for name, nb in {"reference": filled_release(assignment),
                     "untouched_release": nbformat.read(str(release_path(assignment)), 4)}.items():
        (tmp_path / "subs" / name).mkdir(parents=True)
        nbformat.write(nb, str(tmp_path / "subs" / name / f"{assignment}.ipynb"))
    settings = GradingSettings(workspace=tmp_path / "ws", db_url=postgres, jobs=2, quiet=True,
                               cell_timeout_s=12, canary_dir=canary_dir)  # the corpus runs' canary
    report = api.grade(assignment, tmp_path / "subs", settings)
    full = sum(report.max_points.values())
    with open(report.csv_path) as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    from nbgrader.api import Gradebook

    with Gradebook(postgres) as gb:
        for name, expected in (("reference", full), ("untouched_release", 0.0)):
            assert float(rows[name]["total"]) == expected
            assert gb.find_submission(assignment, name).score == expected
        assert sorted(s.id for s in gb.students) == ["reference", "untouched_release"]
