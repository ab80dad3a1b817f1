"""Feed an exercise the grader's inputs and record what comes out; runs inside the student's kernel.

Each hidden test cell holds one line, ``from grading.sandbox.probe import record; record("adam", Adam)``.
Outside grading (``COURSE_GRADING_CHALLENGE`` unset) it does nothing. While grading, it reads the
challenge (inputs drawn by the trusted grader), runs the student's function or class on them and writes
the outputs to ``$COURSE_GRADING_RESULTS/<exercise>.safetensors``. It holds no secret and computes no
verdict: the grader compares the recorded numbers with PyTorch outside the sandbox. It never raises and
prints nothing; whatever the student's code prints or warns while probed is discarded.

``run_answer_cells`` is the other entry point, for the run of the answer cells alone (``grading.running.alone``):
a process of its own that runs the release's imports and definitions and the student's answer cells, nothing
else of the notebook, then records every exercise, all of it inside one watch of the tripwires.

How each kind of exercise is run lives in ``course_lib.checks.runner``, which the notebooks' self-check
shares; the probe adds the challenge, the results file and the tripwires (``grading.sandbox.tripwires``).
"""

from __future__ import annotations

import _thread
import ast
import builtins
import json
import os
import sys
import time
import types
from typing import Any, Dict, List, Mapping, Tuple

import torch

from course_lib.checks import runner
from course_lib.checks.runner import INTERRUPTED, RUNNERS, decode_tensor, encode_tensor, error_text
from grading.sandbox import tripwires
from grading.sandbox.tripwires import AGAIN_EVENT, ORACLES_SEEN, WATCH_EVENT, OracleRefused, refusal

CHALLENGE_ENV, RESULTS_ENV = "COURSE_GRADING_CHALLENGE", "COURSE_GRADING_RESULTS"


# --- Tripwires: the ready implementations of the exercises compute nothing while the probe watches ---------------

_audit = sys.audit  # bound now: the student's code could replace sys.audit, not what the probe holds


def arm_tripwires() -> list[str]:
    """Arm ``grading.sandbox.tripwires`` before any student code, the probe's functions private to the probe
    (their code runs only as themselves); return the names of the ready implementations armed."""
    own = [fn for fn in list(globals().values()) if isinstance(fn, types.FunctionType) and fn.__module__ == __name__]
    return tripwires.arm_tripwires(own)


PROBES = RUNNERS  # the runner of each kind of exercise (course_lib.checks.runner, shared with the self-check)


