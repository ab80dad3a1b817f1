"""grading.reports.similarity: planted near-copies outrank independent correct solutions; the report is safe HTML.

The submissions are placed in a temporary workspace as the grader places them (``prepare_submission``
against the release, one with its nbgrader metadata stripped as some editors do), without grading.
"""

from __future__ import annotations

import copy
import csv
import json
import re

import nbformat
import pytest

from grading.course import EXERCISES, grade_id, is_solution, release_notebook, source_notebook
from grading.intake.metadata import prepare_submission
from grading.reports.similarity import main, similarity_report, strip_skeleton
from grading.running.workspace import Workspace

# ---------------------------------------------------------------- optimization: independent solutions
# Each maps an answer cell's grade_id to the cell's whole source (class line, docstring and all).
OPT_TENSOR_OPS = {  # plain tensor arithmetic on .data, state created lazily
    "sgd": '''class SGD(OptimizerTemplate):
    """Stochastic gradient descent: w <- w - lr * g."""

    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        p.data = p.data - self.lr * p.grad
''',
    "sgd_momentum": '''class SGDMomentum(OptimizerTemplate):
    """SGD with momentum: m <- beta * m + (1 - beta) * g, then w <- w - lr * m."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.beta = momentum
        self.velocity = {}

    def update_param(self, p):
        old = self.velocity.get(p, torch.zeros_like(p.data))
        new = self.beta * old + (1 - self.beta) * p.grad
        self.velocity[p] = new
        p.data = p.data - self.lr * new
''',
    "adam": '''class Adam(OptimizerTemplate):
    """Adam: bias-corrected moving averages of g and g^2; step lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.b1 = beta1
        self.b2 = beta2
        self.eps = eps
        self.state = {}

    def update_param(self, p):
        if p not in self.state:
            self.state[p] = (0, torch.zeros_like(p.data), torch.zeros_like(p.data))
        n, first, second = self.state[p]
        n = n + 1
        first = self.b1 * first + (1 - self.b1) * p.grad
        second = self.b2 * second + (1 - self.b2) * p.grad ** 2
        self.state[p] = (n, first, second)
        first_hat = first / (1 - self.b1 ** n)
        second_hat = second / (1 - self.b2 ** n)
        p.data = p.data - self.lr * first_hat / (torch.sqrt(second_hat) + self.eps)
''',
}

OPT_LOOPS = {  # state in lists indexed by the parameter's position, found with a loop; explicit update steps
    "sgd": '''class SGD(OptimizerTemplate):
    """Stochastic gradient descent: w <- w - lr * g."""

    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        step = p.grad.clone()
        step.mul_(self.lr)
        p.data.sub_(step)
''',
    "sgd_momentum": '''class SGDMomentum(OptimizerTemplate):
    """SGD with momentum: m <- beta * m + (1 - beta) * g, then w <- w - lr * m."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.mu = momentum
        self.slots = [None for _ in self.params]

    def update_param(self, p):
        idx = 0
        while self.params[idx] is not p:
            idx += 1
        if self.slots[idx] is None:
            self.slots[idx] = torch.zeros_like(p)
        buf = self.slots[idx]
        buf *= self.mu
        buf += (1.0 - self.mu) * p.grad
        p.data -= self.lr * buf
''',
    "adam": '''class Adam(OptimizerTemplate):
    """Adam: bias-corrected moving averages of g and g^2; step lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.betas = (beta1, beta2)
        self.eps = eps
        self.counts = [0 for _ in self.params]
        self.firsts = [None for _ in self.params]
        self.seconds = [None for _ in self.params]

    def update_param(self, p):
        j = 0
        while self.params[j] is not p:
            j += 1
        b1, b2 = self.betas
        if self.firsts[j] is None:
            self.firsts[j] = torch.zeros_like(p)
            self.seconds[j] = torch.zeros_like(p)
        self.counts[j] += 1
        t = self.counts[j]
        self.firsts[j] *= b1
        self.firsts[j] += (1 - b1) * p.grad
        self.seconds[j] *= b2
        self.seconds[j] += (1 - b2) * p.grad * p.grad
        mhat = self.firsts[j] / (1 - b1 ** t)
        vhat = self.seconds[j] / (1 - b2 ** t)
        p.data -= self.lr * mhat / (vhat.sqrt() + self.eps)
''',
}

