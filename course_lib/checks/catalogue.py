"""The graded exercises, what each is called in the notebooks, which module judges it, and the verdict on what a
run of it recorded: the part of judging that the grader and the self-check share.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Dict, Iterator, Tuple

import torch

from . import EXERCISE_NAMES, deeper, derivation, initializers, optimizers
from .core import ExerciseVerdict, Results, failed_verdict

# Exercise kind (a challenge's "kind") -> the module that knows its expected shapes.
_BY_KIND: Dict[str, ModuleType] = {"initializer": initializers, "optimizer": optimizers, "ratio": derivation,
                                   "schedule": deeper}
# Assignment -> exercise key -> the module that draws its inputs and judges it.
KINDS: Dict[str, Dict[str, ModuleType]] = {
    "initialization": {"var_init": initializers, "equal_var_init": initializers, "xavier_init": initializers,
                       "backward_variance_ratio": derivation, "relu_variance_ratio": derivation,
                       "kaiming_init": initializers},
    "optimization": {"sgd": optimizers, "sgd_momentum": optimizers, "adam": optimizers},
    "deeper": {"orthogonal_init": deeper, "lsuv_init": deeper, "adamw": deeper, "warmup_cosine_lr": deeper},
}


def find_exercise(name_or_key: str) -> Tuple[str, str]:
    """(assignment, key) of an exercise given its key ("sgd_momentum") or its name in the notebook
    ("SGDMomentum"); ValueError naming the exercises if there is none."""
    for assignment, names in EXERCISE_NAMES.items():
        for key, name in names.items():
            if name_or_key in (key, name):
                return assignment, key
    known = ", ".join(name for names in EXERCISE_NAMES.values() for name in names.values())
    raise ValueError(f"no graded exercise is called {name_or_key!r}; the exercises are {known}")


def expected_tensors(spec: dict) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """The names, shapes and dtypes a run of the exercise ``spec`` must record."""
    return _BY_KIND[spec["kind"]].expected_tensors(spec)


def property_weights(assignment: str, key: str, spec: dict) -> Dict[str, float]:
    """name -> weight of an exercise's properties (from judging an empty result)."""
    props, _ = KINDS[assignment][key].judge(key, spec, Results({}, {}, "no result"))
    return {p.name: p.weight for p in props}


NOT_STARTED = "not implemented yet"  # how every note on an exercise still raising NotImplementedError begins


def not_started_line(name: str) -> str:
    """The one line for the exercise ``name`` (as the notebook calls it) whose code still raises
    the release's NotImplementedError."""
    return f"{NOT_STARTED}: fill in `{name}` above"


def not_started_note(assignment: str, key: str) -> str:
    """The one line for an exercise whose code still raises the release's NotImplementedError."""
    return not_started_line(EXERCISE_NAMES[assignment][key])


def is_not_started(verdict: ExerciseVerdict) -> bool:
    """Whether a verdict is the one line for an exercise not started."""
    return verdict.note.startswith(NOT_STARTED)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread (small tensors: threads only contend with the other graders)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def verdict_on(assignment: str, key: str, spec: dict, results: Results) -> ExerciseVerdict:
    """The verdict on what a run of the exercise recorded: one line if it was not started or produced nothing,
    else its named properties."""
    if results.tensors:
        return KINDS[assignment][key].verdict(key, spec, results)
    if results.error.split(":", 1)[0].strip() == "NotImplementedError":
        note = not_started_note(assignment, key)
    else:
        note = f"your code raised {results.error}" if results.error else "your code produced no result"
    return failed_verdict(key, property_weights(assignment, key, spec), note)
