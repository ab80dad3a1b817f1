"""The verdicts of the optional "deeper" assignment, judged in process (probe, then judge; no nbgrader).

Each common mistake of orthogonal_init, lsuv_init, AdamW and warmup_cosine_lr fails exactly the properties
listed for it, on several seeds, and keeps the others; correct readings (SVD, torch.nn.init, float32
arithmetic, torch.optim.AdamW) score full marks; submissions that do nothing, return garbage or change
their inputs earn nothing they did not compute; malformed result files fail their exercise only.
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from test_verdicts import _load, _save, failed, grade_in_process, grading_env

from course_lib.checks import adamw, deeper
from grading.authoring.solutions import solution_namespace
from grading.course import EXERCISES
from grading.judging import judge, make_challenge
from grading.sandbox import probe

ORTHOGONAL, GAIN, DEFAULT_GAIN = deeper.ORTHOGONAL, deeper.GAIN, deeper.DEFAULT_GAIN
UNIFORM, BIASES = deeper.UNIFORM, deeper.BIASES
START, VARIANCE, CENTRED = deeper.LSUV_START, deeper.LSUV_VARIANCE, deeper.LSUV_CENTRED
ADAM_STEP, BIAS, DECOUPLED, DECAY_SIZE = adamw.ADAM_STEP, adamw.BIAS, adamw.DECOUPLED, adamw.DECAY_SIZE
DEFAULT_ARGS = adamw.DEFAULT_ARGS
WARMUP, COSINE, END, NO_WARMUP, DEFAULT_MIN = (deeper.WARMUP, deeper.COSINE, deeper.END, deeper.NO_WARMUP,
                                               deeper.DEFAULT_MIN)
ASSIGNMENT = "deeper"

# exercise -> mistake -> (source, the properties it must fail)
MISTAKES = {
    'orthogonal_init': {
        'no sign fix': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                q, r = torch.linalg.qr(torch.randn(max(fan_out, fan_in), min(fan_out, fan_in)))
                layer.weight.copy_(gain * (q if fan_out >= fan_in else q.T))
                layer.bias.zero_()
''', {UNIFORM}),
        'gain ignored': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                q, r = torch.linalg.qr(torch.randn(max(fan_out, fan_in), min(fan_out, fan_in)))
                q = q * torch.sign(torch.diagonal(r))
                layer.weight.copy_(q if fan_out >= fan_in else q.T)
                layer.bias.zero_()
''', {GAIN}),
        'gain squared': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                q, r = torch.linalg.qr(torch.randn(max(fan_out, fan_in), min(fan_out, fan_in)))
                q = q * torch.sign(torch.diagonal(r))
                layer.weight.copy_(gain ** 2 * (q if fan_out >= fan_in else q.T))
                layer.bias.zero_()
''', {GAIN}),
        'non-square layers left Gaussian': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                if fan_out == fan_in:
                    q, r = torch.linalg.qr(torch.randn(fan_out, fan_in))
                    layer.weight.copy_(gain * q * torch.sign(torch.diagonal(r)))
                else:
                    layer.weight.normal_(0, gain / math.sqrt(fan_in))
                layer.bias.zero_()
''', {ORTHOGONAL}),
        'rows normalized, not orthogonalized': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                w = torch.randn_like(layer.weight)
                layer.weight.copy_(gain * w / w.norm(dim=1, keepdim=True))
                layer.bias.zero_()
''', {ORTHOGONAL, GAIN, DEFAULT_GAIN, UNIFORM}),
        'biases left as they were': ('''
def orthogonal_init(model, gain=1.0):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                q, r = torch.linalg.qr(torch.randn(max(fan_out, fan_in), min(fan_out, fan_in)))
                q = q * torch.sign(torch.diagonal(r))
                layer.weight.copy_(gain * (q if fan_out >= fan_in else q.T))
''', {BIASES}),
        'default gain sqrt(2)': ('''
def orthogonal_init(model, gain=math.sqrt(2)):
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                q, r = torch.linalg.qr(torch.randn(max(fan_out, fan_in), min(fan_out, fan_in)))
                q = q * torch.sign(torch.diagonal(r))
                layer.weight.copy_(gain * (q if fan_out >= fan_in else q.T))
                layer.bias.zero_()
''', {DEFAULT_GAIN}),
    },
    'lsuv_init': {
        'biases ignored': ('''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    orthogonal_init(model)
    with torch.no_grad():
        x = batch.reshape(batch.shape[0], -1)
        for module in model.layers:
            if isinstance(module, nn.Linear):
                for _ in range(max_iter):
                    var = module(x).var()
                    if abs(var - 1) <= tol:
                        break
                    module.weight.div_(var.sqrt())
            x = module(x)
''', {CENTRED}),
        'bias not rescaled with the weight': ('''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    orthogonal_init(model)
    with torch.no_grad():
        x = batch.reshape(batch.shape[0], -1)
        for module in model.layers:
            if isinstance(module, nn.Linear):
                module.bias.sub_(module(x).mean(dim=0))
                for _ in range(max_iter):
                    var = module(x).var()
                    if abs(var - 1) <= tol:
                        break
                    module.weight.div_(var.sqrt())
            x = module(x)
''', {CENTRED}),
        'variance measured after the activation': ('''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    orthogonal_init(model)
    layers = list(model.layers)
    with torch.no_grad():
        x = batch.reshape(batch.shape[0], -1)
        for i, module in enumerate(layers):
            if isinstance(module, nn.Linear):
                after = layers[i + 1] if i + 1 < len(layers) else nn.Identity()
                for _ in range(max_iter):
                    module.bias.sub_(module(x).mean(dim=0))
                    var = after(module(x)).var()
                    if abs(var - 1) <= tol:
                        break
                    module.weight.div_(var.sqrt())
                    module.bias.div_(var.sqrt())
            x = module(x)
''', {VARIANCE}),
        'no orthogonal start': ('''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
        x = batch.reshape(batch.shape[0], -1)
        for module in model.layers:
            if isinstance(module, nn.Linear):
                for _ in range(max_iter):
                    module.bias.sub_(module(x).mean(dim=0))
                    var = module(x).var()
                    if abs(var - 1) <= tol:
                        break
                    module.weight.div_(var.sqrt())
                    module.bias.div_(var.sqrt())
            x = module(x)
''', {START}),
        'all layers rescaled from one forward pass': ('''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    orthogonal_init(model)
    with torch.no_grad():
        x = batch.reshape(batch.shape[0], -1)
        stats = []
        for module in model.layers:
            x = module(x)
            if isinstance(module, nn.Linear):
                stats.append((module, x.mean(dim=0), x.var()))
        for module, mean, var in stats:
            module.bias.sub_(mean)
            module.weight.div_(var.sqrt())
            module.bias.div_(var.sqrt())
''', {VARIANCE, CENTRED}),
    },
    'adamw': {
        'weight decay through the gradient (L2)': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad + self.weight_decay * p
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
''', {DECOUPLED}),
        'decay not scaled by lr': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.mul_(1 - self.weight_decay)
        p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
''', {DECAY_SIZE}),
        'decay after the step': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
        p.mul_(1 - self.lr * self.weight_decay)
''', {DECAY_SIZE}),
        'no bias correction': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.mul_(1 - self.lr * self.weight_decay)
        p.sub_(self.lr * self.m[p] / (self.v[p].sqrt() + self.eps))
''', {BIAS}),
        'global step count': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.calls
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.mul_(1 - self.lr * self.weight_decay)
        p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
''', {BIAS}),
        'eps inside the square root': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.mul_(1 - self.lr * self.weight_decay)
        p.sub_(self.lr * m_hat / (v_hat + self.eps).sqrt())
''', {ADAM_STEP}),
        'default weight decay 0': ('''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = {p: 0 for p in self.params}
        self.m = {p: torch.zeros_like(p) for p in self.params}
        self.v = {p: torch.zeros_like(p) for p in self.params}
        self.calls = 0

    def step(self):
        self.calls += 1
        super().step()

    def update_param(self, p):
        self.t[p] += 1
        t = self.t[p]
        g = p.grad
        self.m[p] = self.beta1 * self.m[p] + (1 - self.beta1) * g
        self.v[p] = self.beta2 * self.v[p] + (1 - self.beta2) * g ** 2
        m_hat = self.m[p] / (1 - self.beta1 ** t)
        v_hat = self.v[p] / (1 - self.beta2 ** t)
        p.mul_(1 - self.lr * self.weight_decay)
        p.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
''', {DEFAULT_ARGS}),
    },
    'warmup_cosine_lr': {
        'warm-up off by one': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {WARMUP}),
        'cosine counted from step 0': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = step / total_steps
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {COSINE}),
        'min_lr reached one step early': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - 1 - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {COSINE}),
        'cosine decays to 0': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
''', {COSINE}),
        'no clamp after total_steps': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {END}),
        'warm-up divides by zero': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):
    warm = min(1.0, step / warmup_steps)
    if step < warmup_steps:
        return base_lr * warm
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {NO_WARMUP}),
        'default min_lr 1e-5': ('''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=1e-5):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
''', {DEFAULT_MIN}),
    },
}


@pytest.mark.parametrize("exercise, mistake", [(e, m) for e, table in MISTAKES.items() for m in table])
def test_common_mistake_fails_exactly_its_properties(tmp_path, exercise, mistake):
    """Each mistake fails the properties listed for it, for every seed, and keeps all the others."""
    source, expected = MISTAKES[exercise][mistake]
    for seed in range(3):
        verdict = grade_in_process(tmp_path / str(seed), ASSIGNMENT, seed, [source], only=exercise)[exercise]
        assert failed(verdict) == expected, (seed, [(p.name, p.passed, p.message) for p in verdict.properties])
        assert 0 <= verdict.fraction < 1
        for prop in verdict.properties:
            assert prop.passed or prop.message, prop.name


def test_property_weights_add_up_and_points_total_14():
    """Every exercise's weights sum to 1; the assignment is worth 3 + 4 + 5 + 2 points."""
    import nbformat

    from grading.course import nbgrader_meta, source_notebook
    from grading.judging import property_weights

    challenge = make_challenge(ASSIGNMENT, 0)
    for exercise in EXERCISES[ASSIGNMENT]:
        assert abs(sum(property_weights(ASSIGNMENT, exercise.key, challenge).values()) - 1) < 1e-9
    cells = nbformat.read(source_notebook(ASSIGNMENT), as_version=4).cells
    points = {nbgrader_meta(c)["grade_id"]: nbgrader_meta(c)["points"] for c in cells if nbgrader_meta(c).get("grade")}
    assert points == {"orthogonal_init_tests": 3, "lsuv_init_tests": 4, "adamw_tests": 5, "warmup_cosine_lr_tests": 2}


