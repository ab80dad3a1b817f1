"""Check an exercise in the notebook by the grader's own named properties, on inputs drawn fresh at each run.

    from course_lib.self_check import self_check
    self_check(xavier_init)

prints one line per property (pass or fail, its share of the exercise's points) and, for each failure, what
to change. The properties, their weights and the messages are the grader's (``course_lib.checks``); the grader
judges them again on inputs of its own, drawn when it grades. In the grader's kernel the self-check does
nothing: the hidden tests record the evidence there.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any, Optional, Tuple

from course_lib.checks import EXERCISE_NAMES
from course_lib.checks.catalogue import (
    KINDS,
    expected_tensors,
    find_exercise,
    is_not_started,
    not_started_line,
    property_weights,
    single_thread,
    verdict_on,
)
from course_lib.checks.core import ExerciseVerdict, ResultError, failed_verdict, validated_results
from course_lib.checks.runner import run_exercise, run_metadata

MESSAGE_INDENT = " " * 14


def check_on(assignment: str, key: str, implementation: Any, spec: dict, seed: int) -> ExerciseVerdict:
    """The verdict on ``implementation`` for the exercise ``spec`` (a challenge's entry), run in this process
    exactly as the grader's probe runs it in the student's kernel."""
    with single_thread():  # small tensors, as in the grader
        tensors, errors = run_exercise(implementation, spec, seed)
    try:
        results = validated_results(tensors, run_metadata(key, errors), key, expected_tensors(spec))
    except ResultError as error:
        return failed_verdict(key, property_weights(assignment, key, spec), str(error))
    return verdict_on(assignment, key, spec, results)


def report(verdict: ExerciseVerdict, name: str, seed: int) -> str:
    """The self-check's table: a line per property (pass or FAIL, share of the points, name), then what to
    change under each failure; one line for an exercise not started."""
    if is_not_started(verdict):
        return f"{name}: {verdict.note}"
    total = sum(p.weight for p in verdict.properties) or 1.0
    passed = sum(p.passed for p in verdict.properties)
    lines = [f"{name}: {passed} of {len(verdict.properties)} properties hold ({100 * verdict.fraction:.0f} % of its "
             f"points), on inputs drawn with seed {seed}"]
    for prop in verdict.properties:
        lines.append(f"  {'pass' if prop.passed else 'FAIL'}  {100 * prop.weight / total:3.0f} %  {prop.name}")
        if not prop.passed and prop.message:
            lines.append(MESSAGE_INDENT + prop.message)
    if verdict.note and passed < len(verdict.properties) and not any(p.message for p in verdict.properties):
        lines.append(MESSAGE_INDENT + verdict.note)
    if passed == len(verdict.properties):
        lines.append("  All properties hold. The grader checks them again on inputs of its own.")
    return "\n".join(lines)


class SelfCheckFailed(AssertionError):
    """Some property of the exercise does not hold (the table printed above says which and why)."""


def fresh_verdict(implementation: Any, exercise: Optional[str] = None, seed: Optional[int] = None,
                  ) -> Tuple[ExerciseVerdict, str, int]:
    """(verdict, exercise name, seed): ``implementation`` judged by the grader's properties on inputs drawn with
    ``seed`` (a fresh one if None). ``exercise`` defaults to the implementation's name."""
    name = exercise or getattr(implementation, "__name__", "")
    assignment, key = find_exercise(name)
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    spec = KINDS[assignment][key].challenge(key, random.Random(seed))
    return check_on(assignment, key, implementation, spec, seed), name, seed


def self_check(implementation: Any, exercise: Optional[str] = None, seed: Optional[int] = None,
               raise_on_failure: bool = True) -> None:
    """Judge ``implementation`` (your function or class) by the grader's properties on fresh inputs and print
    the table; raise SelfCheckFailed after it if a property fails (an exercise not started prints its one line
    and raises nothing). ``exercise`` defaults to the implementation's name; ``seed`` repeats a draw. Does
    nothing in the grader's kernel."""
    if os.environ.get("NBGRADER_EXECUTION"):
        print("self-check skipped while grading (the hidden tests record your results)")
        return
    verdict, name, seed = fresh_verdict(implementation, exercise, seed)
    print(report(verdict, name, seed))
    failing = sum(not p.passed for p in verdict.properties)
    if raise_on_failure and failing and not is_not_started(verdict):
        raise SelfCheckFailed(f"{name}: {failing} of {len(verdict.properties)} properties do not hold "
                              f"(the table above says which, and what to change)")


def _unfinished_exercise(tb) -> Optional[str]:
    """The exercise whose body raised, from the innermost frame of a traceback: a function named like an
    exercise, or a method of a class named like one (SGD.update_param)."""
    names = {name for names in EXERCISE_NAMES.values() for name in names.values()}
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    frame = tb.tb_frame
    owner = frame.f_locals.get("self")
    for candidate in (frame.f_code.co_name, *(cls.__name__ for cls in type(owner).__mro__ if owner is not None)):
        if candidate in names:
            return candidate
    return None


def name_unfinished_exercises() -> None:
    """In IPython (Jupyter, Colab): a cell that stops at an exercise still raising the release's
    NotImplementedError prints one line naming it instead of a traceback (the cell still stops there). Other
    errors keep their traceback. Does nothing outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def one_line(shell, etype, value, tb, tb_offset=None):
        name = _unfinished_exercise(tb)
        if name is None:
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        print(f"{not_started_line(name)} (this cell needs it)", file=sys.stderr)
        return None

    shell.set_custom_exc((NotImplementedError,), one_line)
