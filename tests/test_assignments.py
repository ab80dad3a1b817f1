"""The graded cells of the two assignments, and the code they must accept.

The verdict machinery itself (properties, common mistakes, malformed results) is tested in
tests/test_verdicts.py; here: every test cell probes first and then runs cheap visible tests that the
solutions pass and typical mistakes fail; the seed tutorial's own PyTorch code and other correct readings
score full marks; and tampering with torch inside the student's process cannot change a verdict, since
the verdict is computed in another process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat
import pytest
import torch

from grading.authoring.solutions import ROOT, solution_namespace
from grading.course import EXERCISES, HIDDEN_BEGIN, HIDDEN_END, hidden_lines, is_solution, is_test, source_notebook
from grading.judging import judge_exercise, make_challenge
from tests.test_verdicts import MISTAKES as BASE_MISTAKES
from tests.test_verdicts import grade_in_process
from tests.test_verdicts_deeper import MISTAKES as DEEPER_MISTAKES

MISTAKES = {**BASE_MISTAKES, **DEEPER_MISTAKES}  # every exercise's common mistakes, the optional assignment's too

# The seed tutorial's PyTorch reference implementations, as published (Lippe, 2022).
SEED_REFERENCE = '''
def var_init(model, std=0.01):
    for name, param in model.named_parameters():
        param.data.normal_(mean=0.0, std=std)

def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.fill_(0)
        else:
            param.data.normal_(std=1.0 / math.sqrt(param.shape[1]))

def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.fill_(0)
        else:
            bound = math.sqrt(6) / math.sqrt(param.shape[0] + param.shape[1])
            param.data.uniform_(-bound, bound)

def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.fill_(0)
        elif name.startswith("layers.0"):  # the first layer does not have ReLU applied on its input
            param.data.normal_(0, 1 / math.sqrt(param.shape[1]))
        else:
            param.data.normal_(0, math.sqrt(2) / math.sqrt(param.shape[1]))

class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p_update = -self.lr * p.grad
        p.add_(p_update)

class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.param_momentum = {p: torch.zeros_like(p.data) for p in self.params}

    def update_param(self, p):
        self.param_momentum[p] = (1 - self.momentum) * p.grad + self.momentum * self.param_momentum[p]
        p_update = -self.lr * self.param_momentum[p]
        p.add_(p_update)

class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.param_step = {p: 0 for p in self.params}
        self.param_momentum = {p: torch.zeros_like(p.data) for p in self.params}
        self.param_2nd_momentum = {p: torch.zeros_like(p.data) for p in self.params}

    def update_param(self, p):
        self.param_step[p] += 1
        self.param_momentum[p] = (1 - self.beta1) * p.grad + self.beta1 * self.param_momentum[p]
        self.param_2nd_momentum[p] = (1 - self.beta2) * (p.grad) ** 2 + self.beta2 * self.param_2nd_momentum[p]
        bias_correction_1 = 1 - self.beta1 ** self.param_step[p]
        bias_correction_2 = 1 - self.beta2 ** self.param_step[p]
        p_2nd_mom = self.param_2nd_momentum[p] / bias_correction_2
        p_mom = self.param_momentum[p] / bias_correction_1
        p_lr = self.lr / (torch.sqrt(p_2nd_mom) + self.eps)
        p_update = -p_lr * p_mom
        p.add_(p_update)
'''

OTHER_CORRECT = {
    "kaiming_init": '''
def kaiming_init(model):  # PyTorch's own initializers, first layer found by position
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for position, layer in enumerate(linear):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="linear" if position == 0 else "relu")
        nn.init.zeros_(layer.bias)
''',
    "var_init": '''
def var_init(model, std=0.01):  # leaves the biases alone, uses torch.nn.init
    for layer in model.layers:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
''',
    "equal_var_init": '''
def equal_var_init(model):  # scaled torch.randn, through the model's own list of linear layers
    with torch.no_grad():
        for layer in model.linear_layers().values():
            layer.weight.copy_(torch.randn_like(layer.weight) / layer.in_features ** 0.5)
            layer.bias.zero_()
''',
}


def cells(assignment: str) -> list:
    """The cells of an assignment's source notebook."""
    return nbformat.read(source_notebook(assignment), as_version=4).cells