CORRECT_VARIANTS = {
    "orthogonal_init": '''
def orthogonal_init(model, gain=1.0):  # the polar factor U V^T of a Gaussian matrix (SVD) is uniform too
    for layer in model.linear_layers().values():
        u, _, vh = torch.linalg.svd(torch.randn_like(layer.weight, dtype=torch.float64), full_matrices=False)
        layer.weight.data = (gain * u @ vh).float()
        layer.bias.data.zero_()
''',
    "lsuv_init": '''
def lsuv_init(model, batch, tol=0.05, max_iter=10):  # forward hooks, population variance, layer by layer
    orthogonal_init(model)
    for layer in model.linear_layers().values():
        seen = {}
        handle = layer.register_forward_hook(lambda m, i, o: seen.update(out=o.detach()))
        for _ in range(max_iter):
            with torch.no_grad():
                model(batch)
                layer.bias -= seen["out"].mean(0)
                model(batch)
                var = seen["out"].var(unbiased=False)
                if abs(var - 1) <= tol:
                    break
                layer.weight /= var.sqrt()
                layer.bias /= var.sqrt()
        handle.remove()
''',
    "warmup_cosine_lr": '''
def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):  # float32 tensors, one formula
    s = torch.tensor(float(step))
    if step < warmup_steps:
        return (base_lr * s / warmup_steps).item()
    p = torch.clamp((s - warmup_steps) / (total_steps - warmup_steps), max=1.0)
    return (min_lr + (base_lr - min_lr) * 0.5 * (1 + torch.cos(math.pi * p))).item()
''',
    "adamw": '''
class AdamW(OptimizerTemplate):  # lazy float32 state, decay written as w - lr * wd * w
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.b1, self.b2, self.eps, self.wd, self.state = beta1, beta2, eps, weight_decay, {}

    def update_param(self, p):
        t, m, v = self.state.get(p, (0, torch.zeros(p.shape), torch.zeros(p.shape)))
        t, m = t + 1, self.b1 * m + (1 - self.b1) * p.grad
        v = self.b2 * v + (1 - self.b2) * p.grad ** 2
        self.state[p] = (t, m, v)
        step = (m / (1 - self.b1 ** t)) / ((v / (1 - self.b2 ** t)).sqrt() + self.eps)
        p.data = p.data - self.lr * self.wd * p.data - self.lr * step
''',
}