OPT_FUNCTIONAL = {  # torch functions instead of in-place methods, state on a per-parameter dict
    "sgd": '''class SGD(OptimizerTemplate):
    """Stochastic gradient descent: w <- w - lr * g."""

    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        with torch.no_grad():
            p.copy_(torch.sub(p, torch.mul(p.grad, self.lr)))
''',
    "sgd_momentum": '''class SGDMomentum(OptimizerTemplate):
    """SGD with momentum: m <- beta * m + (1 - beta) * g, then w <- w - lr * m."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.store = dict()

    def update_param(self, p):
        key = id(p)
        m = self.store.setdefault(key, torch.zeros_like(p))
        torch.lerp(m, p.grad, 1 - self.momentum, out=m)
        with torch.no_grad():
            p.copy_(torch.sub(p, torch.mul(m, self.lr)))
''',
    "adam": '''class Adam(OptimizerTemplate):
    """Adam: bias-corrected moving averages of g and g^2; step lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.hyper = dict(beta1=beta1, beta2=beta2, eps=eps)
        self.store = dict()

    def update_param(self, p):
        s = self.store.setdefault(id(p), dict(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p)))
        s["step"] += 1
        torch.lerp(s["m"], p.grad, 1 - self.hyper["beta1"], out=s["m"])
        torch.lerp(s["v"], torch.square(p.grad), 1 - self.hyper["beta2"], out=s["v"])
        corr1 = 1 - torch.tensor(self.hyper["beta1"]).pow(s["step"]).item()
        corr2 = 1 - torch.tensor(self.hyper["beta2"]).pow(s["step"]).item()
        denom = torch.add(torch.sqrt(torch.div(s["v"], corr2)), self.hyper["eps"])
        with torch.no_grad():
            p.copy_(torch.sub(p, torch.mul(torch.div(torch.div(s["m"], corr1), denom), self.lr)))
''',
}

# Near-copies of OPT_TENSOR_OPS: renamed variables, reordered independent statements, changed and added
# comments, reformatting (spacing, line breaks, parentheses that change nothing).
OPT_COPY_RENAMED = {
    "sgd": '''class SGD(OptimizerTemplate):
    """Stochastic gradient descent: w <- w - lr * g."""

    def __init__(self, params, lr):
        super().__init__(params, lr)

    def update_param(self, p):
        # plain gradient step
        p.data = p.data - self.lr*p.grad
''',
    "sgd_momentum": '''class SGDMomentum(OptimizerTemplate):
    """SGD with momentum: m <- beta * m + (1 - beta) * g, then w <- w - lr * m."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.vel = {}  # one buffer per parameter
        self.mom = momentum

    def update_param(self, p):
        # previous velocity (zero the first time)
        prev = self.vel.get(p, torch.zeros_like(p.data))
        cur = self.mom*prev + (1 - self.mom)*p.grad
        self.vel[p] = cur
        p.data = p.data - self.lr * cur  # take the step
''',
    "adam": '''class Adam(OptimizerTemplate):
    """Adam: bias-corrected moving averages of g and g^2; step lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.epsilon = eps
        self.beta_1 = beta1
        self.beta_2 = beta2
        self.memory = {}

    def update_param(self, p):
        # lazily create the moments
        if p not in self.memory:
            self.memory[p] = (0, torch.zeros_like(p.data), torch.zeros_like(p.data))
        k, mean, sq = self.memory[p]
        k = k + 1
        sq = self.beta_2 * sq + (1 - self.beta_2) * p.grad ** 2
        mean = self.beta_1 * mean + (1 - self.beta_1) * p.grad
        self.memory[p] = (k, mean, sq)
        # bias correction
        sq_hat = sq / (1 - self.beta_2 ** k)
        mean_hat = mean / (1 - self.beta_1 ** k)
        p.data = p.data - self.lr * mean_hat / (torch.sqrt(sq_hat) + self.epsilon)
''',
}

