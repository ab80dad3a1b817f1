"""Judging: verdicts computed outside the sandbox. Takes an assignment and a seed, then what the probe
recorded; gives each exercise's challenge inputs and its verdict: points as a weighted set of named
properties, each with a message the student can act on.

``make_challenge(assignment, seed)`` draws the inputs (plain JSON, written for the probe to read);
``judge(assignment, challenge, results_dir)`` loads ``<exercise>.safetensors`` from ``results_dir``,
recomputes the expected values with PyTorch and scores each exercise as a weighted set of named
properties (``ExerciseVerdict.fraction`` is the share of its points earned).

Challenge (JSON)::

    {"format": 1, "assignment": "optimization", "seed": 123,
     "exercises": {"<exercise key>": {"kind": "initializer" | "optimizer" | "ratio" | "schedule",
                                      "runs": {"<run>": {...}}}}}

    initializer run: {"act_fn", "input_size", "hidden_sizes", "num_classes", "kwargs": {"std": ...} or {},
                      "parameters": {"layers.0.weight": [fan_out, fan_in], "layers.0.bias": [fan_out], ...}}
    optimizer run:   {"kwargs": {"lr": ..., ...}, "steps": 20-40,
                      "params": [{"init": T, "start": first step with a gradient (1-based) or null (never),
                                  "grads": T of shape [steps, *shape] (rows before "start" unused)}]}
    ratio run:       {"first": T (weight [d_y, d_x]), "second": T (grad_output [B, d_y] or x [B, d_x])}
    schedule run:    {"total_steps", "warmup_steps", "base_lr", "min_lr" (absent: not passed), "steps": [0, 1, ...]}
    An initializer run with a "batch": T [B, input_size] passes it after the model (lsuv_init(model, batch)).
    T = {"dtype": "float32" | "float64", "shape": [...], "b64": base64 of the little-endian values}

Results (``<exercise>.safetensors``, written by grading.sandbox.probe.record): tensors named ``<run>/<name>``:
initializer ``<run>/layers.0.weight`` (float32, the parameter's shape), optimizer ``<run>/<k>`` (float64,
[steps, *shape], the k-th parameter after every step), ratio ``<run>/value`` (float64 scalar), schedule
``<run>/value`` (float64, one per step); metadata
``{"exercise": key, "status": "ok" | "error", "errors": JSON {run: message}, "error": first message}``.
A run that raised has no tensors; the properties that need it fail with its error.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from course_lib.checks import catalogue, initializers
from course_lib.checks.catalogue import KINDS, expected_tensors, single_thread, verdict_on
from course_lib.checks.core import (
    ExerciseVerdict,
    PropertyVerdict,
    ResultError,
    failed_verdict,
    load_results,
    missing_note,
)
from grading.sandbox.tripwires import AGAIN_EVENT

__all__ = ["make_challenge", "judge", "ExerciseVerdict", "PropertyVerdict", "KINDS", "property_weights",
           "touched_exercises", "TOUCHED_NOTE", "checks_version", "lower_of", "ALONE_NOTE", "recorded_again",
           "AGAIN_NOTE"]

CHALLENGE_FORMAT = 1

def make_challenge(assignment: str, seed: int) -> dict:
    """The grader's inputs for every exercise of ``assignment`` (JSON-able; a function of ``seed`` only)."""
    rng = random.Random(seed)
    exercises = {key: module.challenge(key, random.Random(rng.randrange(2**63)))
                 for key, module in KINDS[assignment].items()}
    return {"format": CHALLENGE_FORMAT, "assignment": assignment, "seed": int(seed) % 2**31,
            "exercises": exercises}


def property_weights(assignment: str, key: str, challenge: dict) -> Dict[str, float]:
    """name -> weight of an exercise's properties (from judging an empty result)."""
    return catalogue.property_weights(assignment, key, challenge["exercises"][key])


def judge_exercise(assignment: str, key: str, challenge: dict, results_dir: Path) -> ExerciseVerdict:
    """The verdict on one exercise; a missing or malformed result file fails every property with a note.

    Never raises: any other error while judging (a result file made to break the loader, say) fails every
    property too, and the verdict's ``review`` names the error for a person to look at."""
    with single_thread():
        try:
            return _judge_exercise(assignment, key, challenge, results_dir)
        except Exception as error:  # a crash must score 0, never leave another score standing
            verdict = failed_verdict(key, property_weights(assignment, key, challenge),
                                     "the grader could not judge the results recorded for this exercise; it scores "
                                     "0 until your instructor has looked at it")
            verdict.review = f"grader error on {key}: {type(error).__name__} while judging its results (scored 0)"
            return verdict


