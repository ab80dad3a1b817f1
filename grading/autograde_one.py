"""Autograde one submission and write its feedback, in a process of its own (run by grading.grade).

``python -m grading.autograde_one WORKSPACE ASSIGNMENT STUDENT RUNTIME_DIR`` prints one JSON line:
{"autograde": bool, "feedback": bool, "leaks": [...], "error": str}. The kernel's connection file
and Unix sockets live in RUNTIME_DIR, private to this submission (the sandbox binds only it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grading.feedback import find_leaks
from grading.workspace import nbgrader_api


def _reason(outcome: dict) -> str:
    """The informative part of a failed nbgrader run: its logged errors, else the traceback's end."""
    log_errors = [line for line in (outcome.get("log") or "").splitlines() if "ERROR" in line or "Error" in line]
    return ("\n".join(log_errors[-8:]) or (outcome.get("error") or ""))[-3000:]


def run(workspace: Path, assignment: str, student: str, runtime_dir: Path) -> dict:
    """Autograde and generate feedback for one student; return what happened."""
    os.chdir(workspace)
    api, config = nbgrader_api(workspace, **{"KernelManager.connection_file": str(runtime_dir / "kernel.json"),
                                             "KernelManager.ip": str(runtime_dir / "k")})
    result = {"autograde": False, "feedback": False, "leaks": [], "error": ""}
    graded = api.autograde(assignment, student, force=True, create=True)
    result["autograde"] = bool(graded["success"])
    if not graded["success"]:
        result["error"] = _reason(graded)
        return result
    feedback = api.generate_feedback(assignment, student, force=True)
    result["feedback"] = bool(feedback["success"])
    if not feedback["success"]:
        result["error"] = _reason(feedback)
    hidden = list(config.ScrubHiddenTests.hidden_lines)
    for page in (workspace / "feedback" / student / assignment).glob("*.html"):
        leaks = find_leaks(page.read_text(errors="replace"), hidden)
        if leaks:
            page.unlink()  # never hand out a page that shows a hidden test
            result["leaks"] += leaks
    return result


if __name__ == "__main__":
    ws, assignment_id, student_id, runtime = sys.argv[1:5]
    outcome = run(Path(ws), assignment_id, student_id, Path(runtime))
    print(json.dumps(outcome))