def test_checks_module_is_gone():
    """The in-process checks were replaced by the probe and the verdicts."""
    assert not (ROOT / "grading" / "checks.py").exists()
    for assignment in EXERCISES:
        assert "grading.checks" not in source_notebook(assignment).read_text()


@pytest.mark.parametrize("assignment", sorted(EXERCISES))
def test_test_cells_probe_first(assignment):
    """Each test cell: a one-line docstring, then the hidden probe line for its exercise, then visible tests."""
    tests = {c.metadata["nbgrader"]["grade_id"]: c for c in cells(assignment) if is_test(c)}
    solutions = {c.metadata["nbgrader"]["grade_id"] for c in cells(assignment) if is_solution(c)}
    assert set(tests) == {e.test_cell for e in EXERCISES[assignment]}
    assert solutions == {e.solution_cell for e in EXERCISES[assignment]}
    for exercise in EXERCISES[assignment]:
        lines = tests[exercise.test_cell].source.splitlines()
        assert re.fullmatch(r'""".{10,}"""', lines[0]), lines[0]
        assert lines[1] == HIDDEN_BEGIN and lines[3] == HIDDEN_END, lines[:4]
        assert hidden_lines(tests[exercise.test_cell].source) == [
            f'from grading.sandbox.probe import record; record("{exercise.key}", {exercise.name})']
        assert lines[4:] == ["from course_lib.self_check import self_check", "",
                             f"self_check({exercise.name})  # a table of the properties; an error after it if one "
                             "does not hold"], "the visible test is the self-check"


def visible_tests(assignment: str) -> dict:
    """Each test cell's source without its hidden block, by exercise key."""
    by_id = {c.metadata["nbgrader"]["grade_id"]: c.source for c in cells(assignment) if is_test(c)}
    out = {}
    for exercise in EXERCISES[assignment]:
        source = by_id[exercise.test_cell]
        out[exercise.key] = re.sub(rf"{HIDDEN_BEGIN}.*?{HIDDEN_END}\n", "", source, flags=re.S)
    return out


def notebook_namespace(assignment: str, sources=()) -> dict:
    """The solutions (and ``sources`` over them) with the notebooks' imports the test cells use."""
    namespace = solution_namespace(assignment)
    exec("from course_lib.models import BaseNetwork", namespace)
    for source in sources:
        exec(source, namespace)
    return namespace


@pytest.mark.parametrize("assignment", sorted(EXERCISES))
def test_visible_tests_pass_for_the_solutions(assignment):
    """The visible part of every test cell passes with the reference solutions (and the seed code)."""
    for sources in ([], [SEED_REFERENCE]):
        namespace = notebook_namespace(assignment, sources)
        torch.manual_seed(0)
        for key, source in visible_tests(assignment).items():
            try:
                exec(source, dict(namespace))
            except AssertionError as error:
                raise AssertionError(f"{key}: {error}") from error


@pytest.mark.parametrize("exercise", [e.key for exercises in EXERCISES.values() for e in exercises])
def test_visible_tests_catch_every_typical_mistake(exercise, capsys):
    """The visible test (the self-check, on fresh inputs) stops with SelfCheckFailed for every common mistake of
    its exercise, after a table naming the properties that mistake fails."""
    from course_lib.self_check import SelfCheckFailed

    assignment = next(a for a, es in EXERCISES.items() if exercise in {e.key for e in es})
    for mistake, (source, failing) in MISTAKES[exercise].items():
        namespace = notebook_namespace(assignment, [source])
        with pytest.raises(SelfCheckFailed):
            exec(visible_tests(assignment)[exercise], dict(namespace))
        table = capsys.readouterr().out
        assert failing and all(any("FAIL" in line and name in line for line in table.splitlines())
                               for name in failing), (mistake, table)


