"""The verdicts, judged in process: probe (grading/sandbox/probe.py) with the grading variables set, then judge.

No nbgrader, no sandbox: each test draws a challenge, lets the probe feed it to a submission's function or
class and record the results in a temporary folder, and judges them (grading/judging). The reference
solutions score full marks on many seeds; each common mistake fails exactly the properties it should and
keeps the others; malformed result files fail their exercise only, with a note.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import random
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional

import nbformat
import pytest
import torch

from course_lib.checks import optimizers as opt
from course_lib.checks.initializers import random_architecture
from course_lib.checks.stats import (
    FALSE_ALARM_PER_BOUND,
    normal_within,
    second_moment_tolerance,
    uniform_within,
    within_one_sd_bounds,
)
from grading.authoring.solutions import solution_namespace
from grading.course import EXERCISES
from grading.judging import ExerciseVerdict, judge, judge_exercise, make_challenge
from grading.sandbox import probe

SEEDS = range(6)
NAME = {e.key: e.name for exercises in EXERCISES.values() for e in exercises}
ASSIGNMENT = {e.key: a for a, exercises in EXERCISES.items() for e in exercises}


@contextlib.contextmanager
def grading_env(folder: Path, challenge: dict) -> Iterator[Path]:
    """The variables the sandbox sets for the kernel, pointing into ``folder``; restored afterwards."""
    (folder / "results").mkdir(parents=True, exist_ok=True)
    (folder / "challenge.json").write_text(json.dumps(challenge))
    saved = {k: os.environ.get(k) for k in (probe.CHALLENGE_ENV, probe.RESULTS_ENV)}
    os.environ[probe.CHALLENGE_ENV] = str(folder / "challenge.json")
    os.environ[probe.RESULTS_ENV] = str(folder / "results")
    try:
        yield folder / "results"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def grade_in_process(folder: Path, assignment: str, seed: int, sources: Iterable[str] = (),
                     only: Optional[str] = None) -> Dict[str, ExerciseVerdict]:
    """Verdicts on the reference solutions with ``sources`` executed over them (``only``: one exercise)."""
    namespace = solution_namespace(assignment)
    for source in sources:
        exec(source, namespace)
    challenge = make_challenge(assignment, seed)
    with grading_env(folder, challenge) as results:
        for exercise in EXERCISES[assignment]:
            if only in (None, exercise.key):
                probe.record(exercise.key, namespace[exercise.name])
    if only:
        return {only: judge_exercise(assignment, only, challenge, results)}
    return judge(assignment, challenge, results)


def failed(verdict: ExerciseVerdict) -> set:
    """Names of the failed properties."""
    return {p.name for p in verdict.properties if not p.passed}


# --- Correct submissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("assignment", sorted(EXERCISES))
def test_reference_solutions_score_full_marks(tmp_path, assignment):
    """Every exercise of the solution notebooks gets fraction 1.0, for many seeds."""
    for seed in SEEDS:
        verdicts = grade_in_process(tmp_path / str(seed), assignment, seed)
        assert set(verdicts) == {e.key for e in EXERCISES[assignment]}
        for key, verdict in verdicts.items():
            assert verdict.fraction == 1.0, (seed, key, [(p.name, p.message) for p in verdict.properties])
            assert abs(sum(p.weight for p in verdict.properties) - 1) < 1e-9


CORRECT_VARIANTS = {
    "var_init": '''
def var_init(model, std=0.01):  # biases drawn too, through param.data
    for param in model.parameters():
        param.data.normal_(0, std)
''',
    "xavier_init": '''
def xavier_init(model):  # the uniform bound through fan_out and fan_in named the other way round
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            fan_in, fan_out = layer.weight.shape
            bound = math.sqrt(6 / (fan_out + fan_in))
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)
''',
    "backward_variance_ratio": '''
def backward_variance_ratio(weight, grad_output):  # population variances, a tensor returned
    return (grad_output @ weight).var(unbiased=False) / grad_output.var(unbiased=False)
''',
    "relu_variance_ratio": '''
def relu_variance_ratio(weight, x):  # the layer applied as weight @ relu(x).T
    return float((weight @ torch.relu(x).T).var() / x.var())
''',
    "adam": '''
class Adam(OptimizerTemplate):  # float32 state updated in place (torch.zeros(p.shape)): rounding differs
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros(p.shape) for p in self.params}
        self.v = {p: torch.zeros(p.shape) for p in self.params}

    def update_param(self, p):
        self.t[p] += 1
        self.m[p].mul_(self.b1).add_((1 - self.b1) * p.grad)
        self.v[p].mul_(self.b2).add_((1 - self.b2) * p.grad ** 2)
        m_hat = self.m[p] / (1 - self.b1 ** self.t[p])
        v_hat = self.v[p] / (1 - self.b2 ** self.t[p])
        p.data -= self.lr * m_hat / (v_hat.sqrt() + self.eps)
''',
    "sgd_momentum": '''
class SGDMomentum(OptimizerTemplate):  # state created lazily, float64 like the parameters
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum, self.m = momentum, {}

    def update_param(self, p):
        m = self.m.get(p, torch.zeros_like(p))
        self.m[p] = self.momentum * m + (1 - self.momentum) * p.grad
        p.data -= self.lr * self.m[p]
''',
}


@pytest.mark.parametrize("exercise", sorted(CORRECT_VARIANTS))
def test_other_correct_readings_score_full_marks(tmp_path, exercise):
    """Other correct implementations (normal Xavier, population variances, lazy state...) get 1.0."""
    for seed in range(3):
        verdict = grade_in_process(tmp_path / str(seed), ASSIGNMENT[exercise], seed,
                                   [CORRECT_VARIANTS[exercise]], only=exercise)[exercise]
        assert verdict.fraction == 1.0, [(p.name, p.message) for p in verdict.properties]


DELEGATING_ADAM = '''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.inner = torch.optim.Adam(self.params, lr=lr, betas=(beta1, beta2), eps=eps)

    def step(self):
        self.inner.step()
'''


def test_judging_alone_scores_a_delegating_adam_on_its_numbers(tmp_path):
    """Judging looks at numbers only: an Adam wrapping torch.optim.Adam, run without the kernel's tripwires, gets
    full marks (in a grading kernel the tripwires refuse torch.optim: tests/test_guard.py and the corpus)."""
    verdict = grade_in_process(tmp_path, "optimization", 1, [DELEGATING_ADAM], only="adam")["adam"]
    assert verdict.fraction == 1.0, [(p.name, p.message) for p in verdict.properties]


TRIVIAL = {
    "sgd": "class SGD(OptimizerTemplate):\n    def update_param(self, p):\n        pass\n",
    "sgd_momentum": "class SGDMomentum(OptimizerTemplate):\n    def __init__(self, params, lr, momentum=0.0):\n"
                    "        super().__init__(params, lr)\n\n    def update_param(self, p):\n        pass\n",
    "adam": "class Adam(OptimizerTemplate):\n    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):\n"
            "        super().__init__(params, lr)\n\n    def update_param(self, p):\n        pass\n",
    "var_init": "def var_init(model, std=0.01):\n    pass\n",
    "equal_var_init": "def equal_var_init(model):\n    for p in model.parameters():\n        p.data.zero_()\n",
    "xavier_init": "def xavier_init(model):\n    for p in model.parameters():\n        p.data.zero_()\n",
    "kaiming_init": "def kaiming_init(model):\n    for p in model.parameters():\n        p.data.fill_(0.01)\n",
    "backward_variance_ratio": "def backward_variance_ratio(weight, grad_output):\n    return 1.0\n",
    "relu_variance_ratio": "def relu_variance_ratio(weight, x):\n    return 0.5\n",
}


@pytest.mark.parametrize("exercise", sorted(TRIVIAL))
def test_submissions_that_do_nothing_score_zero(tmp_path, exercise):
    """Doing nothing, zeroing everything or returning a constant earns no property at all."""
    verdict = grade_in_process(tmp_path, ASSIGNMENT[exercise], 0, [TRIVIAL[exercise]], only=exercise)[exercise]
    assert verdict.fraction == 0.0, [(p.name, p.passed) for p in verdict.properties]
    assert all(p.message for p in verdict.properties)


def test_an_exercise_not_started_reads_as_one_line_naming_what_to_fill_in(tmp_path):
    """Code that still raises the release's NotImplementedError: every property fails with one note naming the
    function to write (not a traceback), and the feedback page says it once."""
    from grading.authoring.release import release_path
    from grading.course import grade_id
    from grading.reports.feedback import ExerciseFeedback, compose_feedback

    release = nbformat.read(release_path("optimization"), as_version=4)
    stub = next(c.source for c in release.cells if grade_id(c) == "adam")
    assert "NotImplementedError" in stub
    verdict = grade_in_process(tmp_path, "optimization", 0, [stub], only="adam")["adam"]
    assert verdict.fraction == 0.0 and verdict.note == "not implemented yet: fill in `Adam` above"
    assert {p.message for p in verdict.properties} == {verdict.note}
    page = compose_feedback([ExerciseFeedback("Adam", 0.0, 3.0, verdict)], nbformat.v4.new_notebook(),
                            nbformat.v4.new_notebook(), [], student="s", assignment="optimization", timestamp="t")
    assert page.count("not implemented yet: fill in <code>Adam</code> above") + page.count(
        "not implemented yet: fill in `Adam` above") == 1 and "NotImplementedError" not in page


# --- Common mistakes: exactly the expected properties fail -------------------------------------------------

MEAN, NORMAL, BIASES = "weights centred on 0", "normal distribution", "biases 0"
STD_VAR, DEFAULT_STD = "weight variance std^2 for the std given", "default std 0.01"
FAN_IN_VAR = "weight variance 1/fan_in in every layer"
XAVIER_VAR = "weight variance 2/(fan_in + fan_out) in every layer"
FIRST, LATER = "weight variance 1/fan_in in the first layer", "weight variance 2/fan_in in the later layers"
FIRST_STEP, MANY, UNTOUCHED = "first step", "many steps and shapes", opt.UNTOUCHED
DIRECTION, DAMPING = "update direction and learning rate", "moving average with the (1 - beta) factor"
CARRIED, BUFFER, DEFAULT_MOMENTUM = ("momentum carried over many steps and shapes", "one momentum buffer per parameter",
                                     "default momentum 0")
AVERAGES = "moving averages kept over many steps and shapes"
BIAS = "bias correction with each parameter's own step count"
EPS, STATE, DEFAULTS = "eps added after the square root", "state kept per parameter", "default betas and eps"
SHAPES, VALUE = "a number for every layer shape", "the exact value for random shapes"
UNIFORM = "uniform distribution"
PRODUCT, RELU = "the gradient flows back as grad_output @ weight", "ReLU on the layer's input: relu(x) @ weight.T"

# exercise -> mistake -> (source, the properties it must fail)
MISTAKES = {
    "var_init": {
        "std squared used as std": ('''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, std ** 2)
''', {STD_VAR}),
        "std used as variance": ('''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, math.sqrt(std))
''', {STD_VAR}),
        "hard-coded std": ('''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, 0.01)
''', {STD_VAR}),
        "uniform draws": ('''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.uniform_(-std * math.sqrt(3), std * math.sqrt(3))
''', {NORMAL}),
        "default std 0.1": ('''
def var_init(model, std=0.1):
    for param in model.parameters():
        param.data.normal_(0, std)
''', {DEFAULT_STD}),
    },
    "equal_var_init": {
        "biases left as they were": ('''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".weight"):
            param.data.normal_(0, 1 / math.sqrt(param.shape[1]))
''', {BIASES}),
        "fan_out instead of fan_in": ('''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, 1 / math.sqrt(param.shape[0]))
''', {FAN_IN_VAR}),
        "1/fan_in used as std": ('''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, 1 / param.shape[1])
''', {FAN_IN_VAR}),
        "the last layer forgotten": ('''
def equal_var_init(model):
    for layer in list(model.layers)[:-1]:
        if isinstance(layer, nn.Linear):
            layer.weight.data.normal_(0, 1 / math.sqrt(layer.in_features))
            layer.bias.data.zero_()
''', {MEAN, FAN_IN_VAR, BIASES, NORMAL}),
    },
    "xavier_init": {
        "fan_in only": ('''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = math.sqrt(3 / param.shape[1])
            param.data.uniform_(-bound, bound)
''', {XAVIER_VAR}),
        "uniform bound without the square root of 6": ('''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = 1 / math.sqrt(param.shape[0] + param.shape[1])
            param.data.uniform_(-bound, bound)
''', {XAVIER_VAR}),
        "uniform on [0, a]": ('''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = math.sqrt(6) / math.sqrt(param.shape[0] + param.shape[1])
            param.data.uniform_(0, bound)
''', {MEAN, XAVIER_VAR}),
        "1/fan_out": ('''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(1 / param.shape[0]))
''', {XAVIER_VAR, UNIFORM}),
        "normal instead of the uniform asked for": ('''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(2 / (param.shape[0] + param.shape[1])))
''', {UNIFORM}),
    },
    "kaiming_init": {
        "factor 2 on the first layer too": ('''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(2 / param.shape[1]))
''', {FIRST}),
        "no factor 2 (equal variance)": ('''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(1 / param.shape[1]))
''', {LATER}),
        "first layer found by its size 784": ('''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            gain = 1 if param.shape[1] == 784 else 2
            param.data.normal_(0, math.sqrt(gain / param.shape[1]))
''', {FIRST}),
        "uniform draws": ('''
def kaiming_init(model):
    for position, layer in enumerate(m for m in model.modules() if isinstance(m, nn.Linear)):
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="linear" if position == 0 else "relu")
        nn.init.zeros_(layer.bias)
''', {NORMAL}),
    },
    "backward_variance_ratio": {
        "product transposed": ('''
def backward_variance_ratio(weight, grad_output):
    return float((grad_output @ weight.T).var() / grad_output.var())
''', {SHAPES, PRODUCT, VALUE}),
        "ratio of standard deviations": ('''
def backward_variance_ratio(weight, grad_output):
    return float((grad_output @ weight).std() / grad_output.std())
''', {VALUE}),
        "the theoretical value": ('''
def backward_variance_ratio(weight, grad_output):
    return weight.shape[0] * weight.var().item()
''', {VALUE}),
    },
    "relu_variance_ratio": {
        "ReLU after the layer": ('''
def relu_variance_ratio(weight, x):
    return float(torch.relu(x @ weight.T).var() / x.var())
''', {RELU, VALUE}),
        "no ReLU": ('''
def relu_variance_ratio(weight, x):
    return float((x @ weight.T).var() / x.var())
''', {RELU, VALUE}),
        "variance of relu(x) below": ('''
def relu_variance_ratio(weight, x):
    return float((torch.relu(x) @ weight.T).var() / torch.relu(x).var())
''', {VALUE}),
    },
    "sgd": {
        "hard-coded learning rate": ('''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.add_(-0.1 * p.grad)
''', {FIRST_STEP, MANY}),
        "ascends the gradient": ('''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.add_(self.lr * p.grad)
''', {FIRST_STEP, MANY}),
        "learning rate applied twice": ('''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.add_(-self.lr * self.lr * p.grad)
''', {FIRST_STEP, MANY}),
        "not in place": ('''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p = p - self.lr * p.grad
''', {FIRST_STEP, MANY, UNTOUCHED}),
        "updates parameters without a gradient": ('''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    @torch.no_grad()
    def step(self):
        for p in self.params:
            self.update_param(p)

    def update_param(self, p):
        p.add_(-self.lr * (p.grad if p.grad is not None else torch.ones_like(p)))
''', {UNTOUCHED}),
    },
    "sgd_momentum": {
        "undamped momentum m = beta m + g": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = self.momentum * self.m[p] + p.grad
        p.add_(-self.lr * self.m[p])
''', {DAMPING}),
        "beta and 1 - beta swapped": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = (1 - self.momentum) * self.m[p] + self.momentum * p.grad
        p.add_(-self.lr * self.m[p])
''', {DAMPING}),
        "(1 - beta) applied twice": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = self.momentum * self.m[p] + (1 - self.momentum) * p.grad
        p.add_(-self.lr * (1 - self.momentum) * self.m[p])
''', {DAMPING}),
        "state re-created every step": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum

    def update_param(self, p):
        m = torch.zeros_like(p)
        m = (1 - self.momentum) * p.grad + self.momentum * m
        p.add_(-self.lr * m)
''', {CARRIED}),
        "one state shared by all parameters": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = 0.0

    def update_param(self, p):
        self.m = (1 - self.momentum) * p.grad.sum() + self.momentum * self.m
        p.add_(-self.lr * self.m)
''', {DIRECTION, DAMPING, CARRIED, BUFFER}),
        "default momentum 0.9": ('''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.9):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = self.momentum * self.m[p] + (1 - self.momentum) * p.grad
        p.add_(-self.lr * self.m[p])
''', {DEFAULT_MOMENTUM}),
    },
    "adam": {
        "no bias correction": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = self.b1 * self.m[p] + (1 - self.b1) * p.grad
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * p.grad ** 2
        p.add_(-self.lr * self.m[p] / (torch.sqrt(self.v[p]) + self.eps))
''', {BIAS}),
        "eps inside the square root": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.t[p] += 1
        self.m[p] = self.b1 * self.m[p] + (1 - self.b1) * p.grad
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * p.grad ** 2
        m_hat = self.m[p] / (1 - self.b1 ** self.t[p])
        v_hat = self.v[p] / (1 - self.b2 ** self.t[p])
        p.add_(-self.lr * m_hat / torch.sqrt(v_hat + self.eps))
''', {EPS}),
        "state re-created every step": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps

    def update_param(self, p):
        m = (1 - self.b1) * p.grad
        v = (1 - self.b2) * p.grad ** 2
        m_hat, v_hat = m / (1 - self.b1), v / (1 - self.b2)
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''', {AVERAGES}),
        "step counted once per parameter update, shared by all parameters": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.t += 1
        self.m[p] = self.b1 * self.m[p] + (1 - self.b1) * p.grad
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * p.grad ** 2
        m_hat = self.m[p] / (1 - self.b1 ** self.t)
        v_hat = self.v[p] / (1 - self.b2 ** self.t)
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''', {BIAS, STATE}),
        "global step count (calls to step)": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}

    def step(self):
        self.t += 1
        super().step()

    def update_param(self, p):
        self.m[p] = self.b1 * self.m[p] + (1 - self.b1) * p.grad
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * p.grad ** 2
        m_hat = self.m[p] / (1 - self.b1 ** self.t)
        v_hat = self.v[p] / (1 - self.b2 ** self.t)
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''', {BIAS}),
        "moving averages shared by all parameters": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.t = {p: 0 for p in self.params}
        self.m, self.v = 0.0, 0.0

    def update_param(self, p):
        self.t[p] += 1
        self.m = self.b1 * self.m + (1 - self.b1) * p.grad.mean()
        self.v = self.b2 * self.v + (1 - self.b2) * (p.grad ** 2).mean()
        m_hat = self.m / (1 - self.b1 ** self.t[p])
        v_hat = self.v / (1 - self.b2 ** self.t[p])
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''', {DIRECTION, AVERAGES, BIAS, EPS, STATE}),
        "default eps 1e-6": ('''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-6):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.t[p] += 1
        self.m[p] = self.b1 * self.m[p] + (1 - self.b1) * p.grad
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * p.grad ** 2
        m_hat = self.m[p] / (1 - self.b1 ** self.t[p])
        v_hat = self.v[p] / (1 - self.b2 ** self.t[p])
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''', {DEFAULTS}),
    },
}


@pytest.mark.parametrize("exercise, mistake", [(e, m) for e, table in MISTAKES.items() for m in table])
def test_common_mistake_fails_exactly_its_properties(tmp_path, exercise, mistake):
    """Each mistake fails the properties listed for it, for every seed, and keeps all the others."""
    source, expected = MISTAKES[exercise][mistake]
    for seed in range(3):
        verdict = grade_in_process(tmp_path / str(seed), ASSIGNMENT[exercise], seed, [source],
                                   only=exercise)[exercise]
        assert failed(verdict) == expected, (seed, [(p.name, p.passed, p.message) for p in verdict.properties])
        assert 0 <= verdict.fraction < 1
        for prop in verdict.properties:
            assert prop.passed or prop.message, prop.name  # a failed property always says why


def test_messages_name_the_mistake_and_where_it_shows(tmp_path):
    """Failure messages are sentences about the student's numbers, naming the likely mistake."""
    cases = [
        ("adam", "global step count (calls to step)", BIAS, "step count is kept per parameter"),
        ("adam", "eps inside the square root", EPS, "add eps inside the square root"),
        ("adam", "no bias correction", BIAS, "without bias correction"),
        ("sgd_momentum", "undamped momentum m = beta m + g", DAMPING, "(1 - beta)"),
        ("sgd_momentum", "beta and 1 - beta swapped", DAMPING, "m = (1 - beta) * m + beta * g: beta weighs the old"),
        ("sgd", "not in place", FIRST_STEP, "change them in place"),
        ("backward_variance_ratio", "product transposed", SHAPES, "so grad_output @ weight is (batch, fan_in) = ("),
        ("sgd", "hard-coded learning rate", FIRST_STEP, "as with a learning rate of 0.1 instead of"),
        ("sgd_momentum", "(1 - beta) applied twice", DAMPING, "apply the (1 - beta) factor once"),
        ("xavier_init", "1/fan_out", XAVIER_VAR, "1/fan_out"),
        ("kaiming_init", "first layer found by its size 784", FIRST, "position"),
        ("var_init", "std squared used as std", STD_VAR, "std^4"),
        ("relu_variance_ratio", "ReLU after the layer", RELU, "before the layer"),
    ]
    for exercise, mistake, prop, words in cases:
        verdict = grade_in_process(tmp_path / exercise / mistake[:8], ASSIGNMENT[exercise], 7,
                                   [MISTAKES[exercise][mistake][0]], only=exercise)[exercise]
        message = next(p.message for p in verdict.properties if p.name == prop)
        assert words in message, (exercise, mistake, message)
        assert "assert" not in message and "grading" not in message
    verdict = grade_in_process(tmp_path / "late", "optimization", 7,
                               [MISTAKES["adam"]["global step count (calls to step)"][0]], only="adam")["adam"]
    message = next(p.message for p in verdict.properties if p.name == BIAS)
    assert message.startswith("your update after step ") and "for a parameter of shape (" in message