def _run_all(obj: Any, spec: Dict[str, Any], seed: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Every run of one exercise on the student's code (``record`` keeps the ready implementations disarmed)."""
    return runner.run_exercise(obj, spec, seed)


def _write(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> None:
    """Write a safetensors file atomically (temporary file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tmp = f"{path}.{os.getpid()}.tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def record(exercise: str, obj: Any) -> None:
    """Feed ``obj`` the grader's inputs for ``exercise`` and record its outputs; a no-op outside grading, and
    for an exercise recorded before in this kernel (the tripwires refuse a second watch of it; the grader hears
    of it and scores that exercise 0).

    It never raises, but for the interrupt that the cell's time limit sends: once the finished runs are
    written, that goes on, so the cell stops (its visible tests would hang the same way) and the next runs.
    """
    try:  # from here on, the ready implementations compute nothing (grading.sandbox.tripwires)
        _audit(WATCH_EVENT, 1, exercise)
    except PermissionError:  # recorded before in this kernel: a second run would meet the same inputs
        try:  # the guard logs it: the grader scores the exercise 0 (only the student's code records twice)
            _audit(AGAIN_EVENT, exercise)
        except BaseException:  # noqa: B036
            pass
        return
    try:
        errors: Dict[str, str] = {}
        interrupted = False  # an interrupt that reached a broad handler below is still the cell's time limit
        try:
            challenge_path = os.environ.get(CHALLENGE_ENV)
            results_dir = os.environ.get(RESULTS_ENV)
            if not challenge_path or not results_dir:
                return
            with open(challenge_path, encoding="utf-8") as f:
                challenge = json.load(f)
            spec = challenge["exercises"].get(exercise)
            if spec is None:
                return
            path = os.path.join(results_dir, f"{exercise}.safetensors")
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(1)  # small tensors: more threads only contend
                ORACLES_SEEN.clear()
                tensors, errors = _run_all(obj, spec, int(challenge.get("seed", 0)) % 2**31)
                metadata = runner.run_metadata(exercise, errors, ORACLES_SEEN)
            except BaseException as error:  # noqa: B036
                tensors, metadata = {}, {"exercise": exercise, "status": "error", "error": error_text(error)}
                interrupted = isinstance(error, KeyboardInterrupt)
            finally:
                torch.set_num_threads(threads)
            _write(path, tensors, metadata)
        except BaseException as error:  # noqa: B036 - never raise into the student's notebook
            interrupted = interrupted or isinstance(error, KeyboardInterrupt)
        if interrupted or INTERRUPTED in errors.values():
            raise KeyboardInterrupt
    finally:
        _audit(WATCH_EVENT, -1, exercise)


# --- The answer cells alone: a process of their own, the ready implementations disarmed from before their first line --

ALONE_WATCH = "the answer cells alone"  # the watch run_answer_cells holds to the end of its process
_interrupt_main, _start_thread, _monotonic, _sleep = _thread.interrupt_main, _thread.start_new_thread, time.monotonic, \
    time.sleep  # bound now, before any student code
_exit = os._exit


class _NoShell:
    """What ``get_ipython()`` gives answer cells run alone: every magic and shell command does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _undefined(name: str) -> Any:
    """What is recorded for an exercise the answer cells did not define: it raises NameError when run."""
    def undefined(*args: Any, **kwargs: Any) -> Any:
        raise NameError(f"name {name!r} is not defined by the answer cells")
    return undefined


IGNORED_INTERRUPT_EXIT = 3  # the answer cells alone's exit status when a step outlived its interrupt by limit_s


def _watchdog(deadline: List[float], limit_s: float) -> None:
    """Interrupt the main thread when ``deadline[0]`` (a monotonic time) has passed, as nbgrader does with a cell
    past its time limit; when the step is still running ``limit_s`` seconds later (its code swallowed the
    interrupt), end the process there (in the kernel, every later cell would wait behind it and time out): the
    exercises not yet recorded score 0. ``deadline[1]``: interrupts sent during the current step."""
    while True:
        _sleep(0.05)
        if _monotonic() > deadline[0]:
            if deadline[1]:
                _exit(IGNORED_INTERRUPT_EXIT)
            deadline[0], deadline[1] = _monotonic() + limit_s, 1
            _interrupt_main()


def run_answer_cells(cells: List[Mapping[str, str]], exercises: List[Mapping[str, str]], limit_s: float) -> None:
    """Run ``cells`` ({"label", "source"}: the release's imports and definitions, the student's answer cells, in
    notebook order) statement by statement in one namespace, and ``record`` each exercise ({"key", "name" the
    answer cell defines, "cell": its label}) right after its answer cell, as its test cell follows it in the
    notebook; each step stops after ``limit_s`` seconds. The ready implementations compute nothing from before the
    first statement: this process never ends its watch. A statement that raises is skipped, as a failed cell
    would be; an exercise it leaves undefined raises NameError when recorded. Never raises."""
    _audit(WATCH_EVENT, 1, ALONE_WATCH)
    # bound before the student's code can rebind them (a rebound one could only make this run record less)
    own_record, undefined, monotonic, run, compile_, is_a = record, _undefined, _monotonic, exec, compile, isinstance
    deadline = [float("inf"), 0]  # the current step's time limit, the interrupts sent during it (_watchdog)
    _start_thread(_watchdog, (deadline, limit_s))
    shell = _NoShell()
    namespace: Dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "get_ipython": lambda: shell}
    steps: List[Any] = []
    for cell in cells:
        filename = f"<answer cell {cell['label']}>"
        try:
            tree = compile(cell["source"], filename, "exec", ast.PyCF_ONLY_AST)
        except BaseException:  # noqa: B036 - a cell that does not compile runs nothing
            tree = ast.Module([], [])
        steps += [(ast.Module([statement], []), filename) for statement in tree.body]
        steps += [(e["key"], e["name"]) for e in exercises if e["cell"] == cell["label"]]
    labels = [cell["label"] for cell in cells]
    steps += [(e["key"], e["name"]) for e in exercises if e["cell"] not in labels]
    while steps:
        try:  # an interrupt meant for a step may land in this loop: it only ends that step
            while steps:
                what, name = steps.pop(0)  # a statement and its cell's file name, or an exercise and its name
                deadline[1], deadline[0] = 0, monotonic() + limit_s
                try:
                    if is_a(what, ast.Module):
                        run(compile_(what, name, "exec"), namespace)
                    else:
                        own_record(what, namespace[name] if name in namespace else undefined(name))
                except BaseException:  # noqa: B036 - the student's code may raise anything
                    pass
                finally:
                    deadline[0] = float("inf")
        except BaseException:  # noqa: B036
            continue


__all__ = ["record", "run_answer_cells", "ALONE_WATCH", "encode_tensor", "decode_tensor", "arm_tripwires",
           "ORACLES_SEEN", "OracleRefused", "refusal"]
