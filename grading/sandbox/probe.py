"""Feed an exercise the grader's inputs and record what comes out; runs inside the student's kernel.

Each hidden test cell holds one line, ``from grading.sandbox.probe import record; record("adam", Adam)``.
Outside grading (``COURSE_GRADING_CHALLENGE`` unset) it does nothing. While grading, it reads the
challenge (inputs drawn by the trusted grader), runs the student's function or class on them and writes
the outputs to ``$COURSE_GRADING_RESULTS/<exercise>.safetensors``. It holds no secret and computes no
verdict: the grader compares the recorded numbers with PyTorch outside the sandbox. It never raises and
prints nothing; whatever the student's code prints or warns while probed is discarded.

Challenge tensors are JSON objects ``{"dtype": "float64", "shape": [2, 3], "b64": <little-endian bytes>}``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import random
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, Tuple

import torch

CHALLENGE_ENV, RESULTS_ENV = "COURSE_GRADING_CHALLENGE", "COURSE_GRADING_RESULTS"
MAX_ERROR_CHARS = 300
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def encode_tensor(t: torch.Tensor) -> Dict[str, Any]:
    """A float32/float64 tensor as a JSON-able dict (exact: raw little-endian bytes in base64)."""
    name = {v: k for k, v in _DTYPES.items()}[t.dtype]
    data = t.detach().cpu().contiguous().numpy().astype(f"<f{t.element_size()}").tobytes()
    return {"dtype": name, "shape": list(t.shape), "b64": base64.b64encode(data).decode("ascii")}


def decode_tensor(d: Dict[str, Any]) -> torch.Tensor:
    """The tensor that ``encode_tensor`` encoded (a fresh, writable copy)."""
    raw = bytearray(base64.b64decode(d["b64"]))
    flat = torch.frombuffer(raw, dtype=_DTYPES[d["dtype"]]) if raw else torch.zeros(0, dtype=_DTYPES[d["dtype"]])
    return flat.reshape(d["shape"]).clone()


def error_text(error: BaseException) -> str:
    """``Type: message`` of an exception, capped."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class _Discard:
    """A write-only stream that drops everything (the student's prints while probed)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


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


def arm_tripwires() -> list[str]:
    """Wrap, in place, the ready implementations of the exercises: every optimizer and learning-rate
    scheduler class of ``torch.optim`` (their ``__init__``), the functions of its optimizer modules, the fused
    optimizer kernels on ``torch``, ``torch.nn.init``'s named initializers and the course library's helpers
    that initialize networks or build optimizers (``COURSE_ORACLES``). Called before any student code, so
    every later reference, however spelled, reaches the wrapper; called while the probe runs the student's
    code, a wrapper records its name and raises ``OracleRefused`` (torch's modules initializing themselves
    excepted), so delegating computes nothing. Return the names wired."""
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
    return wired


# the course library's ready implementations (its optimizer helpers also reach torch.optim's wired classes)
COURSE_ORACLES = {"course_lib.depth": ("orthogonal_", "lsuv_", "init_weights"),
                  "course_lib.practice": ("make_optimizer", "make_scheduler", "scheduler_factory", "schedule_values")}
OPTIMIZER_MODULES = ("sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "asgd",
                     "rprop", "lbfgs", "sparse_adam", "_functional")
FUSED_KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_")


# --- Initializers: a fresh network per run, filled with 3.0 / 0.5 so an untouched layer shows ----------------


def probe_initializer(init: Callable, run: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Initialize a BaseNetwork of the run's architecture with ``init``; return its parameters (float32).

    A run with a ``batch`` (data-dependent initializers such as LSUV) calls ``init(model, batch, **kwargs)``.
    """
    from course_lib.models import BaseNetwork

    model = BaseNetwork(run["act_fn"], input_size=run["input_size"], hidden_sizes=tuple(run["hidden_sizes"]),
                        num_classes=run["num_classes"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(0.5 if name.endswith("bias") else 3.0)
    batch = (decode_tensor(run["batch"]),) if "batch" in run else ()
    with _student_code():
        init(model, *batch, **run["kwargs"])
    params = dict(model.named_parameters())
    return {name: params[name].detach().to("cpu", torch.float32).clone() for name in run["parameters"]}


# --- Optimizers: float64 parameters, the grader's gradients, the trajectory after every step ------------------


def probe_optimizer(optimizer_class: type, run: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Run the student's optimizer for the run's steps; return each parameter's trajectory [steps, *shape]."""
    specs = run["params"]
    params = [torch.nn.Parameter(decode_tensor(s["init"]).to(torch.float64)) for s in specs]
    grads = [decode_tensor(s["grads"]).to(torch.float64) if s.get("start") else None for s in specs]
    with _student_code():
        optimizer = optimizer_class(params, **run["kwargs"])
    steps = run["steps"]
    trajectory = [torch.empty((steps, *p.shape), dtype=torch.float64) for p in params]
    for step in range(1, steps + 1):
        with _student_code():
            optimizer.zero_grad()
        for p, spec, g in zip(params, specs, grads):
            if spec.get("start") and step >= spec["start"]:
                p.grad = g[step - 1].clone()
        with _student_code():
            optimizer.step()
        for k, p in enumerate(params):
            trajectory[k][step - 1] = p.detach().to("cpu", torch.float64).reshape(p.shape)
    return {str(k): t for k, t in enumerate(trajectory)}


# --- Derivation functions: one number per run -------------------------------------------------------------


def probe_ratio(function: Callable, run: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Call ``function(first, second)`` on the run's two tensors; return the number (float64)."""
    with _student_code():
        value = float(function(decode_tensor(run["first"]), decode_tensor(run["second"])))
    return {"value": torch.tensor(value, dtype=torch.float64)}


# --- Schedules: the learning rate at every step of one schedule ---------------------------------------------


def probe_schedule(function: Callable, run: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Call ``function(step, total_steps, warmup_steps, base_lr[, min_lr=...])`` at every step; the values."""
    args = (int(run["total_steps"]), int(run["warmup_steps"]), float(run["base_lr"]))
    kwargs = {"min_lr": float(run["min_lr"])} if "min_lr" in run else {}
    with _student_code():
        values = [float(function(int(step), *args, **kwargs)) for step in run["steps"]]
    return {"value": torch.tensor(values, dtype=torch.float64)}


PROBES: Dict[str, Callable[[Any, Dict[str, Any]], Dict[str, torch.Tensor]]] = {
    "initializer": probe_initializer,
    "optimizer": probe_optimizer,
    "ratio": probe_ratio,
    "schedule": probe_schedule,
}


def _run_all(obj: Any, spec: Dict[str, Any], seed: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Every run of one exercise, each on its own: (tensors named run/name, {run: error})."""
    tensors: Dict[str, torch.Tensor] = {}
    errors: Dict[str, str] = {}
    probe = PROBES[spec["kind"]]
    for index, (run_name, run) in enumerate(spec["runs"].items()):
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(_Discard()), \
                    contextlib.redirect_stderr(_Discard()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(seed + index)
                random.seed(seed + index)
                out = probe(obj, run)
            for name, t in out.items():
                tensors[f"{run_name}/{name}"] = t.detach().cpu().contiguous().clone()
        except KeyboardInterrupt:  # the cell's time limit: keep what the finished runs recorded
            errors[run_name] = INTERRUPTED
            break
        except BaseException as error:  # noqa: B036 - the student's code may raise anything, even SystemExit
            errors[run_name] = error_text(error)
        finally:
            random.setstate(python_state)
    return tensors, errors


def _write(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> None:
    """Write a safetensors file atomically (temporary file in the same folder, then rename)."""
    from safetensors.torch import save_file

    tmp = f"{path}.{os.getpid()}.tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


INTERRUPTED = "KeyboardInterrupt: stopped (time limit?)"


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
            metadata = {"exercise": exercise, "status": "error" if errors else "ok",
                        "errors": json.dumps(errors), "oracles": json.dumps(sorted(ORACLES_SEEN))}
            if errors:
                metadata["error"] = next(iter(errors.values()))
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
