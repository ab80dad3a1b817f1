"""The answer cells alone (grading.running.alone): a real sandboxed run, judged as the grader judges it."""

from __future__ import annotations

import copy
import os
import textwrap

import nbformat
import pytest

from grading import judging
from grading.authoring.release import release_path
from grading.authoring.solutions import nbgrader_cells
from grading.course import EXERCISES, grade_id, is_solution
from grading.judging import ExerciseVerdict, PropertyVerdict
from grading.running.alone import AloneRun
from grading.running.workspace import sandbox_settings, tool_env
from grading.sandbox.launcher import bwrap_available
from grading.settings import GradingSettings

needs_root_bwrap = pytest.mark.skipif(os.geteuid() != 0 or not bwrap_available(),
                                      reason="needs root (cgroups, sandbox user) and a working bubblewrap")

# The reference SGD, defined only when a ready implementation called at the cell's top level computes nothing.
SGD_IF_REFUSED = textwrap.dedent('''
    import torch
    try:
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        refused = "no"
    except Exception as error:
        refused = type(error).__name__
    if refused == "OracleRefused":
    {reference}
''')
# An Adam that hands its steps to torch.optim.Adam, recorded by the answer cell itself through the driver's own
# record function (reached by walking up the frames), which then clears the driver's remaining steps.
FRAME_WALKING_ADAM = textwrap.dedent('''
    import sys
    import torch

    class Delegate:  # no Adam: the driver's own record of it would raise NameError, without the oracle's flag
        def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
            self.ready = torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps)

        def zero_grad(self):
            self.ready.zero_grad()

        def step(self):
            self.ready.step()

    frame = sys._getframe()
    while frame is not None and "own_record" not in frame.f_locals:
        frame = frame.f_back
    frame.f_locals["own_record"]("adam", Delegate)
    frame.f_locals["steps"].clear()
''')


def _with_answers(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def _judged_alone(tmp_path, graded: nbformat.NotebookNode, release: nbformat.NotebookNode, limit_s: float,
                  timeout_s: float) -> tuple[AloneRun, dict[str, ExerciseVerdict]]:
    """Run ``graded``'s optimization answer cells alone (each step ``limit_s``, the run ``timeout_s``), judge
    the run as the grader does, close it; return the run and the verdicts."""
    challenge = judging.make_challenge("optimization", 11)
    exercises = EXERCISES["optimization"]
    run = AloneRun.start(sandbox_settings(GradingSettings(workspace=tmp_path / "ws")), graded, release, exercises,
                         challenge, limit_s, timeout_s, tool_env())
    try:
        folder = run.wait([e.key for e in exercises])
        return run, judging.judge("optimization", challenge, folder, run.refused)
    finally:
        run.close()


@needs_root_bwrap
def test_the_answer_cells_alone_reach_no_ready_implementation(tmp_path):
    """In the run of the answer cells alone, a ready implementation computes nothing from the first statement
    on (in the kernel, only while the probe records), so only an answer's own arithmetic is recorded: the SGD
    defined where torch.optim.SGD was refused at the top level earns its points; the Adam that hands its steps
    to torch.optim.Adam none, flagged, though its cell records it itself through the driver's frame; the
    untouched SGDMomentum is "not implemented yet"."""
    release = nbformat.read(str(release_path("optimization")), as_version=4)
    reference = textwrap.indent(nbgrader_cells("optimization", "solution")["sgd"], "    ")
    graded = _with_answers(release, {"sgd": SGD_IF_REFUSED.format(reference=reference),
                                     "adam": FRAME_WALKING_ADAM})
    run, verdicts = _judged_alone(tmp_path, graded, release, limit_s=30, timeout_s=120)
    assert run.notes == [] and run.refused == []
    assert not run.io.exists()
    assert verdicts["sgd"].fraction == 1.0
    assert verdicts["adam"].fraction == 0.0 and "adam called torch.optim.Adam" in verdicts["adam"].review
    assert verdicts["sgd_momentum"].fraction == 0.0 and "not implemented yet" in verdicts["sgd_momentum"].note


def _verdict(fraction: float, note: str = "", review: str = "") -> ExerciseVerdict:
    return ExerciseVerdict("adam", [PropertyVerdict("all", 1.0, fraction == 1.0, note)], fraction, note, review)


def test_the_lower_of_the_two_runs_counts():
    """Each exercise keeps the verdict of the run that earns less: the notebook's on a tie (its review flag
    kept, or the other run's); the answer cells alone's when they earn less, its note saying so and a flag."""
    kept = judging.lower_of("adam", _verdict(1.0), _verdict(1.0, review="adam called torch.optim.Adam"))
    assert (kept.fraction, kept.note, kept.review) == (1.0, "", "adam called torch.optim.Adam")
    notebook = _verdict(0.5, "a note of the notebook run")
    assert judging.lower_of("adam", notebook, _verdict(1.0)) is notebook
    kept = judging.lower_of("adam", _verdict(1.0), _verdict(0.0, "NameError: name 'x' is not defined"))
    assert kept.fraction == 0.0
    assert kept.note == judging.ALONE_NOTE + "NameError: name 'x' is not defined"
    assert kept.review == "adam earned 100% in the notebook but 0% with its answer cells alone (scored the lower)"


SWALLOWS_INTERRUPTS = textwrap.dedent('''
    import time
    while True:
        try:
            time.sleep(0.2)
        except BaseException:  # a clumsy bare except: the time limit's interrupt is swallowed too
            pass
''')


@needs_root_bwrap
def test_a_statement_that_swallows_its_interrupt_ends_the_answer_cells_alone_there(tmp_path):
    """A statement still running one time limit after its interrupt (its code caught it) ends the run there
    instead of holding the submission to its wall-clock limit: the exercise recorded before it keeps its
    points, the ones after score 0 (in the kernel, every later cell would wait behind it), and the note says
    why."""
    release = nbformat.read(str(release_path("optimization")), as_version=4)
    solutions = nbgrader_cells("optimization", "solution")
    graded = _with_answers(release, {**solutions, "sgd_momentum": solutions["sgd_momentum"] + SWALLOWS_INTERRUPTS})
    run, verdicts = _judged_alone(tmp_path, graded, release, limit_s=2, timeout_s=300)
    assert [note.split(":")[0] for note in run.notes] == ["ERROR"], run.notes
    assert "past its time limit's interrupt" in run.notes[0] and "stopped there" in run.notes[0]
    assert verdicts["sgd"].fraction == 1.0
    assert verdicts["sgd_momentum"].fraction == 0.0 and verdicts["adam"].fraction == 0.0
