"""Every mistake the optimizer checks simulate, alone and in pairs, written as a student would write it.

For each single and paired mistake of SGD, SGDMomentum, Adam (course_lib.checks.optimizers.SPECS) and AdamW
(course_lib.checks.adamw), a
class with those mistakes is graded through the probe and a result file, and judged by the self-check on the
same inputs: both fail exactly the properties that own the mistakes, with the same messages, and each failure
names its mistake (the hint, never "check the learning rate" for a mistake other than the rate).
"""

from __future__ import annotations

import itertools

import pytest

from course_lib.checks import adamw
from course_lib.checks import optimizers as opt
from course_lib.self_check import check_on
from grading.judging import make_challenge
from tests import test_self_check as sc
from tests import test_verdicts as v1

CLASS_NAMES = {"sgd": "SGD", "sgd_momentum": "SGDMomentum", "adam": "Adam", "adamw": "AdamW"}
SPECS = {**opt.SPECS, "adamw": adamw.SPEC}
HINTS = {**{kind: opt.HINTS for kind in opt.SPECS}, "adamw": adamw.HINTS}
ASSIGNMENTS = {**{kind: "optimization" for kind in opt.SPECS}, "adamw": "deeper"}


def mistaken_source(kind: str, flags: frozenset) -> str:
    """The exercise's class with the mistakes ``flags``, in the order course_lib.checks.optimizers.simulate
    applies them."""
    if kind in ("adam", "adamw"):
        return mistaken_adam(kind, flags)
    on = {flag: flag in flags for flag in opt.HINTS}
    lr = "self.lr ** 2" if on["lr_squared"] else "self.lr"
    sign = "" if on["ascends"] else "-"
    if kind == "sgd":
        return f'''
class SGD(OptimizerTemplate):
    def update_param(self, p):
        p.add_({sign}{lr} * p.grad)
'''
    if kind == "sgd_momentum":
        if on["beta_swapped"]:
            average = "(1 - b) * self.m[p] + b * p.grad"
        else:
            average = "b * self.m[p] + " + ("p.grad" if on["undamped"] else "(1 - b) * p.grad")
        return f'''
class SGDMomentum(OptimizerTemplate):
    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.m = {{p: torch.zeros_like(p) for p in self.params}}

    def update_param(self, p):
        b = self.momentum
        if {on["no_state"]}:
            self.m[p] = torch.zeros_like(p)
        self.m[p] = {average}
        p.add_({sign}{lr} * {"(1 - b) * " if on["damped_twice"] else ""}self.m[p])
'''


def mistaken_adam(kind: str, flags: frozenset) -> str:
    """Adam or AdamW with the mistakes ``flags``, in the order course_lib.checks.optimizers.simulate and
    course_lib.checks.adamw.simulate apply them."""
    on = {flag: flag in flags for flag in {*opt.HINTS, *adamw.HINTS}}
    if on["global_step"]:
        count = "self.calls"
    elif on["update_count"]:
        count = "self.updates"
    else:
        count = "self.t[p]"
    gradient = "g" if on["undamped"] else "(1 - self.b1) * g"
    corrected = ("m_hat, v_hat = self.m[p], self.v[p]" if on["no_bias_correction"] else
                 f"m_hat, v_hat = self.m[p] / (1 - self.b1 ** {count}), self.v[p] / (1 - self.b2 ** {count})")
    denominator = "torch.sqrt(v_hat + self.eps)" if on["eps_inside"] else "(torch.sqrt(v_hat) + self.eps)"
    lr = "self.lr ** 2" if on["lr_squared"] else "self.lr"
    sign = "" if on["ascends"] else "-"
    if kind == "adam":
        signature, decay_state, apply = "lr, beta1=0.9, beta2=0.999, eps=1e-8", "", "p.add_(update)"
    else:
        signature = "lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2"
        decay_state = "self.wd = weight_decay"
        if on["l2_decay"]:
            apply = "p.add_(update)"
        elif on["decay_after_update"]:
            apply = "p.add_(update)\n        p.mul_(1 - self.lr * self.wd)"
        else:
            apply = f"p.mul_(1 - {'self.wd' if on['decay_unscaled'] else 'self.lr * self.wd'})\n        p.add_(update)"
    return f'''
class {CLASS_NAMES[kind]}(OptimizerTemplate):
    def __init__(self, params, {signature}):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        {decay_state}
        self.calls, self.updates = 0, 0
        self.t = {{p: 0 for p in self.params}}
        self.m = {{p: torch.zeros_like(p) for p in self.params}}
        self.v = {{p: torch.zeros_like(p) for p in self.params}}

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        if {on["no_state"]}:
            self.m[p], self.v[p], self.t[p] = torch.zeros_like(p), torch.zeros_like(p), 0
        self.updates += 1
        self.t[p] += 1
        g = p.grad + self.wd * p if {on["l2_decay"]} else p.grad
        self.m[p] = self.b1 * self.m[p] + {gradient}
        self.v[p] = self.b2 * self.v[p] + (1 - self.b2) * g ** 2
        {corrected}
        update = {sign}{lr} * m_hat / {denominator}
        {apply}
'''


