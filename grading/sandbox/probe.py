"""Feed an exercise the grader's inputs and record what comes out; runs inside the student's kernel.

Each hidden test cell holds one line, ``from grading.sandbox.probe import record; record("adam", Adam)``.
Outside grading (``COURSE_GRADING_CHALLENGE`` unset) it does nothing. While grading, it reads the
challenge (inputs drawn by the trusted grader), runs the student's function or class on them and writes
the outputs to ``$COURSE_GRADING_RESULTS/<exercise>.safetensors``. It holds no secret and computes no
verdict: the grader compares the recorded numbers with PyTorch outside the sandbox. It never raises and
prints nothing; whatever the student's code prints or warns while probed is discarded.

How each kind of exercise is run lives in ``course_lib.checks.runner``, which the notebooks' self-check
shares; the probe adds the challenge, the results file and the tripwires.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Any, Callable, Dict, Iterator, Tuple

import torch

from course_lib.checks import runner
from course_lib.checks.runner import INTERRUPTED, RUNNERS, decode_tensor, encode_tensor, error_text

CHALLENGE_ENV, RESULTS_ENV = "COURSE_GRADING_CHALLENGE", "COURSE_GRADING_RESULTS"


# --- Tripwires: ready implementations of the exercises, refused while the student's code runs -----------------

ORACLES_SEEN: set = set()  # names of the ready implementations called while the student's code was probed
_WATCHING = [0]
# torch's own modules initializing themselves (nn.Linear's constructor calls kaiming_uniform_): not the student's.
# Their code objects, collected when armed (a name and a file name can be forged with compile(), these cannot).
_INTERNAL_CALLERS: set = set()


class OracleRefused(RuntimeError):
    """A ready implementation of an exercise, called while the grader runs the student's code."""


def refusal(name: str) -> str:
    """What a refused ready implementation says to the student."""
    return f"{name} is not available while the grader runs your code: the exercise asks you to implement it"


@contextlib.contextmanager
def _student_code() -> Iterator[None]:
    """Mark the student's code running: a tripwire that fires now records its oracle and refuses the call."""
    _WATCHING[0] += 1
    try:
        yield
    finally:
        _WATCHING[0] -= 1


