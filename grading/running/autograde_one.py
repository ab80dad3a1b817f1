"""Execute submissions with `nbgrader autograde`, one at a time, in a long-lived process (started by grading.api).

``python -m grading.running.autograde_one REPLY_FD`` imports nbgrader once, then reads one JSON request a line
on stdin (workspace, assignment, student, runtime folder, IO folder, log file) and answers each with
one JSON line on the inherited descriptor REPLY_FD: ``{"executed", "error", "started", "ended"}``. Each
submission still runs in a sandboxed kernel of its own, started for it and gone after it; this
process only spares each submission the start-up of Python and nbgrader (about 2 s).

This process only runs nbgrader, which runs the student's notebook in the sandboxed kernel. It
scores nothing: the grader judges the probes' results afterwards. Nothing is read from its stdout or
stderr, which go to the submission's log and may carry anything. A submission that runs past its time
limit is stopped by killing this process's whole group; the next request starts a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from grading.sandbox.launcher import IO_ENV

RECYCLE_AFTER = 25  # submissions one process serves before a fresh one takes over (bounds its memory)
# Heap of this process (RLIMIT_DATA, soft): what a notebook's outputs can make nbgrader hold, e.g. a cell
# displaying fifty 50 MB outputs, ends in a MemoryError or this process's death, and the row says so; the
# kernel is not bound by it (the launcher restores the hard limit; the kernel has its cgroup).
MEMORY_MB = 2048


def _reason(outcome: dict) -> str:
    """The informative part of a failed nbgrader run: its logged errors, else the traceback's end."""
    log_errors = [line for line in (outcome.get("log") or "").splitlines() if "ERROR" in line or "Error" in line]
    return ("\n".join(log_errors[-8:]) or (outcome.get("error") or ""))[-3000:]


def run(workspace: Path, assignment: str, student: str, runtime_dir: Path, io: Path) -> dict:
    """Autograde one student's notebook with nbgrader; return {"executed", "error", "started", "ended"}.

    Each test cell's result file is kept as it was when that cell ended (``grading.running.evidence``)."""
    from grading.running.evidence import cell_hooks
    from grading.running.workspace import nbgrader_api

    os.chdir(workspace)  # nbgrader resolves paths from the working folder
    on_cell_execute, on_cell_executed = cell_hooks(io, assignment)
    api, _ = nbgrader_api(workspace, **{"KernelManager.connection_file": str(runtime_dir / "kernel.json"),
                                        "KernelManager.ip": str(runtime_dir / "k"),
                                        "Execute.on_cell_execute": on_cell_execute,
                                        "Execute.on_cell_executed": on_cell_executed})
    started = time.time()
    graded = api.autograde(assignment, student, force=True, create=True)
    return {"executed": bool(graded["success"]), "error": "" if graded["success"] else _reason(graded),
            "started": started, "ended": time.time()}


def _serve_one(request: dict) -> dict:
    """One request: output to its log, the kernel's environment set, nbgrader run; never raises."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["log"], "ab") as log:  # nbgrader's and the kernel launcher's output
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    os.environ.update({"JUPYTER_PATH": str(Path(request["workspace"]) / "jupyter"),
                       "JUPYTER_RUNTIME_DIR": request["runtime"], IO_ENV: request["io"]})
    try:
        return run(Path(request["workspace"]), request["assignment"], request["student"], Path(request["runtime"]),
                   Path(request["io"]))
    except BaseException as error:  # noqa: B036 (whatever happens, the grader gets a record)
        return {"executed": False, "error": f"{type(error).__name__}: {error}"[-3000:]}


def limit_memory(megabytes: int = MEMORY_MB) -> None:
    """Cap this process's heap (soft RLIMIT_DATA; the hard limit stays for the kernel launcher to restore)."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = megabytes * 2**20 if hard == resource.RLIM_INFINITY else min(megabytes * 2**20, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def serve(reply_fd: int) -> None:
    """Answer requests from stdin until it closes."""
    import nbgrader.apps  # noqa: F401 (nbgrader and nbformat, imported once for every submission)

    limit_memory()

    with os.fdopen(reply_fd, "w", buffering=1) as replies:
        for line in sys.stdin:
            replies.write(json.dumps(_serve_one(json.loads(line))) + "\n")


class Autograder:
    """The grader's end of one ``python -m grading.running.autograde_one`` process (started on first use)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.replies = -1
        self.served = 0

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        # grading.sandbox.lifeline: the process dies with the grader (a killed Dask worker leaves no run behind)
        cmd = [sys.executable, "-m", "grading.sandbox.lifeline", str(os.getpid()), sys.executable, "-m",
               "grading.running.autograde_one", str(write_fd)]
        try:
            self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=(write_fd,), start_new_session=True)
        finally:
            os.close(write_fd)
        self.replies, self.served = read_fd, 0

    def close(self) -> None:
        """Stop the process and everything it started (its process group)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc.stdin.close()
            os.close(self.replies)
            self.proc = None

    def run(self, request: dict, timeout_s: float) -> Optional[dict]:
        """Autograde one submission (``request`` as ``serve`` reads it); its outcome, or None when it ran past
        ``timeout_s`` (the process is then stopped with all it started)."""
        if self.proc is None or self.proc.poll() is not None or self.served >= RECYCLE_AFTER:
            self.close()
            self._start()
        self.served += 1
        deadline = time.monotonic() + timeout_s
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died at start: the log says why
            self.close()
            return {"executed": False, "error": ""}
        answer = b""
        while not answer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                self.close()
                return None
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:  # it died (killed, out of memory): the log says why
                self.close()
                return {"executed": False, "error": ""}
            answer += chunk
        outcome = json.loads(answer)
        if not outcome.get("executed"):  # a failed run (a MemoryError, say) may leave this process unwell
            self.served = RECYCLE_AFTER
        return outcome


class AutograderPool:
    """Long-lived autograde processes, one per grading thread, each started by the thread that uses it: its
    parent-death signal (grading.sandbox.lifeline) fires when the thread that started it ends."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.local = threading.local()
        self.started: list[Autograder] = []
        self.lock = threading.Lock()

    def mine(self) -> Autograder:
        """This thread's autograder."""
        if getattr(self.local, "autograder", None) is None:
            self.local.autograder = Autograder(self.env)
            with self.lock:
                self.started.append(self.local.autograder)
        return self.local.autograder

    def close(self) -> None:
        """Stop every process of the pool (a later use starts new ones)."""
        with self.lock:
            for autograder in self.started:
                autograder.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
