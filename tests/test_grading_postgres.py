"""The grader on a real PostgreSQL gradebook (started by this test), with two workers."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest

from grading import api
from grading.release import filled_release, release_path
from grading.sandbox import bwrap_available
from grading.settings import GradingSettings

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _skip_reason() -> str:
    if PG_BIN is None:
        return "PostgreSQL NOT TESTED: apt package postgresql missing (scripts/install.sh installs it)"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "PostgreSQL NOT TESTED: psycopg2-binary missing (requirements.txt)"
    if not bwrap_available():
        return "PostgreSQL NOT TESTED: bubblewrap missing"
    return ""


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1, run as the postgres user; yields its URL."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    data = Path(tempfile.mkdtemp(prefix="grading-pg-"))  # in /tmp: pytest's folders are private to root
    shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                            "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_pg + [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "gradebook"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_gradebook_with_two_workers(postgres, tmp_path):
    """Reference and untouched submissions graded with --jobs 2 into PostgreSQL score full and 0."""
    assignment = "optimization"
    for name, nb in {"reference": filled_release(assignment),
                     "untouched_release": nbformat.read(str(release_path(assignment)), 4)}.items():
        (tmp_path / "subs" / name).mkdir(parents=True)
        nbformat.write(nb, str(tmp_path / "subs" / name / f"{assignment}.ipynb"))
    settings = GradingSettings(workspace=tmp_path / "ws", db_url=postgres, jobs=2, quiet=True)
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
