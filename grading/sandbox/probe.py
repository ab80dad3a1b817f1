"""Feed an exercise the grader's inputs and record what comes out; runs inside the student's kernel.

Each hidden test cell holds one line, ``from grading.sandbox.probe import record; record("adam", Adam)``.
Outside grading (``COURSE_GRADING_CHALLENGE`` unset) it does nothing. While grading, it reads the
challenge (inputs drawn by the trusted grader), runs the student's function or class on them and writes
the outputs to ``$COURSE_GRADING_RESULTS/<exercise>.safetensors``. It holds no secret and computes no
verdict: the grader compares the recorded numbers with PyTorch outside the sandbox. It never raises and
prints nothing; whatever the student's code prints or warns while probed is discarded.

How each kind of exercise is run lives in ``course_lib.checks.runner``, which the notebooks' self-check
shares; the probe adds the challenge, the results file and the tripwires (``grading.sandbox.tripwires``).
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any, Dict, Tuple

import torch

from course_lib.checks import runner
from course_lib.checks.runner import INTERRUPTED, RUNNERS, decode_tensor, encode_tensor, error_text
from grading.sandbox import tripwires
from grading.sandbox.tripwires import ORACLES_SEEN, WATCH_EVENT, OracleRefused, refusal

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
    for an exercise recorded before in this kernel (the tripwires refuse a second watch of it).

    It never raises, but for the interrupt that the cell's time limit sends: once the finished runs are
    written, that goes on, so the cell stops (its visible tests would hang the same way) and the next runs.
    """
    try:  # from here on, the ready implementations compute nothing (grading.sandbox.tripwires)
        _audit(WATCH_EVENT, 1, exercise)
    except PermissionError:  # recorded before in this kernel: a second run would meet the same inputs
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


__all__ = ["record", "encode_tensor", "decode_tensor", "arm_tripwires", "ORACLES_SEEN", "OracleRefused", "refusal"]