OPT_COPY_REFORMATTED = {
    "sgd": OPT_TENSOR_OPS["sgd"],
    "sgd_momentum": '''class SGDMomentum(OptimizerTemplate):
    """SGD with momentum: m <- beta * m + (1 - beta) * g, then w <- w - lr * m."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        self.velocity = dict()
        self.beta = momentum

    def update_param(self, p):
        v_old = self.velocity.get(
            p, torch.zeros_like(p.data)
        )
        v_new = (self.beta * v_old
                 + (1 - self.beta) * p.grad)
        self.velocity[p] = v_new
        p.data = (p.data - self.lr * v_new)
''',
    "adam": '''class Adam(OptimizerTemplate):
    """Adam: bias-corrected moving averages of g and g^2; step lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.state = {}
        self.eps = eps
        self.b2 = beta2
        self.b1 = beta1

    def update_param(self, p):
        """One Adam step for the parameter p."""
        if p not in self.state:
            self.state[p] = (0,
                             torch.zeros_like(p.data),
                             torch.zeros_like(p.data))
        step, m1, m2 = self.state[p]
        step = step + 1
        m1 = self.b1 * m1 + (1 - self.b1) * p.grad
        m2 = self.b2 * m2 + (1 - self.b2) * p.grad ** 2
        self.state[p] = (step, m1, m2)
        m1_hat = m1 / (1 - self.b1 ** step)
        m2_hat = m2 / (1 - self.b2 ** step)
        p.data = p.data - self.lr * m1_hat / (torch.sqrt(m2_hat) + self.eps)
''',
}

# ------------------------------------------------------------- initialization: independent solutions
INIT_MODULES = {  # over the Linear modules, fan-in from in_features
    "var_init": '''def var_init(model, std=0.01):
    """Draw every weight of ``model`` from N(0, std^2), in place."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
''',
    "equal_var_init": '''def equal_var_init(model):
    """Weights from N(0, 1/fan_in), biases 0, in place."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 1.0 / layer.in_features ** 0.5)
            nn.init.zeros_(layer.bias)
''',
    "xavier_init": '''def xavier_init(model):
    """Weights from U[-a, a] with a = sqrt(6 / (fan_in + fan_out)), biases 0, in place."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            limit = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
            nn.init.uniform_(layer.weight, -limit, limit)
            nn.init.zeros_(layer.bias)
''',
    "backward_variance_ratio": '''def backward_variance_ratio(weight, grad_output):
    """Var(grad_output @ weight) / Var(grad_output): how a layer scales the variance of the gradients."""
    return float(torch.var(torch.matmul(grad_output, weight)) / torch.var(grad_output))
''',
    "relu_variance_ratio": '''def relu_variance_ratio(weight, x):
    """Var(relu(x) @ weight.T) / Var(x): what a ReLU and then the layer do to the variance of x."""
    return float(torch.var(torch.matmul(torch.clamp(x, min=0), weight.t())) / torch.var(x))
''',
    "kaiming_init": '''def kaiming_init(model):
    """First linear layer N(0, 1/fan_in), later ones N(0, 2/fan_in) (they follow a ReLU); biases 0."""
    first = True
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            scale = 1.0 if first else 2.0
            nn.init.normal_(layer.weight, 0.0, (scale / layer.in_features) ** 0.5)
            nn.init.zeros_(layer.bias)
            first = False
''',
}

