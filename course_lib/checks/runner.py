"""Feed an exercise its inputs and collect what comes out: one runner for the grader's probe (inside the
sandboxed kernel) and for the student's self-check (in the notebook).

``run_exercise(obj, spec, seed, guard)`` runs every run of one exercise's spec on the student's function
or class, each on its own, and returns the tensors (named ``run/name``) and each failed run's error. It
computes no verdict. ``guard`` is a context manager entered around each call into the student's code (the
probe marks the student's code with it; the self-check passes none).

Challenge tensors are JSON objects ``{"dtype": "float64", "shape": [2, 3], "b64": <little-endian bytes>}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import warnings
from typing import Any, Callable, ContextManager, Dict, Mapping, Sequence, Tuple

import torch

MAX_ERROR_CHARS = 300
INTERRUPTED = "KeyboardInterrupt: stopped (time limit?)"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
Guard = Callable[[], ContextManager]


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
    """A write-only stream that drops everything (the student's prints while run)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# --- Initializers: a fresh network per run, filled with 3.0 / 0.5 so an untouched layer shows ----------------


def run_initializer(init: Callable, run: Dict[str, Any], guard: Guard) -> Dict[str, torch.Tensor]:
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
    with guard():
        init(model, *batch, **run["kwargs"])
    params = dict(model.named_parameters())
    return {name: params[name].detach().to("cpu", torch.float32).clone() for name in run["parameters"]}


# --- Optimizers: float64 parameters, the grader's gradients, the trajectory after every step ------------------


def run_optimizer(optimizer_class: type, run: Dict[str, Any], guard: Guard) -> Dict[str, torch.Tensor]:
    """Run the student's optimizer for the run's steps; return each parameter's trajectory [steps, *shape]."""
    specs = run["params"]
    params = [torch.nn.Parameter(decode_tensor(s["init"]).to(torch.float64)) for s in specs]
    grads = [decode_tensor(s["grads"]).to(torch.float64) if s.get("start") else None for s in specs]
    with guard():
        optimizer = optimizer_class(params, **run["kwargs"])
    steps = run["steps"]
    trajectory = [torch.empty((steps, *p.shape), dtype=torch.float64) for p in params]
    for step in range(1, steps + 1):
        with guard():
            optimizer.zero_grad()
        for p, spec, g in zip(params, specs, grads):
            if spec.get("start") and step >= spec["start"]:
                p.grad = g[step - 1].clone()
        with guard():
            optimizer.step()
        for k, p in enumerate(params):
            trajectory[k][step - 1] = p.detach().to("cpu", torch.float64).reshape(p.shape)
    return {str(k): t for k, t in enumerate(trajectory)}


# --- Derivation functions: one number per run -------------------------------------------------------------


def run_ratio(function: Callable, run: Dict[str, Any], guard: Guard) -> Dict[str, torch.Tensor]:
    """Call ``function(first, second)`` on the run's two tensors; return the number (float64)."""
    with guard():
        value = float(function(decode_tensor(run["first"]), decode_tensor(run["second"])))
    return {"value": torch.tensor(value, dtype=torch.float64)}


# --- Schedules: the learning rate at every step of one schedule ---------------------------------------------


def run_schedule(function: Callable, run: Dict[str, Any], guard: Guard) -> Dict[str, torch.Tensor]:
    """Call ``function(step, total_steps, warmup_steps, base_lr[, min_lr=...])`` at every step; the values."""
    args = (int(run["total_steps"]), int(run["warmup_steps"]), float(run["base_lr"]))
    kwargs = {"min_lr": float(run["min_lr"])} if "min_lr" in run else {}
    with guard():
        values = [float(function(int(step), *args, **kwargs)) for step in run["steps"]]
    return {"value": torch.tensor(values, dtype=torch.float64)}


RUNNERS: Dict[str, Callable[[Any, Dict[str, Any], Guard], Dict[str, torch.Tensor]]] = {
    "initializer": run_initializer,
    "optimizer": run_optimizer,
    "ratio": run_ratio,
    "schedule": run_schedule,
}


def run_exercise(obj: Any, spec: Dict[str, Any], seed: int, guard: Guard = contextlib.nullcontext,
                 ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Every run of one exercise, each on its own (seeded ``seed + index``, prints and warnings dropped):
    (tensors named run/name, {run: error}). An interrupt stops the runs; it is recorded as ``INTERRUPTED``."""
    tensors: Dict[str, torch.Tensor] = {}
    errors: Dict[str, str] = {}
    runner = RUNNERS[spec["kind"]]
    for index, (run_name, run) in enumerate(spec["runs"].items()):
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(_Discard()), \
                    contextlib.redirect_stderr(_Discard()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(seed + index)
                random.seed(seed + index)
                out = runner(obj, run, guard)
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


def run_metadata(exercise: str, errors: Mapping[str, str], oracles: Sequence[str] = ()) -> Dict[str, str]:
    """The metadata a run of an exercise is recorded with (the probe's result file, the self-check's run)."""
    metadata = {"exercise": exercise, "status": "error" if errors else "ok", "errors": json.dumps(dict(errors)),
                "oracles": json.dumps(sorted(oracles))}
    if errors:
        metadata["error"] = next(iter(errors.values()))
    return metadata


RUNNER_NAMES = ("encode_tensor", "decode_tensor", "error_text", "_Discard", "run_initializer", "run_optimizer",
                "run_ratio", "run_schedule", "RUNNERS", "run_exercise", "run_metadata", "INTERRUPTED")  # the probe's