@pytest.mark.parametrize("assignment", sorted(EXERCISES))
def test_seed_reference_scores_full_marks(tmp_path, assignment):
    """The seed tutorial's own PyTorch implementations, pasted in, get full marks on every exercise."""
    for seed in range(3):
        verdicts = grade_in_process(tmp_path / str(seed), assignment, seed, [SEED_REFERENCE])
        assert all(v.fraction == 1.0 for v in verdicts.values()), {
            k: [(p.name, p.message) for p in v.properties if not p.passed] for k, v in verdicts.items()}


@pytest.mark.parametrize("exercise", sorted(OTHER_CORRECT))
def test_other_correct_variants_score_full_marks(tmp_path, exercise):
    """Kaiming via torch.nn.init, var_init leaving biases alone, randn-based equal variance: all 1.0."""
    for seed in range(3):
        verdict = grade_in_process(tmp_path / str(seed), "initialization", seed, [OTHER_CORRECT[exercise]],
                                   only=exercise)[exercise]
        assert verdict.fraction == 1.0, [(p.name, p.message) for p in verdict.properties]


def test_tampering_in_the_students_process_changes_no_verdict(tmp_path):
    """A wrong Adam that patches torch, the probe and the oracle in its own process still fails its property."""
    challenge = make_challenge("optimization", 5)
    (tmp_path / "results").mkdir()
    (tmp_path / "challenge.json").write_text(json.dumps(challenge))
    wrong_adam = MISTAKES["adam"]["no bias correction"][0]
    script = "\n".join([
        "import math, torch", "from torch import nn", "from course_lib.optim import OptimizerTemplate",
        wrong_adam,
        "torch.allclose = lambda *a, **k: True", "torch.optim.Adam = Adam",
        "torch.Tensor.tolist = lambda self: [0.0]", "import grading.judging as v",
        "v.judge = v.judge_exercise = lambda *a, **k: 'full marks'",
        "from grading.sandbox.probe import record", "record('adam', Adam)",
    ])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "COURSE_GRADING_CHALLENGE": str(tmp_path / "challenge.json"),
           "COURSE_GRADING_RESULTS": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    verdict = judge_exercise("optimization", "adam", challenge, tmp_path / "results")
    failed = {p.name for p in verdict.properties if not p.passed}
    assert failed == {"bias correction with each parameter's own step count"}, failed


def test_pytorch_oracle_matches_the_course_formulas():
    """torch.optim.SGD(lr*(1-beta), momentum=beta) equals m=(1-beta)g+beta m; Adam the formula."""
    lr, beta, b1, b2, eps = 0.3, 0.8, 0.7, 0.95, 1e-3
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(25)]
    p_sgd = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    p_adam = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    sgd = torch.optim.SGD([p_sgd], lr=lr * (1 - beta), momentum=beta)
    adam = torch.optim.Adam([p_adam], lr=lr, betas=(b1, b2), eps=eps)
    w_mom, m = torch.zeros(5, dtype=torch.float64), 0
    w_adam, m1, v1 = torch.zeros(5, dtype=torch.float64), 0, 0
    for t, g in enumerate(grads, start=1):
        p_sgd.grad, p_adam.grad = g.clone(), g.clone()
        sgd.step()
        adam.step()
        m = (1 - beta) * g + beta * m
        w_mom = w_mom - lr * m
        m1, v1 = b1 * m1 + (1 - b1) * g, b2 * v1 + (1 - b2) * g**2
        w_adam = w_adam - lr * (m1 / (1 - b1**t)) / ((v1 / (1 - b2**t)).sqrt() + eps)
        assert (p_sgd.detach() - w_mom).abs().max() < 1e-12
        assert (p_adam.detach() - w_adam).abs().max() < 1e-12
