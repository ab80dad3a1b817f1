"""Run a command that dies with the grader: ``python -m grading.sandbox.lifeline PARENT_PID COMMAND...``.

The grader starts its nbgrader processes (grading.running.autograde_one) in sessions of their own (so that a
timeout can kill the whole group). Without this wrapper, a grader killed with SIGKILL (a Dask worker lost mid-batch)
would leave that run going: it could still write nbgrader's own scores into the gradebook after the
submission was re-graded elsewhere. Linux's parent-death signal ends it with its grader instead; the
kernel below it has bubblewrap's --die-with-parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    """Ask for SIGKILL when the parent dies, check it is still alive, then become the command."""
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the grader died before the signal was armed
        sys.exit(1)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
