"""Can the hidden tests be trusted? Every correct reading passes, every listed mistake fails.

The checks of grading/checks.py are run (in process, no notebook) on the solutions of
solutions/*.ipynb, on the seed tutorial's own PyTorch reference implementations, on other correct
variants, and on the common mistakes, each over many random seeds (random sizes, std values,
learning rates, betas, step counts).
"""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
import torch

from grading import checks
from grading.solutions import EXERCISES, ROOT, solution_namespace

SEEDS = range(12)

# The seed tutorial's PyTorch reference implementations, as published (and other correct readings).
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
    "xavier_init": '''
def xavier_init(model):  # the normal form
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            torch.nn.init.xavier_normal_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
''',
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
}

# The common mistakes: each must lose its own exercise, for every random draw.
MISTAKES = {
    "var_init": {
        "std squared used as std": '''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, std ** 2)
''',
        "std used as variance": '''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, math.sqrt(std))
''',
        "hard-coded std": '''
def var_init(model, std=0.01):
    for param in model.parameters():
        param.data.normal_(0, 0.01)
''',
    },
    "equal_var_init": {
        "biases left as they were": '''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".weight"):
            param.data.normal_(0, 1 / math.sqrt(param.shape[1]))
''',
        "fan_out instead of fan_in": '''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, 1 / math.sqrt(param.shape[0]))
''',
        "1/fan_in used as std": '''
def equal_var_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, 1 / param.shape[1])
''',
    },
    "xavier_init": {
        "fan_in only": '''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = math.sqrt(3 / param.shape[1])
            param.data.uniform_(-bound, bound)
''',
        "uniform bound without the square root of 6": '''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = 1 / math.sqrt(param.shape[0] + param.shape[1])
            param.data.uniform_(-bound, bound)
''',
        "uniform on [0, 2a]": '''
def xavier_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            bound = math.sqrt(6) / math.sqrt(param.shape[0] + param.shape[1])
            param.data.uniform_(0, bound)
''',
    },
    "kaiming_init": {
        "factor 2 on the first layer too": '''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(2 / param.shape[1]))
''',
        "no factor 2 (equal variance)": '''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            param.data.normal_(0, math.sqrt(1 / param.shape[1]))
''',
        "first layer found by its size 784": '''
def kaiming_init(model):
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.data.zero_()
        else:
            gain = 1 if param.shape[1] == 784 else 2
            param.data.normal_(0, math.sqrt(gain / param.shape[1]))
''',
    },
    "SGD": {
        "hard-coded learning rate": '''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.add_(-0.1 * p.grad)
''',
        "ascends the gradient": '''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.add_(self.lr * p.grad)
''',
        "updates parameters without a gradient": '''
class SGD(OptimizerTemplate):
    def __init__(self, params, lr):
        super().__init__(params, lr)

    @torch.no_grad()
    def step(self):
        for p in self.params:
            self.update_param(p)

    def update_param(self, p):
        p.add_(-self.lr * (p.grad if p.grad is not None else torch.ones_like(p)))
''',
    },
    "SGDMomentum": {
        "undamped momentum m = beta m + g": '''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.m[p] = self.momentum * self.m[p] + p.grad
        p.add_(-self.lr * self.m[p])
''',
        "state re-created every step": '''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum

    def update_param(self, p):
        m = torch.zeros_like(p)
        m = (1 - self.momentum) * p.grad + self.momentum * m
        p.add_(-self.lr * m)
''',
        "one state shared by all parameters": '''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = 0.0

    def update_param(self, p):
        self.m = (1 - self.momentum) * p.grad.sum() + self.momentum * self.m
        p.add_(-self.lr * self.m)
''',
    },
    "Adam": {
        "no bias correction": '''
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
''',
        "eps inside the square root": '''
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
''',
        "state re-created every step": '''
class Adam(OptimizerTemplate):
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps

    def update_param(self, p):
        m = (1 - self.b1) * p.grad
        v = (1 - self.b2) * p.grad ** 2
        m_hat, v_hat = m / (1 - self.b1), v / (1 - self.b2)
        p.add_(-self.lr * m_hat / (torch.sqrt(v_hat) + self.eps))
''',
        "step counted once per parameter update, shared by all parameters": '''
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
''',
    },
}

ALL_EXERCISES = {**EXERCISES["initialization"], **EXERCISES["optimization"]}


def assignment_of(exercise: str) -> str:
    """The assignment an exercise belongs to."""
    return next(a for a, names in EXERCISES.items() if exercise in names)


def check(exercise: str):
    """The hidden check of an exercise."""
    return getattr(checks, ALL_EXERCISES[exercise])


@pytest.mark.parametrize("exercise", sorted(ALL_EXERCISES))
def test_course_solution_passes(exercise):
    """The solution cell of solutions/<assignment>.ipynb passes its hidden check for every seed."""
    implementation = solution_namespace(assignment_of(exercise))[exercise]
    for seed in SEEDS:
        check(exercise)(implementation, seed=seed)


@pytest.mark.parametrize("exercise", sorted(ALL_EXERCISES))
def test_seed_reference_passes(exercise):
    """The seed tutorial's own PyTorch implementation, pasted in, passes for every seed."""
    implementation = solution_namespace(assignment_of(exercise), [SEED_REFERENCE])[exercise]
    for seed in SEEDS:
        check(exercise)(implementation, seed=seed)