def _judge_exercise(assignment: str, key: str, challenge: dict, results_dir: Path) -> ExerciseVerdict:
    spec = challenge["exercises"][key]
    path = Path(results_dir) / f"{key}.safetensors"
    try:
        results = load_results(path, key, expected_tensors(spec))
    except ResultError as error:
        note = missing_note(Path(results_dir), key) if str(error) == "missing" else str(error)
        return failed_verdict(key, property_weights(assignment, key, challenge), note)
    verdict = verdict_on(assignment, key, spec, results)
    if results.oracles:  # refused in the kernel (the runs that reached them computed nothing) and flagged
        verdict.review = verdict.review or (f"{key} called {', '.join(results.oracles[:3])} while the grader ran it "
                                            "(delegation, seen at run time)")
    return verdict


def checks_version() -> str:
    """A short hash of the judging code (this module and course_lib.checks): verdicts record the checks that
    produced them."""
    digest = hashlib.sha256()
    for path in [Path(__file__)] + sorted(Path(initializers.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


TOUCHED_NOTE = ("your code tried to read or change this exercise's result file outside the grader's probe; "
                "it scores 0 until your instructor has looked at it")


AGAIN_NOTE = ("your code called the grader's probe to record this exercise a second time; it scores 0 until "
              "your instructor has looked at it")


def recorded_again(assignment: str, refused: Sequence[Mapping]) -> list[str]:
    """The exercises the probe was asked to record a second time in one process (``AGAIN_EVENT`` in the guard's
    log): only the student's code calls it again."""
    again = {str(p) for entry in refused if entry.get("event") == AGAIN_EVENT for p in entry.get("path", [])}
    return [key for key in KINDS[assignment] if key in again]


def touched_exercises(assignment: str, refused: Sequence[Mapping]) -> list[str]:
    """The exercises whose result file a refused access named (``<key>.safetensors``, temporary files too)."""
    names = [os.path.basename(str(p)) for entry in refused for p in entry.get("path", [])]
    return [key for key in KINDS[assignment] if any(n.startswith(f"{key}.safetensors") for n in names)]


def _judge_run(assignment: str, challenge: dict, results_dir: Path,
               refused: Sequence[Mapping]) -> Dict[str, ExerciseVerdict]:
    """The verdicts on one run's result files; an exercise whose result file the run's guard refused access to,
    or that the probe was asked to record a second time, scores 0, with a review flag."""
    verdicts = {key: judge_exercise(assignment, key, challenge, Path(results_dir)) for key in KINDS[assignment]}
    touched = touched_exercises(assignment, refused)
    for key in touched:
        verdicts[key] = failed_verdict(key, property_weights(assignment, key, challenge), TOUCHED_NOTE)
        verdicts[key].review = f"evidence of {key} touched outside the probe (scored 0)"
    for key in (k for k in recorded_again(assignment, refused) if k not in touched):
        verdicts[key] = failed_verdict(key, property_weights(assignment, key, challenge), AGAIN_NOTE)
        verdicts[key].review = f"{key} recorded a second time by the notebook's own code (scored 0)"
    return verdicts


ALONE_NOTE = "when your answer cells ran on their own (the notebook's other code left out): "


def lower_of(key: str, notebook: ExerciseVerdict, alone: ExerciseVerdict) -> ExerciseVerdict:
    """Of an exercise's verdicts on the notebook run and on the answer cells alone, the one that earns less (the
    notebook's on a tie); a review flag when the answer cells alone earn less."""
    if alone.fraction >= notebook.fraction - 1e-9:
        notebook.review = notebook.review or alone.review
        return notebook
    alone.note = ALONE_NOTE + (alone.note or "some of the properties below failed")
    alone.review = alone.review or (f"{key} earned {notebook.fraction:.0%} in the notebook but {alone.fraction:.0%} "
                                    "with its answer cells alone (scored the lower)")
    return alone


def judge(assignment: str, challenge: dict, results_dir: Path, refused: Sequence[Mapping] = (),
          alone_dir: Optional[Path] = None, alone_refused: Sequence[Mapping] = ()) -> Dict[str, ExerciseVerdict]:
    """The verdict on every exercise of ``assignment``, keyed by exercise. ``refused``: what the kernel's guard
    refused (``grading.running.evidence.refused_accesses``): an exercise whose result file it names scores 0,
    with a review flag. ``alone_dir`` and ``alone_refused``: the same of the answer cells alone
    (``grading.running.alone``); each exercise then keeps the lower of its two verdicts (``lower_of``)."""
    if challenge.get("assignment") != assignment:
        raise ValueError(f"the challenge is for {challenge.get('assignment')!r}, not {assignment!r}")
    verdicts = _judge_run(assignment, challenge, results_dir, refused)
    if alone_dir is None:
        return verdicts
    alone = _judge_run(assignment, challenge, alone_dir, alone_refused)
    return {key: lower_of(key, verdict, alone[key]) for key, verdict in verdicts.items()}
