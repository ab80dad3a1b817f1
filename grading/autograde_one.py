"""Execute one submission with `nbgrader autograde`, in a process of its own (started by grading.api).

``python -m grading.autograde_one WORKSPACE ASSIGNMENT STUDENT RUNTIME_DIR RESULT_JSON``

This process only runs nbgrader, which runs the student's notebook in the sandboxed kernel. It
scores nothing: the grader judges the probes' results after this process has ended (or was
killed). What happened is written as JSON to RESULT_JSON, a file the kernel cannot reach; nothing
is read from this process's stdout, which may carry anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grading.workspace import nbgrader_api


def _reason(outcome: dict) -> str:
    """The informative part of a failed nbgrader run: its logged errors, else the traceback's end."""
    log_errors = [line for line in (outcome.get("log") or "").splitlines() if "ERROR" in line or "Error" in line]
    return ("\n".join(log_errors[-8:]) or (outcome.get("error") or ""))[-3000:]


def run(workspace: Path, assignment: str, student: str, runtime_dir: Path) -> dict:
    """Autograde one student's notebook with nbgrader; return {"executed": bool, "error": str}."""
    os.chdir(workspace)  # this process's own working folder: nbgrader resolves paths from it
    api, _ = nbgrader_api(workspace, **{"KernelManager.connection_file": str(runtime_dir / "kernel.json"),
                                        "KernelManager.ip": str(runtime_dir / "k")})
    graded = api.autograde(assignment, student, force=True, create=True)
    return {"executed": bool(graded["success"]), "error": "" if graded["success"] else _reason(graded)}


def main(argv: list[str]) -> None:
    """Command line: run and write the outcome to RESULT_JSON."""
    workspace, assignment, student, runtime, result_file = argv
    try:
        outcome = run(Path(workspace), assignment, student, Path(runtime))
    except BaseException as error:  # noqa: B036 (whatever happens, the grader gets a record)
        outcome = {"executed": False, "error": f"{type(error).__name__}: {error}"[-3000:]}
    tmp = Path(result_file + ".tmp")
    tmp.write_text(json.dumps(outcome))
    tmp.replace(result_file)


if __name__ == "__main__":
    main(sys.argv[1:])