DELEGATING = {
    "orthogonal_init": '''
def orthogonal_init(model, gain=1.0):
    for layer in model.linear_layers().values():
        nn.init.orthogonal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)
''',
    "adamw": '''
class AdamW(OptimizerTemplate):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr)
        self.inner = torch.optim.AdamW(self.params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)

    def step(self):
        self.inner.step()
''',
}


@pytest.mark.parametrize("exercise", sorted(CORRECT_VARIANTS))
def test_other_correct_readings_score_full_marks(tmp_path, exercise):
    """SVD-based orthogonal weights, LSUV through hooks, float32 schedules and AdamW state: all 1.0."""
    for seed in range(2):
        verdict = grade_in_process(tmp_path / str(seed), ASSIGNMENT, seed, [CORRECT_VARIANTS[exercise]],
                                   only=exercise)[exercise]
        assert verdict.fraction == 1.0, [(p.name, p.message) for p in verdict.properties]


@pytest.mark.parametrize("exercise", sorted(DELEGATING))
def test_judging_alone_scores_delegation_on_its_numbers(tmp_path, exercise):
    """Judging looks at numbers only: torch.nn.init.orthogonal_ and torch.optim.AdamW, run without the kernel's
    tripwires, get full marks (in a grading kernel the tripwires refuse them: the corpus)."""
    verdict = grade_in_process(tmp_path, ASSIGNMENT, 1, [DELEGATING[exercise]], only=exercise)[exercise]
    assert verdict.fraction == 1.0, [(p.name, p.message) for p in verdict.properties]