CASES = [(kind, frozenset(flags)) for kind, spec in SPECS.items() for size in (1, 2)
         for flags in itertools.combinations(spec.flags, size)]


# Pairs that cancel: m = beta m + g stepped by lr (1 - beta) m is the course's rule written as torch's buffer.
CORRECT_PAIRS = {("sgd_momentum", frozenset({"undamped", "damped_twice"}))}


# Pairs where one mistake hides the other: without bias correction, or with the count of step() calls, the
# shared update count is never used; with the decay in the gradient (L2), no decay of the weight is left to
# scale or to place after the step.
MASKED_PAIRS = {("adam", frozenset({"no_bias_correction", "update_count"})): frozenset({"no_bias_correction"}),
                ("adam", frozenset({"global_step", "update_count"})): frozenset({"global_step"}),
                ("adamw", frozenset({"l2_decay", "decay_unscaled"})): frozenset({"l2_decay"}),
                ("adamw", frozenset({"l2_decay", "decay_after_update"})): frozenset({"l2_decay"})}
# A count shared by all parameters also makes a parameter's path depend on the others (a metamorphic property).
ALSO_SHARED_STATE = {"update_count"}


def owning_properties(kind: str, flags: frozenset) -> set:
    """The properties that own any of ``flags`` (none for a pair that cancels)."""
    if (kind, flags) in CORRECT_PAIRS:
        return set()
    flags = MASKED_PAIRS.get((kind, flags), flags)
    spec = SPECS[kind]
    owners = {prop.name for prop in spec.properties if prop.mistakes & flags}
    return owners | ({spec.per_parameter_name} if flags & ALSO_SHARED_STATE else set())


@pytest.mark.parametrize("kind, flags", CASES, ids=[f"{k}-{'+'.join(sorted(f))}" for k, f in CASES])
def test_each_simulated_mistake_and_pair_is_named_by_grader_and_self_check(tmp_path, kind, flags):
    """Grader and self-check fail exactly the properties owning the mistakes, each with a mistake's hint."""
    assignment, seed = ASSIGNMENTS[kind], 5
    source = mistaken_source(kind, flags)
    graded = v1.grade_in_process(tmp_path, assignment, seed, [source], only=kind)[kind]
    challenge = make_challenge(assignment, seed)
    namespace = sc.solution_namespace(assignment)
    exec(source, namespace)
    checked = check_on(assignment, kind, namespace[CLASS_NAMES[kind]], challenge["exercises"][kind],
                       challenge["seed"])
    assert sc.outcome(checked) == sc.outcome(graded)
    failing = {p.name: p.message for p in graded.properties if not p.passed}
    assert set(failing) == owning_properties(kind, flags), failing
    hints = [HINTS[kind][f] for f in flags]
    for name, message in failing.items():
        if name == SPECS[kind].per_parameter_name:
            assert "keep the state of each parameter separate" in message
            continue
        assert any(hint in message for hint in hints), (name, message)
    if "lr_squared" not in flags:
        assert all("check the learning rate" not in m for m in failing.values()), failing
