"""The grader on a real PostgreSQL gradebook (started by this test), with two workers."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from grading import grade
from grading.sandbox import bwrap_available
from grading.workspace import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parent))
from grading_corpus.cases import build_corpus  # noqa: E402

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path("/usr/lib/postgresql").exists() else None


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
    assignment = "initialization"
    empty = tmp_path / "empty"
    empty.mkdir()
    ws = tmp_path / "ws"
    grade.main([assignment, str(empty), "--workspace", str(ws), "--db-url", postgres, "--quiet"])
    release = nbformat.read(str(ws / "release" / assignment / f"{assignment}.ipynb"), 4)
    source = nbformat.read(str(REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb"), 4)
    cases = build_corpus(source, release, {"paths": [], "port": 9})
    for name in ("reference", "untouched_release", "optimizer_nan"):
        (tmp_path / "subs" / name).mkdir(parents=True)
        nbformat.write(cases[name].notebook, str(tmp_path / "subs" / name / f"{assignment}.ipynb"))
    grade.main([assignment, str(tmp_path / "subs"), "--workspace", str(ws), "--db-url", postgres,
                "--jobs", "2", "--timeout", "10", "--quiet"])
    with open(ws / f"grades_{assignment}.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    from nbgrader.api import Gradebook

    with Gradebook(postgres) as gb:
        for name in ("reference", "untouched_release", "optimizer_nan"):
            expected = sum(cases[name].expected.values())
            assert float(rows[name]["total"]) == expected
            assert gb.find_submission(assignment, name).score == expected
        assert len(gb.students) == 3