@pytest.mark.parametrize("exercise", sorted(OTHER_CORRECT))
def test_other_correct_variants_pass(exercise):
    """Xavier's normal form, Kaiming via torch.nn.init, var_init leaving biases alone: all pass."""
    implementation = solution_namespace(assignment_of(exercise), [OTHER_CORRECT[exercise]])[exercise]
    for seed in SEEDS:
        check(exercise)(implementation, seed=seed)


@pytest.mark.parametrize(
    "exercise, mistake", [(e, m) for e, mistakes in MISTAKES.items() for m in mistakes]
)
def test_common_mistake_fails_its_own_check_only(exercise, mistake):
    """Each mistake fails its exercise's check for every seed; the other checks still pass."""
    source = MISTAKES[exercise][mistake]
    assignment = assignment_of(exercise)
    namespace = solution_namespace(assignment)  # correct solutions ...
    exec(source, namespace)  # ... with this one exercise replaced by the mistake
    for seed in SEEDS:
        with pytest.raises(AssertionError):
            check(exercise)(namespace[exercise], seed=seed)
    for other in EXERCISES[assignment]:
        if other != exercise:
            check(other)(namespace[other], seed=0)


def test_checks_are_randomized():
    """Different seeds give different sizes, so a hard-coded answer cannot match them all."""
    architectures = {str(checks.random_architecture(random.Random(seed))) for seed in range(20)}
    assert len(architectures) == 20
    assert all(checks.random_architecture(random.Random(s))["input_size"] != 784 for s in range(200))


def test_statistical_bounds_separate_right_from_wrong():
    """Bounds: a correct init fails < 1e-6 of runs; fan_in-only Xavier and std^2-as-std always fail.

    The false-alarm probability per bound is 1e-9 and a grading run tests fewer than 100 bounds. The
    wrong variances must lie outside twice the tolerance on every random architecture, so that even
    their own sampling noise (smaller than the tolerance) cannot bring them inside.
    """
    assert checks.FALSE_ALARM_PER_BOUND * 100 < 1e-6
    for seed in range(500):
        arch = checks.random_architecture(random.Random(seed))
        sizes = [arch["input_size"], *arch["hidden_sizes"], arch["num_classes"]]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            below, above = checks.second_moment_tolerance(fan_in * fan_out)
            assert below < 0.1 and above < 0.1
            fan_in_only = (1 / fan_in) / (2 / (fan_in + fan_out))
            assert not 1 - 2 * below <= fan_in_only <= 1 + 2 * above, (fan_in, fan_out)
    # std^2 used as std: variance std^4 instead of std^2, std <= 0.5 in the checks
    assert 0.5**2 < 1 - 2 * checks.second_moment_tolerance(18_000)[0]


def test_bounds_hold_their_false_alarm_rate():
    """The Chernoff bounds behind the tolerances are at most 1e-9 at the tolerance, for normal draws."""
    for n in (18_000, 50_000, 200_000):
        below, above = checks.second_moment_tolerance(n)
        assert math.exp(-n / 2 * (above - math.log1p(above))) <= 1.0001e-9
        assert math.exp(-n / 2 * (-below - math.log1p(-below))) <= 1.0001e-9


def test_pytorch_oracle_matches_the_course_formulas():
    """torch.optim.SGD(lr*(1-beta), momentum=beta) equals m=(1-beta)g+beta m; Adam the formula."""
    lr, beta, b1, b2, eps = 0.3, 0.8, 0.7, 0.95, 1e-3
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(25)]
    p_sgd = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    p_adam = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    sgd = torch.optim.SGD([p_sgd], lr=lr * (1 - beta), momentum=beta)
    adam = torch.optim.Adam([p_adam], lr=lr, betas=(b1, b2), eps=eps)
    w_mom, m, w_adam, m1, v1 = torch.zeros(5, dtype=torch.float64), 0, torch.zeros(5, dtype=torch.float64), 0, 0
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


TAMPERING = {
    "allclose replaced after the import": "import grading.checks\ntorch.allclose = lambda *a, **k: True",
    "allclose replaced before the import": "torch.allclose = lambda *a, **k: True\nimport grading.checks",
    "oracle replaced after the import": "import grading.checks\ntorch.optim.Adam = Adam",
    "oracle replaced before the import": "torch.optim.Adam = Adam\nimport grading.checks",
    "tolist replaced": "torch.Tensor.tolist = lambda self: [0.0]\nimport grading.checks",
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_monkeypatching_torch_does_not_pass_a_wrong_adam(tampering):
    """A notebook that patches torch to pass gets an AssertionError, not the points."""
    wrong_adam = MISTAKES["Adam"]["no bias correction"]
    script = "\n".join([
        "import math, torch", "from torch import nn", "from course_lib.optim import OptimizerTemplate",
        wrong_adam, TAMPERING[tampering],
        "try:", "    grading.checks.check_adam(Adam, seed=1)", "except AssertionError as error:",
        "    print('FAILED:', error)", "else:", "    print('PASSED')",
    ])
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FAILED:"), done.stdout
    if "allclose" not in tampering:
        assert "replaced" in done.stdout


def test_checks_use_no_course_lib_function():
    """grading/checks.py imports nothing from course_lib (it reads models.py from disk instead)."""
    source = (ROOT / "grading" / "checks.py").read_text()
    assert "import course_lib" not in source and "from course_lib" not in source
    assert "spec_from_file_location" in source