# Adam whose bias correction counts one step ahead (not a simulated mistake): the first step is a multiple of
# the expected one, the later steps are not.
ADAM_BIAS_ONE_AHEAD = MISTAKES["adam"]["default eps 1e-6"][0].replace("eps=1e-6", "eps=1e-8").replace(
    "** self.t[p])", "** (self.t[p] + 1))")


def test_learning_rate_named_only_when_it_explains_every_step(tmp_path):
    """A first step of the wrong size blames the learning rate only when a learning rate reproduces every step."""
    for seed in range(3):
        sgd = grade_in_process(tmp_path / f"sgd{seed}", "optimization", seed,
                               [MISTAKES["sgd"]["hard-coded learning rate"][0]], only="sgd")["sgd"]
        message = next(p.message for p in sgd.properties if p.name == FIRST_STEP)
        assert "check the learning rate" in message, message
        # bias correction off by one step: the first step is a constant multiple, later steps are not
        adam = grade_in_process(tmp_path / f"adam{seed}", "optimization", seed, [ADAM_BIAS_ONE_AHEAD],
                                only="adam")["adam"]
        message = next(p.message for p in adam.properties if p.name == DIRECTION)
        assert "no learning rate reproduces your later steps: check the bias correction" in message, message
        assert "check the learning rate" not in " ".join(p.message for p in adam.properties)
        # (1 - beta) twice scales every step by (1 - beta), but beta differs between the runs: not the rate
        momentum = grade_in_process(tmp_path / f"mom{seed}", "optimization", seed,
                                    [MISTAKES["sgd_momentum"]["(1 - beta) applied twice"][0]],
                                    only="sgd_momentum")["sgd_momentum"]
        assert "learning rate" not in " ".join(p.message for p in momentum.properties)