TRIVIAL = {
    "orthogonal_init": "def orthogonal_init(model, gain=1.0):\n    pass\n",
    "lsuv_init": "def lsuv_init(model, batch, tol=0.05, max_iter=10):\n    for p in model.parameters():\n"
                 "        p.data.zero_()\n",
    "adamw": "class AdamW(OptimizerTemplate):\n    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, "
             "eps=1e-8, weight_decay=1e-2):\n        super().__init__(params, lr)\n\n"
             "    def update_param(self, p):\n        pass\n",
    "warmup_cosine_lr": "def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):\n"
                        "    return min_lr\n",
}

GARBAGE = {
    "orthogonal_init": "def orthogonal_init(model, gain=1.0):\n    for p in model.parameters():\n"
                       "        p.data = torch.full_like(p, float('nan'))\n",
    "lsuv_init": "def lsuv_init(model, batch, tol=0.05, max_iter=10):\n    return 'done'\n",
    "adamw": "class AdamW(OptimizerTemplate):\n    def update_param(self, p):\n        p.data = torch.randn(3)\n",
    "warmup_cosine_lr": "def warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0):\n"
                        "    return 'fast'\n",
}


@pytest.mark.parametrize("exercise", sorted(TRIVIAL))
def test_submissions_that_do_nothing_or_return_garbage_score_zero(tmp_path, exercise):
    """Doing nothing, zeroing everything, a constant, NaN, wrong shapes or strings earn no property at all."""
    for name, source in (("trivial", TRIVIAL[exercise]), ("garbage", GARBAGE[exercise])):
        verdict = grade_in_process(tmp_path / name, ASSIGNMENT, 0, [source], only=exercise)[exercise]
        assert verdict.fraction == 0.0, (name, [(p.name, p.passed, p.message) for p in verdict.properties])
        assert all(p.message for p in verdict.properties)