def _tripwire(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wired(*args, **kwargs):
        if _WATCHING[0]:
            if sys._getframe(1).f_code not in _INTERNAL_CALLERS:
                ORACLES_SEEN.add(name)
                raise OracleRefused(refusal(name))
        return fn(*args, **kwargs)

    del wired.__wrapped__  # functools.wraps's way back to the ready implementation
    wired.__tripwire__ = name
    return wired


OBJECT_WALKS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents")  # audit events of the gc module


def _refuse_object_walks(event: str, args: tuple) -> None:
    """Audit hook: walking the interpreter's objects (where the ready implementations behind the wrappers can
    be found) while the student's code is probed is recorded and refused, like calling one of them."""
    if event in OBJECT_WALKS and _WATCHING[0]:
        ORACLES_SEEN.add(event)
        raise OracleRefused(refusal(event))


def arm_tripwires() -> list[str]:
    """Wrap, in place, the ready implementations of the exercises: every optimizer and learning-rate
    scheduler class of ``torch.optim`` (their ``__init__``), the functions of its optimizer modules, the fused
    optimizer kernels on ``torch``, ``torch.nn.init``'s named initializers and the course library's helpers
    that initialize networks or build optimizers (``COURSE_ORACLES``). Called before any student code, so
    every later reference, however spelled, reaches the wrapper; called while the probe runs the student's
    code, a wrapper records its name and raises ``OracleRefused`` (torch's modules initializing themselves
    excepted), so delegating computes nothing; so does walking the garbage collector for the originals.
    Return the names wired."""
    import importlib
    import inspect

    import torch.nn.init
    import torch.optim
    import torch.optim.lr_scheduler

    wired, wrappers = [], {}

    def wire(namespace: Any, name: str, fn: Callable, label: str) -> None:
        if id(fn) not in wrappers:
            wrappers[id(fn)] = _tripwire(label, fn)
            wired.append(label)
        setattr(namespace, name, wrappers[id(fn)])

    schedulers = torch.optim.lr_scheduler
    for module, base in ((torch.optim, torch.optim.Optimizer), (schedulers, schedulers.LRScheduler)):
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, base) and cls is not base and "__init__" in vars(cls):
                wire(cls, "__init__", cls.__init__, f"{module.__name__}.{name}")
    modules = [sys.modules[f"torch.optim.{m}"] for m in OPTIMIZER_MODULES if f"torch.optim.{m}" in sys.modules]
    for module in modules:  # the functional API, also where _functional re-exports it
        for name, fn in list(vars(module).items()):
            home = fn.__module__ == module.__name__ if inspect.isfunction(fn) else False
            if home or (inspect.isfunction(fn) and id(fn) in wrappers):  # _functional re-exports the modules' own
                wire(module, name, fn, f"{fn.__module__}.{fn.__name__}")
    for name in FUSED_KERNELS:
        if hasattr(torch, name):
            wire(torch, name, getattr(torch, name), f"torch.{name}")
    for name, fn in list(vars(torch.nn.init).items()):
        if inspect.isfunction(fn) and name.startswith(("xavier", "kaiming", "orthogonal")):
            wire(torch.nn.init, name, fn, f"torch.nn.init.{name}")
    for cls in vars(torch.nn).values():  # the layers' own initialization calls stay allowed
        if inspect.isclass(cls) and issubclass(cls, torch.nn.Module):
            for name in ("reset_parameters", "_reset_parameters"):
                method = vars(cls).get(name)
                if inspect.isfunction(method):
                    _INTERNAL_CALLERS.add(method.__code__)
    for module_name, names in COURSE_ORACLES.items():  # imported now (milliseconds), so every importer gets the wires
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            wire(module, name, getattr(module, name), f"{module_name}.{name}")
    sys.addaudithook(_refuse_object_walks)  # cannot be removed; a wrapper's closure is left to the source flags
    return wired


# the course library's ready implementations (its optimizer helpers also reach torch.optim's wired classes)
COURSE_ORACLES = {"course_lib.depth": ("orthogonal_", "lsuv_", "init_weights"),
                  "course_lib.practice": ("make_optimizer", "make_scheduler", "scheduler_factory", "schedule_values"),
                  # the property engine's references and simulated mistakes (a correct answer among them)
                  "course_lib.checks.optimizers": ("oracle", "simulate"),
                  "course_lib.checks.adamw": ("oracle", "simulate"),
                  "course_lib.checks.derivation": ("_variants", "_ratio", "_backward_product", "_relu_layer"),
                  "course_lib.checks.deeper": ("schedule_value", "expected_schedule", "_mistake")}
OPTIMIZER_MODULES = ("sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "asgd",
                     "rprop", "lbfgs", "sparse_adam", "_functional")
FUSED_KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_")


PROBES = RUNNERS  # the runner of each kind of exercise (course_lib.checks.runner, shared with the self-check)


def _run_all(obj: Any, spec: Dict[str, Any], seed: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Every run of one exercise on the student's code, marked as the student's code for the tripwires."""
    return runner.run_exercise(obj, spec, seed, guard=_student_code)


def _write(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> None:
    """Write a safetensors file atomically (temporary file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tmp = f"{path}.{os.getpid()}.tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def record(exercise: str, obj: Any) -> None:
    """Feed ``obj`` the grader's inputs for ``exercise`` and record its outputs; a no-op outside grading.

    It never raises, but for the interrupt that the cell's time limit sends: once the finished runs are
    written, that goes on, so the cell stops (its visible tests would hang the same way) and the next runs.
    """
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


__all__ = ["record", "encode_tensor", "decode_tensor", "arm_tripwires", "ORACLES_SEEN", "OracleRefused"]