# --- Result files: missing, malformed, foreign ------------------------------------------------------------


@pytest.fixture(scope="module")
def graded_optimization(tmp_path_factory):
    """The reference optimizers probed once: (challenge, results folder)."""
    folder = tmp_path_factory.mktemp("reference")
    challenge = make_challenge("optimization", 11)
    namespace = solution_namespace("optimization")
    with grading_env(folder, challenge) as results:
        for exercise in EXERCISES["optimization"]:
            probe.record(exercise.key, namespace[exercise.name])
    return challenge, results


def _copy_results(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _save(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def _load(path: Path) -> tuple:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _malform(kind: str, results: Path) -> None:
    target = results / "adam.safetensors"
    if kind == "pickle bytes":
        target.write_bytes(pickle.dumps({"main/0": [1.0, 2.0]}))
    elif kind == "torch.save file":
        torch.save({"main/0": torch.zeros(3)}, target)
    elif kind == "huge file":
        target.unlink()
        with open(target, "wb") as f:
            f.truncate(65 * 2**20)
    elif kind == "header bigger than the file":
        target.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    elif kind == "wrong shapes":
        tensors, meta = _load(target)
        tensors["main/0"] = torch.zeros(3, dtype=torch.float64)
        _save(target, tensors, meta)
    elif kind == "wrong dtype":
        tensors, meta = _load(target)
        tensors["main/0"] = tensors["main/0"].float()
        _save(target, tensors, meta)
    elif kind == "NaN":
        tensors, meta = _load(target)
        tensors["main/0"][3] = float("nan")
        _save(target, tensors, meta)
    elif kind == "another exercise's results":
        target.write_bytes((results / "sgd.safetensors").read_bytes())
    elif kind == "unexpected entries":
        tensors, meta = _load(target)
        tensors["extra"] = torch.zeros(1)
        _save(target, tensors, meta)
    elif kind == "a symbolic link":
        target.unlink()
        target.symlink_to(results / "sgd.safetensors")
    elif kind == "missing":
        target.unlink()
    elif kind == "metadata nested too deep":  # json raises RecursionError, not ValueError
        tensors, meta = _load(target)
        _save(target, tensors, {**meta, "errors": "[" * 200000 + "]" * 200000})
    else:
        raise KeyError(kind)


MALFORMED = {
    "pickle bytes": "not a valid results file",
    "torch.save file": "not a valid results file",
    "huge file": "larger than 64 MB",
    "header bigger than the file": "not a valid results file",
    "wrong shapes": "has shape (3,)",
    "wrong dtype": "has shape",
    "NaN": "NaN",
    "another exercise's results": "belong to another exercise",
    "unexpected entries": "unexpected entries",
    "a symbolic link": "not a plain file",
    "missing": "did not run to this exercise's test cell",
    "metadata nested too deep": "could not judge",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_results_fail_their_exercise_only(tmp_path, graded_optimization, kind):
    """A bad result file fails its exercise with a note; the other exercises keep full marks."""
    challenge, reference = graded_optimization
    results = _copy_results(reference, tmp_path / "results")
    _malform(kind, results)
    verdicts = judge("optimization", challenge, results)
    assert verdicts["adam"].fraction == 0.0
    assert MALFORMED[kind] in verdicts["adam"].note, verdicts["adam"].note
    assert all(not p.passed and p.message for p in verdicts["adam"].properties)
    assert verdicts["sgd"].fraction == verdicts["sgd_momentum"].fraction == 1.0
    # only a failure of the grader itself asks a person to look
    assert bool(verdicts["adam"].review) == (kind == "metadata nested too deep"), verdicts["adam"].review


def test_an_exception_is_reported_and_other_runs_still_count(tmp_path):
    """A constructor that raises without defaults fails only what needs the defaults, quoting the error."""
    source = '''
_Adam = Adam
class Adam(_Adam):
    def __init__(self, params, lr, **kwargs):
        if not kwargs:
            raise ValueError("pass beta1, beta2 and eps")
        super().__init__(params, lr, **kwargs)
'''
    verdict = grade_in_process(tmp_path, "optimization", 2, [source], only="adam")["adam"]
    assert failed(verdict) == {DEFAULTS}
    assert "ValueError: pass beta1, beta2 and eps" in verdict.note
    broken = "class Adam:\n    def __init__(self, *a, **k):\n        raise RuntimeError('not yet')\n"
    verdict = grade_in_process(tmp_path / "broken", "optimization", 2, [broken], only="adam")["adam"]
    assert verdict.fraction == 0.0 and "RuntimeError: not yet" in verdict.note


# --- The probe --------------------------------------------------------------------------------------------


def test_probe_does_nothing_outside_grading(tmp_path, monkeypatch):
    """Without the grading variables record() returns at once and writes nothing."""
    monkeypatch.delenv(probe.CHALLENGE_ENV, raising=False)
    monkeypatch.setenv(probe.RESULTS_ENV, str(tmp_path))
    calls = []
    assert probe.record("sgd", lambda *a, **k: calls.append(a)) is None
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_probe_never_raises_prints_nothing_and_keeps_the_random_state(tmp_path, capfd):
    """Exceptions (even SystemExit), prints and warnings of the student's code stay inside the probe."""
    challenge = make_challenge("initialization", 3)
    torch.manual_seed(123)
    random.seed(5)
    state, py_state = torch.get_rng_state(), random.getstate()

    def noisy(model, std=0.01):
        print("x" * 1000)
        import warnings

        warnings.warn("deprecated", stacklevel=1)
        torch.randn(1000)
        random.random()
        raise SystemExit(3)

    with grading_env(tmp_path, challenge) as results:
        probe.record("var_init", noisy)
        probe.record("no_such_exercise", noisy)
        (tmp_path / "challenge.json").write_text("{not json")
        probe.record("equal_var_init", noisy)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert torch.equal(torch.get_rng_state(), state) and random.getstate() == py_state
    assert sorted(p.name for p in results.iterdir()) == ["var_init.safetensors"]  # no temporary file left
    verdict = judge_exercise("initialization", "var_init", challenge, results)
    assert verdict.fraction == 0.0 and "SystemExit: 3" in verdict.note


def test_an_interrupt_keeps_the_finished_runs(tmp_path):
    """The cell's time limit (KeyboardInterrupt) stops the probe, which writes what it recorded, then lets
    the interrupt end the cell (its visible tests would only hang the same way)."""
    challenge = make_challenge("optimization", 4)
    namespace = solution_namespace("optimization")
    calls = []

    def adam(params, lr, **kwargs):
        calls.append(kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return namespace["Adam"](params, lr, **kwargs)

    with grading_env(tmp_path, challenge) as results, pytest.raises(KeyboardInterrupt):
        probe.record("adam", adam)
    verdict = judge_exercise("optimization", "adam", challenge, results)
    assert len(calls) == 3 and "KeyboardInterrupt" in verdict.note
    by_name = {p.name: p.passed for p in verdict.properties}
    assert by_name[DIRECTION] and by_name[AVERAGES] and by_name[BIAS] and not by_name[EPS]


# --- The challenge and the oracle ---------------------------------------------------------------------------


def test_challenges_are_json_random_and_never_784_wide():
    """Challenges are plain JSON, differ from seed to seed, and avoid the notebook's input size."""
    first = make_challenge("initialization", 0)
    assert json.loads(json.dumps(first)) == first
    assert make_challenge("initialization", 0) == first
    assert make_challenge("initialization", 1) != first
    architectures = {str(random_architecture(random.Random(seed))) for seed in range(20)}
    assert len(architectures) == 20
    assert all(random_architecture(random.Random(s))["input_size"] != 784 for s in range(200))
    adam = make_challenge("optimization", 0)["exercises"]["adam"]["runs"]
    assert 20 <= adam["main"]["steps"] <= 40 and 3 <= sum(p["start"] == 1 for p in adam["main"]["params"]) <= 5
    assert any(p["start"] is None for p in adam["main"]["params"])  # parameters that never get a gradient
    assert len({p["start"] for p in adam["late"]["params"] if p["start"]}) >= 3  # per-parameter step counts
    assert adam["eps"]["kwargs"]["eps"] >= 0.03 and "beta1" not in adam["default"]["kwargs"]


@pytest.mark.parametrize("exercise", ["sgd", "sgd_momentum", "adam"])
def test_oracle_agrees_with_the_course_formula(exercise):
    """PyTorch (the oracle) and the course's update rule (the simulator without mistakes) agree."""
    for seed in range(4):
        spec = opt.challenge(exercise, random.Random(seed))
        for name, run_json in spec["runs"].items():
            run = opt.Run.decode(name, run_json)
            assert opt.first_deviation(run, opt.simulate(exercise, run, frozenset()), opt.oracle(exercise, run)) is None


def test_every_known_mistake_is_told_apart_from_the_correct_rule():
    """Each simulated mistake leaves the oracle somewhere in the runs (else it could not be diagnosed)."""
    for exercise, spec in opt.SPECS.items():
        challenge = opt.challenge(exercise, random.Random(0))
        runs = {n: opt.Run.decode(n, r) for n, r in challenge["runs"].items()}
        for flag in spec.flags:
            assert any(opt.first_deviation(run, opt.simulate(exercise, run, frozenset({flag})),
                                           opt.oracle(exercise, run)) is not None
                       for n, run in runs.items() if n in ("main", "main_2", "late", "eps")), (exercise, flag)


# --- Statistics -----------------------------------------------------------------------------------------------


def test_statistical_bounds_separate_right_from_wrong():
    """Bounds: a correct init fails < 1e-6 of runs; fan_in-only Xavier and std^2-as-std always fail."""
    assert FALSE_ALARM_PER_BOUND * 1000 < 1e-5
    for seed in range(500):
        arch = random_architecture(random.Random(seed))
        sizes = [arch["input_size"], *arch["hidden_sizes"], arch["num_classes"]]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            below, above = second_moment_tolerance(fan_in * fan_out)
            assert below < 0.1 and above < 0.1
            fan_in_only = (1 / fan_in) / (2 / (fan_in + fan_out))
            assert not 1 - 2 * below <= fan_in_only <= 1 + 2 * above, (fan_in, fan_out)
    assert 0.5**2 < 1 - 2 * second_moment_tolerance(18_000)[0]


def test_bounds_hold_their_false_alarm_rate():
    """The Chernoff bounds behind the tolerances are at most 1e-9 at the tolerance, for normal draws."""
    for n in (18_000, 50_000, 200_000):
        below, above = second_moment_tolerance(n)
        assert math.exp(-n / 2 * (above - math.log1p(above))) <= 1.0001e-9
        assert math.exp(-n / 2 * (-below - math.log1p(-below))) <= 1.0001e-9


def test_distribution_bounds_tell_normal_from_uniform():
    """On the smallest layer (18,000 weights) the accepted ranges of the two shapes do not overlap."""
    n = 18_000
    normal, uniform = within_one_sd_bounds(n, normal_within), within_one_sd_bounds(n, uniform_within)
    assert uniform[1] < normal[0]
    assert normal[0] < normal_within(1.0) < normal[1] and uniform[0] < uniform_within(1.0) < uniform[1]


def test_refused_delegation_scores_zero_and_is_flagged(tmp_path, graded_optimization):
    """A result file whose every run the kernel's tripwires refused (no tensors, the oracle named) fails that
    exercise, names the refusal in its note and raises the run-time delegation flag; the others keep theirs."""
    challenge, reference = graded_optimization
    results = _copy_results(reference, tmp_path / "results")
    refused = f"OracleRefused: {probe.refusal('torch.optim.Adam')}"
    runs = {name: refused for name in challenge["exercises"]["adam"]["runs"]}
    _save(results / "adam.safetensors", {}, {"exercise": "adam", "status": "error", "errors": json.dumps(runs),
                                             "error": refused, "oracles": json.dumps(["torch.optim.Adam"])})
    verdicts = judge("optimization", challenge, results)
    assert verdicts["adam"].fraction == 0.0 and refused in verdicts["adam"].note
    assert verdicts["adam"].review == ("adam called torch.optim.Adam while the grader ran it "
                                       "(delegation, seen at run time)")
    assert all(v.fraction == 1.0 and not v.review for k, v in verdicts.items() if k != "adam")