def test_changing_the_batch_or_the_model_earns_nothing_it_did_not_compute(tmp_path):
    """An LSUV that normalizes the batch in place first is judged on the grader's own copy of the batch."""
    source = '''
def lsuv_init(model, batch, tol=0.05, max_iter=10):
    batch.sub_(batch.mean()).div_(batch.std())
    _reference_lsuv(model, batch, tol, max_iter)
'''
    namespace = solution_namespace(ASSIGNMENT)
    verdict = grade_in_process(tmp_path, ASSIGNMENT, 2, ["_reference_lsuv = lsuv_init", source],
                               only="lsuv_init")["lsuv_init"]
    assert "lsuv_init" in namespace and failed(verdict) >= {VARIANCE, CENTRED}


def test_messages_name_the_mistake(tmp_path):
    """Failure messages say what the numbers show and which mistake they match."""
    cases = [("orthogonal_init", "no sign fix", UNIFORM, "sign of R's diagonal"),
             ("orthogonal_init", "gain squared", GAIN, "gain^2"),
             ("orthogonal_init", "non-square layers left Gaussian", ORTHOGONAL, "your square layers are right"),
             ("lsuv_init", "variance measured after the activation", VARIANCE, "before its activation"),
             ("lsuv_init", "biases ignored", CENTRED, "the biases are 0"),
             ("adamw", "weight decay through the gradient (L2)", DECOUPLED, "added to the gradient"),
             ("adamw", "decay after the step", DECAY_SIZE, "before the step"),
             ("warmup_cosine_lr", "warm-up off by one", WARMUP, "one step ahead"),
             ("warmup_cosine_lr", "cosine decays to 0", COSINE, "decays to min_lr")]
    for exercise, mistake, prop, words in cases:
        verdict = grade_in_process(tmp_path / exercise / mistake[:8], ASSIGNMENT, 7, [MISTAKES[exercise][mistake][0]],
                                   only=exercise)[exercise]
        message = next(p.message for p in verdict.properties if p.name == prop)
        assert words in message, (exercise, mistake, message)
        assert "assert" not in message and "grading" not in message


@pytest.fixture(scope="module")
def graded_deeper(tmp_path_factory):
    """The reference solutions probed once: (challenge, results folder)."""
    folder = tmp_path_factory.mktemp("reference")
    challenge = make_challenge(ASSIGNMENT, 11)
    namespace = solution_namespace(ASSIGNMENT)
    with grading_env(folder, challenge) as results:
        for exercise in EXERCISES[ASSIGNMENT]:
            probe.record(exercise.key, namespace[exercise.name])
    return challenge, results


MALFORMED = {
    ("warmup_cosine_lr", "wrong shape"): "has shape (3,)",
    ("lsuv_init", "wrong dtype"): "has shape",
    ("orthogonal_init", "NaN"): "NaN",
    ("adamw", "another exercise's results"): "belong to another exercise",
    ("warmup_cosine_lr", "pickle bytes"): "not a valid results file",
}