INIT_PARAMS = {  # over the parameters with their names, tensor methods, explicit loops
    "var_init": '''def var_init(model, std=0.01):
    """Draw every weight of ``model`` from N(0, std^2), in place."""
    params = dict(model.named_parameters())
    for key in params:
        if "weight" in key:
            params[key].data = torch.randn_like(params[key]) * std
''',
    "equal_var_init": '''def equal_var_init(model):
    """Weights from N(0, 1/fan_in), biases 0, in place."""
    params = dict(model.named_parameters())
    for key in params:
        tensor = params[key]
        if tensor.dim() == 1:
            tensor.data = torch.zeros_like(tensor)
        else:
            tensor.data = torch.randn_like(tensor) / math.sqrt(tensor.size(1))
''',
    "xavier_init": '''def xavier_init(model):
    """Weights from U[-a, a] with a = sqrt(6 / (fan_in + fan_out)), biases 0, in place."""
    params = dict(model.named_parameters())
    for key in params:
        tensor = params[key]
        if tensor.dim() == 1:
            tensor.data = torch.zeros_like(tensor)
        else:
            rows, cols = tensor.size()
            a = math.sqrt(6 / (rows + cols))
            tensor.data = (torch.rand_like(tensor) * 2 - 1) * a
''',
    "backward_variance_ratio": '''def backward_variance_ratio(weight, grad_output):
    """Var(grad_output @ weight) / Var(grad_output): how a layer scales the variance of the gradients."""
    back = grad_output.mm(weight)
    ratio = back.var() / grad_output.var()
    return ratio.item()
''',
    "relu_variance_ratio": '''def relu_variance_ratio(weight, x):
    """Var(relu(x) @ weight.T) / Var(x): what a ReLU and then the layer do to the variance of x."""
    activated = x.clone()
    activated[activated < 0] = 0
    out = activated.mm(weight.transpose(0, 1))
    return (out.var() / x.var()).item()
''',
    "kaiming_init": '''def kaiming_init(model):
    """First linear layer N(0, 1/fan_in), later ones N(0, 2/fan_in) (they follow a ReLU); biases 0."""
    params = dict(model.named_parameters())
    count = 0
    for key in params:
        tensor = params[key]
        if tensor.dim() == 1:
            tensor.data = torch.zeros_like(tensor)
        else:
            gain = 2.0 if count > 0 else 1.0
            tensor.data = torch.randn_like(tensor) * math.sqrt(gain / tensor.size(1))
            count += 1
''',
}

INIT_COPY = {  # INIT_PARAMS renamed, comments changed, reformatted, independent statements swapped
    "var_init": '''def var_init(model, std=0.01):
    """Draw every weight of ``model`` from N(0, std^2), in place."""
    # every weight matrix gets N(0, std^2)
    named = dict(model.named_parameters())
    for name in named:
        if "weight" in name:
            named[name].data = torch.randn_like(named[name])*std
''',
    "equal_var_init": '''def equal_var_init(model):
    """Weights from N(0, 1/fan_in), biases 0, in place."""
    named = dict(model.named_parameters())
    for name in named:
        w = named[name]
        if w.dim() == 1:  # a bias
            w.data = torch.zeros_like(w)
        else:
            w.data = torch.randn_like(w)/math.sqrt(w.size(1))
''',
    "xavier_init": '''def xavier_init(model):
    """Weights from U[-a, a] with a = sqrt(6 / (fan_in + fan_out)), biases 0, in place."""
    named = dict(model.named_parameters())
    for name in named:
        w = named[name]
        if w.dim() == 1:
            w.data = torch.zeros_like(w)
        else:
            fan_out, fan_in = w.size()
            bound = math.sqrt(6 / (fan_out + fan_in))
            w.data = (torch.rand_like(w)*2 - 1)*bound
''',
    "backward_variance_ratio": '''def backward_variance_ratio(weight, grad_output):
    """Var(grad_output @ weight) / Var(grad_output): how a layer scales the variance of the gradients."""
    g_in = grad_output.mm(weight)
    return (g_in.var() / grad_output.var()).item()
''',
    "relu_variance_ratio": '''def relu_variance_ratio(weight, x):
    """Var(relu(x) @ weight.T) / Var(x): what a ReLU and then the layer do to the variance of x."""
    h = x.clone()
    h[h < 0] = 0  # ReLU
    y = h.mm(weight.transpose(0, 1))
    return (y.var() / x.var()).item()
''',
    "kaiming_init": '''def kaiming_init(model):
    """First linear layer N(0, 1/fan_in), later ones N(0, 2/fan_in) (they follow a ReLU); biases 0."""
    n = 0
    named = dict(model.named_parameters())
    for name in named:
        w = named[name]
        if w.dim() == 1:
            w.data = torch.zeros_like(w)
        else:
            g = 2.0 if n > 0 else 1.0
            w.data = torch.randn_like(w)*math.sqrt(g / w.size(1))
            n += 1
''',
}


