"""The answer cells alone: the second run of every submission, in a process that holds nothing of the notebook
but the student's answer cells and the release statements that bind the names they read
(``grading.intake.answer_cells.answer_program``).

The kernel run (nbgrader) executes the whole notebook, so whatever else the notebook does happens in the process
that the probe records in. This run is the other half of the evidence. It runs in the same sandbox and limits as
the kernel (``python -m grading.sandbox.launcher SETTINGS --answers``), in an IO folder and cgroup of its own,
started beside the kernel run (it waits for nothing), on the same challenge. Inside
(``grading.sandbox.probe.run_answer_cells``) the tripwires are armed and watching before the first statement and
never stop: torch.optim's optimizers and functional API, the fused kernels, nn.init's named initializers and the
course library's helpers compute nothing in that process, so the numbers it records come from the answer
cells' own arithmetic or from nowhere. The grader judges both runs and keeps, for each exercise, the lower
score (``grading.judging.judge``), with a review flag when the answer cells alone earn less.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from nbformat import NotebookNode

from grading.course import Exercise
from grading.intake.answer_cells import answer_program
from grading.running import evidence
from grading.sandbox import launcher
from grading.sandbox.launcher import ANSWERS_FILE, IO_ENV, SandboxSettings
from grading.sandbox.probe import IGNORED_INTERRUPT_EXIT

SETTINGS_FILE = "settings.json"  # in the run's IO folder: the kernel's sandbox settings (nothing secret)
LOG_FILE = "launcher.log"  # the launcher's own output (why it could not start the sandbox)


class AloneRun:
    """One run of a submission's answer cells alone: ``start`` it, ``wait`` for it, judge ``evidence``, ``close``."""

    def __init__(self, sandbox: SandboxSettings, io: Path, proc: subprocess.Popen, deadline: float) -> None:
        self.sandbox, self.io, self.proc, self.deadline = sandbox, io, proc, deadline
        self.notes: list[str] = []
        self.refused: list[dict] = []
        self.memory_mb: Optional[float] = None
        self.waited_s: Optional[float] = None  # how long the grader waited for it after the kernel run

    @classmethod
    def start(cls, sandbox: SandboxSettings, graded: NotebookNode, release: NotebookNode,
              exercises: tuple[Exercise, ...], challenge: dict, cell_timeout_s: float, timeout_s: float,
              env: dict[str, str]) -> "AloneRun":
        """Start the run of ``graded``'s answer cells (``graded``: the notebook the kernel runs) on ``challenge``;
        each statement and each exercise stops after ``cell_timeout_s``, the whole run after ``timeout_s``."""
        scratch = "/tmp" if os.path.isdir("/tmp") else None
        io = Path(tempfile.mkdtemp(prefix="grade-alone-", dir=scratch))
        io.chmod(0o711)  # the sandbox user may pass through to results/, not list or read the rest
        launcher.claim(io)
        (io / "results").mkdir()
        evidence.evidence_dir(io).mkdir(mode=0o700)
        (io / "challenge.json").write_text(json.dumps(challenge))
        (io / ANSWERS_FILE).write_text(json.dumps({
            "cells": answer_program(graded, release),
            "exercises": [{"key": e.key, "name": e.name, "cell": e.solution_cell} for e in exercises],
            "limit_s": cell_timeout_s}))
        sandbox.save(io / SETTINGS_FILE)
        # grading.sandbox.lifeline: the run dies with the grader; its own session, so that a timeout kills it all
        command = [sys.executable, "-m", "grading.sandbox.lifeline", str(os.getpid()), sys.executable, "-m",
                   "grading.sandbox.launcher", str(io / SETTINGS_FILE), "--answers"]
        with open(io / LOG_FILE, "wb") as log:
            proc = subprocess.Popen(command, env={**env, IO_ENV: str(io)}, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        return cls(sandbox, io, proc, time.monotonic() + timeout_s)

    def wait(self, keys: list[str]) -> Path:
        """Wait for the run (stopped at its deadline), keep its result files; return the folder holding them."""
        started = time.perf_counter()
        try:
            code = self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            code = None
            self.notes.append("ERROR: the answer cells alone ran past the submission's time limit and were stopped; "
                              "the exercises they had not recorded score 0")
        self.waited_s = time.perf_counter() - started
        evidence.collect_all(self.io, keys)
        self.refused = evidence.refused_accesses(self.io)
        self.memory_mb = launcher.peak_memory_mb(self.sandbox, io_dir=str(self.io))
        status = launcher.read_status(io_dir=str(self.io))
        self.notes += status.get("warnings", [])
        if code == IGNORED_INTERRUPT_EXIT:
            self.notes.append("ERROR: a statement of the answer cells alone went on past its time limit's interrupt "
                              "(its code caught the interrupt) and they were stopped there; the exercises they had "
                              "not recorded score 0")
        elif code not in (0, None):
            why = (self.io / LOG_FILE).read_text(errors="replace").strip().splitlines()
            self.notes.append(f"WARNING: the answer cells alone ended with exit status {code}"
                              + (f" ({why[-1][:300]})" if why else ""))
        return evidence.evidence_dir(self.io)

    def close(self) -> None:
        """Stop whatever is left of the run and remove its folders and cgroup."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        launcher.cleanup(self.sandbox, io_dir=str(self.io))
        shutil.rmtree(self.io, ignore_errors=True)