@pytest.mark.parametrize("exercise, kind", sorted(MALFORMED))
def test_malformed_results_fail_their_exercise_only(tmp_path, graded_deeper, exercise, kind):
    """A bad result file fails its exercise with a note; the other exercises keep full marks."""
    import pickle

    challenge, reference = graded_deeper
    results = tmp_path / "results"
    results.mkdir()
    for f in reference.iterdir():
        (results / f.name).write_bytes(f.read_bytes())
    target = results / f"{exercise}.safetensors"
    tensors, meta = _load(target)
    first = sorted(tensors)[0]
    if kind == "wrong shape":
        tensors[first] = torch.zeros(3, dtype=torch.float64)
        _save(target, tensors, meta)
    elif kind == "wrong dtype":
        tensors[first] = tensors[first].double()
        _save(target, tensors, meta)
    elif kind == "NaN":
        tensors[first].reshape(-1)[0] = float("nan")
        _save(target, tensors, meta)
    elif kind == "another exercise's results":
        target.write_bytes((results / "orthogonal_init.safetensors").read_bytes())
    else:
        target.write_bytes(pickle.dumps({first: [1.0]}))
    verdicts = judge(ASSIGNMENT, challenge, results)
    assert verdicts[exercise].fraction == 0.0 and MALFORMED[(exercise, kind)] in verdicts[exercise].note
    assert all(v.fraction == 1.0 for k, v in verdicts.items() if k != exercise)


def test_challenges_are_random_json_and_never_784_wide():
    """Architectures with wide, tall and square layers, random batches and schedules, plain JSON."""
    for seed in range(20):
        challenge = make_challenge(ASSIGNMENT, seed)
        assert json.loads(json.dumps(challenge)) == challenge
        for key in ("orthogonal_init", "lsuv_init"):
            for run in challenge["exercises"][key]["runs"].values():
                sizes = [run["input_size"], *run["hidden_sizes"], run["num_classes"]]
                assert 784 not in sizes
                pairs = list(zip(sizes[:-1], sizes[1:]))
                assert any(a == b for a, b in pairs) and any(a < b for a, b in pairs) and any(a > b for a, b in pairs)
    first, second = make_challenge(ASSIGNMENT, 0), make_challenge(ASSIGNMENT, 1)
    assert first["exercises"]["warmup_cosine_lr"] != second["exercises"]["warmup_cosine_lr"]


def test_oracles_agree_with_the_notebook_formulas():
    """torch's functional AdamW equals the formula of the notebook; the schedule oracle its three cases."""
    run = adamw.Run.decode("x", adamw.challenge(random.Random(3))["runs"]["main"])
    for want, got in zip(adamw.oracle(run), adamw.simulate(run, frozenset())):
        assert (want - got).abs().max() <= 1e-12 * (1 + want.abs().max())
    assert deeper.schedule_value(0, 100, 10, 2.0) == 0.0
    assert deeper.schedule_value(10, 100, 10, 2.0, 0.5) == 2.0
    assert math.isclose(deeper.schedule_value(55, 100, 10, 2.0, 0.5), 1.25)
    assert deeper.schedule_value(100, 100, 10, 2.0, 0.5) == deeper.schedule_value(140, 100, 10, 2.0, 0.5) == 0.5


def test_sign_test_tells_uniform_from_unfixed_qr():
    """Diagonal signs of uniform orthogonal matrices pass the bound; QR without the sign fix does not."""
    generator = torch.Generator().manual_seed(0)
    fixed, unfixed = [], []
    for _ in range(6):
        q, r = torch.linalg.qr(torch.randn(90, 60, generator=generator, dtype=torch.float64))
        fixed.append(torch.diagonal(q * torch.sign(torch.diagonal(r))))
        unfixed.append(torch.diagonal(q))
    bound = deeper.sign_bound(360)
    assert abs(float((torch.cat(fixed) < 0).double().mean()) - 0.5) <= bound
    assert float((torch.cat(unfixed) < 0).double().mean()) - 0.5 > bound