def _notebooks(assignment):
    release = nbformat.read(str(release_notebook(assignment)), 4)
    source = nbformat.read(str(source_notebook(assignment)), 4)
    return release, source


def with_answers(release, answers: dict[str, str], strip_metadata: bool = False):
    """The release with the given answer cells' sources (optionally without nbgrader metadata, as some editors
    save it)."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    if strip_metadata:
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)
    return nb


def reference(release, source):
    """The reference solution as a student would hand it in."""
    answers = {grade_id(c): "\n".join(line for line in c.source.splitlines() if "### " not in line)
               for c in source.cells if is_solution(c)}
    return with_answers(release, answers)


def place(tmp_path, assignment, notebooks: dict, names: dict | None = None) -> Workspace:
    """Place notebooks in a workspace as the grader does (repaired against the release), plus a grade CSV."""
    ws = Workspace(tmp_path / "ws", assignment)
    release, _ = _notebooks(assignment)
    for student, nb in notebooks.items():
        repaired, _, _ = prepare_submission(json.dumps(nb), release)
        target = ws.submitted_notebook(student)
        target.parent.mkdir(parents=True)
        target.write_text(nbformat.writes(repaired))
    with open(ws.grades_csv(), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student_id", "student_name"])
        writer.writeheader()
        writer.writerows({"student_id": s, "student_name": (names or {}).get(s, s)} for s in notebooks)
    return ws


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ranks_copies_first(rows, families: dict[str, str]):
    """(lowest similarity among same-family pairs, highest among the others)."""
    same = [float(r["similarity"]) for r in rows if families[r["student_a"]] == families[r["student_b"]]]
    other = [float(r["similarity"]) for r in rows if families[r["student_a"]] != families[r["student_b"]]]
    return min(same), max(other), same, other


def test_optimization_near_copies_rank_above_independent_solutions(tmp_path):
    release, source = _notebooks("optimization")
    notebooks = {
        "reference": reference(release, source),
        "tensor_ops": with_answers(release, OPT_TENSOR_OPS),
        "loops": with_answers(release, OPT_LOOPS),
        "functional": with_answers(release, OPT_FUNCTIONAL),
        "copy_renamed": with_answers(release, OPT_COPY_RENAMED),
        "copy_reformatted": with_answers(release, OPT_COPY_REFORMATTED, strip_metadata=True),
        "partial_copy": with_answers(release, {**OPT_LOOPS, "adam": OPT_COPY_RENAMED["adam"]}),  # Adam only
        "untouched_1": copy.deepcopy(release),
        "untouched_2": copy.deepcopy(release),
    }
    families = {s: s for s in notebooks} | {"copy_renamed": "tensor_ops", "copy_reformatted": "tensor_ops"}
    ws = place(tmp_path, "optimization", notebooks)
    csv_path, html_path, pairs = similarity_report("optimization", ws.root, top=0)
    rows = read_rows(csv_path)
    assert len(rows) == len(notebooks) * (len(notebooks) - 1) // 2
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [float(r["similarity"]) for r in rows] == sorted((float(r["similarity"]) for r in rows), reverse=True)
    partial = {r["student_b"] if r["student_a"] == "partial_copy" else r["student_a"]: r for r in rows
               if "partial_copy" in (r["student_a"], r["student_b"])}
    rows = [r for r in rows if "partial_copy" not in (r["student_a"], r["student_b"])]
    copies, independent, _, _ = ranks_copies_first(rows, families)
    print(f"optimization: lowest copy pair {copies:.3f}, highest independent pair {independent:.3f}")
    assert copies > independent, (copies, independent)
    assert copies >= 0.5 and independent < 0.35
    # one exercise copied: that exercise's column says so, and the pair still outranks independent work
    for source in ("tensor_ops", "copy_renamed", "copy_reformatted"):
        row = partial[source]
        assert float(row["adam"]) > 0.7 and float(row["sgd_momentum"] or 0) < 0.2, row
        assert float(row["similarity"]) > independent, row
    assert float(partial["loops"]["adam"] or 0) < 0.2 and float(partial["loops"]["sgd_momentum"]) > 0.9
    top3 = {frozenset((r["student_a"], r["student_b"])) for r in rows[:3]}
    assert top3 == {frozenset(p) for p in [("tensor_ops", "copy_renamed"), ("tensor_ops", "copy_reformatted"),
                                           ("copy_renamed", "copy_reformatted")]}
    # untouched releases: nothing written, nothing similar
    untouched = [r for r in rows if {r["student_a"], r["student_b"]} == {"untouched_1", "untouched_2"}][0]
    assert float(untouched["similarity"]) == 0.0
    # the reference is boilerplate; a student's likeness to it is reported on its own
    ref_rows = [r for r in rows if r["student_a"] == "reference"]
    assert all(float(r["reference_a"]) > 0.9 for r in ref_rows)
    assert all(float(r["similarity"]) < 0.1 for r in ref_rows)
    per_exercise = {k for k in rows[0]} & {e.key for e in EXERCISES["optimization"]}
    assert per_exercise == {"sgd", "sgd_momentum", "adam"}
    assert float(rows[0]["adam"]) > 0.5 and int(rows[0]["shared_tokens"]) > 50


def test_initialization_near_copies_rank_above_independent_solutions(tmp_path):
    release, source = _notebooks("initialization")
    notebooks = {"reference": reference(release, source), "modules": with_answers(release, INIT_MODULES),
                 "params": with_answers(release, INIT_PARAMS), "params_copy": with_answers(release, INIT_COPY),
                 "untouched_1": copy.deepcopy(release), "untouched_2": copy.deepcopy(release)}
    families = {s: s for s in notebooks} | {"params_copy": "params"}
    ws = place(tmp_path, "initialization", notebooks)
    csv_path, _, _ = similarity_report("initialization", ws.root, top=0)
    rows = read_rows(csv_path)
    copies, independent, _, _ = ranks_copies_first(rows, families)
    print(f"initialization: copy pair {copies:.3f}, highest independent pair {independent:.3f}")
    assert copies > independent and copies >= 0.5
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"params", "params_copy"}
    untouched = [r for r in rows if {r["student_a"], r["student_b"]} == {"untouched_1", "untouched_2"}][0]
    assert float(untouched["similarity"]) == 0.0


def test_html_escapes_student_code_and_names(tmp_path):
    release, _ = _notebooks("optimization")
    evil = dict(OPT_TENSOR_OPS)
    evil["sgd"] = OPT_TENSOR_OPS["sgd"] + '        note = "</pre><script>alert(1)</script>"\n'
    notebooks = {"x1": with_answers(release, evil), "x2": with_answers(release, evil)}
    ws = place(tmp_path, "optimization", notebooks, names={"x1": "<script>alert(2)</script>", "x2": "Zoë Ñandú"})
    assert main(["optimization", "--workspace", str(ws.root), "--top", "5"]) == 0
    page = (ws.root / "similarity_optimization.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    unmarked = re.sub(r"</?mark[^>]*>", "", page)
    assert "&quot;&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in unmarked or \
        "&#34;&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in unmarked
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page and "Zoë Ñandú" in page
    assert "<mark" in page  # the matched code is highlighted
    assert "<link" not in page and "src=" not in page  # self-contained
    rows = read_rows(ws.root / "similarity_optimization.csv")
    assert rows[0]["name_a"] == "<script>alert(2)</script>" and rows[0]["name_b"] == "Zoë Ñandú"
    assert float(rows[0]["similarity"]) > 0.99


def test_strip_skeleton_keeps_only_what_the_student_wrote():
    skeleton = 'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()'
    written = 'def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    y = x + 1\n\n    return y\n    ### END SOLUTION'
    assert strip_skeleton(written, skeleton) == "    y = x + 1\n    return y"
    assert strip_skeleton(skeleton, skeleton) == ""


def test_fewer_than_two_submissions_is_an_error(tmp_path):
    release, _ = _notebooks("optimization")
    ws = place(tmp_path, "optimization", {"alone": copy.deepcopy(release)})
    with pytest.raises(ValueError, match="nothing to compare"):
        similarity_report("optimization", ws.root)
    assert main(["optimization", "--workspace", str(ws.root)]) == 2
