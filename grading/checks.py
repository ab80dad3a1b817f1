"""The hidden tests of the two assignments, called from one-line hidden test cells.

Their source stays out of the notebooks (and so out of any feedback). Each check draws fresh random
sizes, standard deviations, learning rates, betas and step counts, so a hard-coded answer cannot pass.

Robustness against a notebook that tampers with what the checks rely on:
- no course_lib function is used: the probe network is a private copy of ``course_lib/models.py``
  loaded from disk, and the optimizers are compared with PyTorch's own;
- the torch functions and classes used here are captured at import and, at every check, must still
  be torch's own: replacing one of them, before or after the import, fails the check instead of
  fooling it; numbers are compared in plain Python, so e.g. ``torch.allclose = lambda *a, **k: True``
  changes nothing.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
import types
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn

# Probability that one statistical bound rejects a correct initializer. A full grading run tests
# fewer than 100 bounds, so a correct solution fails less than once in 10 million runs.
FALSE_ALARM_PER_BOUND = 1e-9

_TORCH_DIR = Path(torch.__file__).resolve().parent
_MODELS_FILE = Path(__file__).resolve().parent.parent / "course_lib" / "models.py"

# What the checks use from torch, captured at import: (owner, attribute name) -> object.
_WATCHED: Dict[Tuple[object, str], object] = {
    (owner, name): getattr(owner, name)
    for owner, names in (
        (torch, ("tensor", "float64", "no_grad")),
        (torch.Tensor, ("tolist", "detach", "fill_", "reshape", "clone", "cpu")),
        (torch.optim, ("SGD", "Adam")),
        (nn, ("Linear", "Sequential", "Parameter", "ReLU", "Tanh", "Module")),
    )
    for name in names
}
_tensor, _float64, _no_grad = torch.tensor, torch.float64, torch.no_grad
_tolist, _detach, _clone = torch.Tensor.tolist, torch.Tensor.detach, torch.Tensor.clone
_TorchSGD, _TorchAdam, _Parameter = torch.optim.SGD, torch.optim.Adam, nn.Parameter


def _is_torch_own(obj: object) -> bool:
    """True if ``obj`` is a C builtin or is defined in a file inside the installed torch package."""
    if isinstance(obj, (types.BuiltinFunctionType, types.MethodDescriptorType, torch.dtype)):
        return True
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if file is None or _TORCH_DIR not in Path(file).resolve().parents:
        return False
    return getattr(module, getattr(obj, "__name__", ""), None) is obj


def assert_torch_untouched() -> None:
    """Fail if the notebook replaced any torch function or class the checks rely on."""
    for (owner, name), original in _WATCHED.items():
        owner_name = getattr(owner, "__name__", str(owner))
        if getattr(owner, name, None) is not original or not _is_torch_own(original):
            raise AssertionError(
                f"{owner_name}.{name} was replaced in this notebook; grading needs PyTorch's own. "
                f"Restart the kernel and do not monkeypatch torch."
            )


def _new_rng(seed: int | None) -> random.Random:
    """A private random generator: ``seed`` for reproducible tests, else fresh system entropy."""
    return random.Random(seed if seed is not None else random.SystemRandom().randrange(2**63))


def _flat(t: torch.Tensor) -> List[float]:
    """All entries of a tensor as Python floats (through torch's own Tensor.tolist)."""
    values = _tolist(_detach(t))
    while values and isinstance(values[0], list):
        values = [v for row in values for v in row]
    return values if isinstance(values, list) else [values]


# ---------------------------------------------------------------------------------------------
# Initialization


def _load_probe_network_class() -> type:
    """A private copy of course_lib's BaseNetwork, read from disk (immune to monkeypatching)."""
    spec = importlib.util.spec_from_file_location("_grading_probe_models", _MODELS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BaseNetwork


def random_architecture(rng: random.Random) -> Dict[str, object]:
    """Sizes alternating between small (60-120) and large (300-480): fan_in / fan_out >= 2.5 or <= 0.4.

    Every weight matrix has at least 18,000 entries, and the input size is never the notebook's 784.
    """
    n_layers = rng.randint(3, 5)  # linear layers, i.e. 2-4 hidden layers
    start_small = rng.random() < 0.5
    sizes = [
        rng.randint(60, 120) if (k % 2 == 0) == start_small else rng.randint(300, 480)
        for k in range(n_layers + 1)
    ]
    return {"input_size": sizes[0], "hidden_sizes": tuple(sizes[1:-1]), "num_classes": sizes[-1]}


def _probe_network(rng: random.Random, act_fn: str) -> nn.Module:
    """A random-size network whose weights are 3.0 and biases 0.5, so an untouched layer shows."""
    model = _load_probe_network_class()(act_fn, **random_architecture(rng))
    with _no_grad():
        for name, param in model.named_parameters():
            param.fill_(0.5 if name.endswith("bias") else 3.0)
    return model


def _linear_layers(model: nn.Module) -> List[Tuple[int, nn.Linear]]:
    """(index in model.layers, layer) for every linear layer."""
    return [(i, m) for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)]


def _solve_increasing(f: Callable[[float], float], target: float, high: float) -> float:
    """The x in (0, high) where the increasing function f reaches ``target`` (bisection)."""
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) < target else (low, mid)
    return high


def second_moment_tolerance(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> Tuple[float, float]:
    """(below, above): relative bounds on mean(w^2) / sigma^2 for n i.i.d. draws of variance sigma^2.

    A correct normal or uniform initializer leaves the bounds with probability below ``false_alarm``
    on each side: Chernoff bounds of the chi-square distribution for normal weights, Hoeffding's bound
    (w^2 lies in [0, 3 sigma^2]) for uniform ones; the wider of the two is used.
    """
    log_term = math.log(1 / false_alarm)
    above = _solve_increasing(lambda e: n / 2 * (e - math.log1p(e)), log_term, 10.0)
    below = _solve_increasing(lambda e: n / 2 * (-e - math.log1p(-e)), log_term, 1 - 1e-12)
    hoeffding = 3 * math.sqrt(log_term / (2 * n))
    return max(below, hoeffding), max(above, hoeffding)


def mean_tolerance(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> float:
    """Bound on |mean(w)| / sigma: Hoeffding for uniform weights (wider than the normal tail)."""
    return math.sqrt(6 * math.log(2 / false_alarm) / n)


def _check_weight_statistics(label: str, weight: torch.Tensor, expected_var: float) -> None:
    """Assert that ``weight`` looks like i.i.d. draws with mean 0 and variance ``expected_var``."""
    values = _flat(weight)
    n = len(values)
    if not all(math.isfinite(v) for v in values):
        raise AssertionError(f"{label}: the weights contain NaN or infinity")
    mean = math.fsum(values) / n
    second_moment = math.fsum(v * v for v in values) / n
    sigma = math.sqrt(expected_var)
    if abs(mean) > mean_tolerance(n) * sigma:
        raise AssertionError(f"{label}: weights have mean {mean:.4g}; they should be centred on 0")
    below, above = second_moment_tolerance(n)
    ratio = second_moment / expected_var
    if not 1 - below <= ratio <= 1 + above:
        raise AssertionError(
            f"{label}: weight variance {second_moment:.4g}, expected {expected_var:.4g} "
            f"(allowed {expected_var * (1 - below):.4g} to {expected_var * (1 + above):.4g})"
        )


def _check_biases_zero(label: str, bias: torch.Tensor) -> None:
    """Assert that every bias is exactly zero."""
    if any(v != 0.0 for v in _flat(bias)):
        raise AssertionError(f"{label}: biases should all be 0")


def _check_initializer(
    init: Callable[[nn.Module], object],
    act_fn: str,
    expected_var: Callable[[int, int, int], float],
    zero_biases: bool,
    rng: random.Random,
) -> None:
    """Initialize a random probe network with ``init``; check each linear layer's statistics."""
    assert_torch_untouched()
    model = _probe_network(rng, act_fn)
    init(model)
    for rank, (index, layer) in enumerate(_linear_layers(model)):
        fan_out, fan_in = layer.weight.shape
        label = f"layer {index} ({fan_in} -> {fan_out} units)"
        _check_weight_statistics(label, layer.weight, expected_var(rank, fan_in, fan_out))
        if zero_biases:
            _check_biases_zero(label, layer.bias)


def check_var_init(var_init: Callable, seed: int | None = None) -> None:
    """var_init(model, std): weights N(0, std^2) for random std in [0.02, 0.5] (biases not checked)."""
    rng = _new_rng(seed)
    for _ in range(2):
        std = math.exp(rng.uniform(math.log(0.02), math.log(0.5)))
        _check_initializer(lambda m: var_init(m, std=std), "identity", lambda r, i, o: std**2, False, rng)
    assert_torch_untouched()
    default = _probe_network(rng, "identity")
    var_init(default)
    for index, layer in _linear_layers(default):
        _check_weight_statistics(f"default std, layer {index}", layer.weight, 0.01**2)


def check_equal_var_init(equal_var_init: Callable, seed: int | None = None) -> None:
    """equal_var_init(model): weights N(0, 1/fan_in), biases 0, on random sizes."""
    rng = _new_rng(seed)
    for _ in range(2):
        _check_initializer(equal_var_init, "identity", lambda r, i, o: 1 / i, True, rng)


def check_xavier_init(xavier_init: Callable, seed: int | None = None) -> None:
    """xavier_init(model): weight variance 2/(fan_in + fan_out) (normal or uniform), biases 0."""
    rng = _new_rng(seed)
    for act_fn in ("identity", "tanh"):
        _check_initializer(xavier_init, act_fn, lambda r, i, o: 2 / (i + o), True, rng)


def check_kaiming_init(kaiming_init: Callable, seed: int | None = None) -> None:
    """kaiming_init(model): first layer N(0, 1/fan_in), later layers N(0, 2/fan_in), biases 0."""
    rng = _new_rng(seed)
    for _ in range(2):
        _check_initializer(kaiming_init, "relu", lambda r, i, o: (1 if r == 0 else 2) / i, True, rng)


# ---------------------------------------------------------------------------------------------
# Optimizers


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    """A number whose logarithm is uniform in [log low, log high]."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _random_shapes(rng: random.Random) -> List[Tuple[int, ...]]:
    """Three to five parameter shapes: matrices, vectors, a 3-d tensor, a single number."""
    pool = [
        (rng.randint(2, 9), rng.randint(2, 9)),
        (rng.randint(2, 17),),
        (rng.randint(2, 4), rng.randint(2, 4), rng.randint(2, 4)),
        (1,),
        (rng.randint(5, 12), rng.randint(1, 3)),
    ]
    rng.shuffle(pool)
    return pool[: rng.randint(3, 5)]


def _parameters(shapes: Sequence[Tuple[int, ...]], values: Sequence[List[float]]) -> List[nn.Parameter]:
    """Fresh float64 parameters with the given shapes and flat values."""
    return [_Parameter(_tensor(v, dtype=_float64).reshape(s)) for s, v in zip(shapes, values)]


def compare_with_oracle(
    make_student: Callable[[list], object],
    make_oracle: Callable[[list], torch.optim.Optimizer],
    rng: random.Random,
    label: str,
    grad_scale: Tuple[float, float] = (1e-3, 3.0),
    rtol: float = 1e-5,
) -> None:
    """Run both optimizers on identical parameters and gradients; compare after every step.

    Several tensors of different shapes are optimized at once, one or two more never get a
    gradient (they must stay unchanged), and the number of steps is random in [20, 40].
    """
    assert_torch_untouched()
    shapes = _random_shapes(rng)
    frozen_shapes = [(rng.randint(2, 6),) for _ in range(rng.randint(1, 2))]
    init = [[rng.gauss(0, 1) for _ in range(math.prod(s))] for s in shapes + frozen_shapes]
    params = {who: _parameters(shapes + frozen_shapes, init) for who in ("student", "oracle")}
    order = list(range(len(init)))
    rng.shuffle(order)  # frozen parameters sit anywhere in the list
    student = make_student([params["student"][k] for k in order])
    oracle = make_oracle([params["oracle"][k] for k in order])
    scales = [_log_uniform(rng, *grad_scale) for _ in shapes]
    steps = rng.randint(20, 40)
    for step in range(1, steps + 1):
        student.zero_grad()
        oracle.zero_grad()
        for k, (shape, scale) in enumerate(zip(shapes, scales)):
            grad = [rng.gauss(0, scale) for _ in range(math.prod(shape))]
            for who in ("student", "oracle"):
                params[who][k].grad = _clone(_tensor(grad, dtype=_float64).reshape(shape))  # not a view
        student.step()
        oracle.step()
        for k in range(len(init)):
            got = _flat(params["student"][k])
            want = _flat(params["oracle"][k])
            moved = [w - v for w, v in zip(want, init[k])]
            if k >= len(shapes):
                if got != init[k]:
                    raise AssertionError(f"{label}: a parameter without a gradient was changed (it must be skipped)")
                continue
            tolerance = rtol * max(abs(m) for m in moved) + 1e-12
            worst = max(abs(g - w) for g, w in zip(got, want))
            if not worst <= tolerance:  # also catches NaN
                raise AssertionError(
                    f"{label}: after step {step} of {steps}, a parameter of shape {tuple(shapes[k])} "
                    f"is off by {worst:.3g} from the reference update"
                )


def check_sgd(sgd_class: type, seed: int | None = None) -> None:
    """SGD(params, lr) against torch.optim.SGD, for two random learning rates."""
    rng = _new_rng(seed)
    for _ in range(2):
        lr = _log_uniform(rng, 1e-3, 0.5)
        compare_with_oracle(lambda p: sgd_class(p, lr=lr), lambda p: _TorchSGD(p, lr=lr), rng,
                            f"SGD(lr={lr:.3g})")


def check_sgd_momentum(momentum_class: type, seed: int | None = None) -> None:
    """SGDMomentum(params, lr, momentum) against torch.optim.SGD(lr=lr*(1-beta), momentum=beta).

    With m = (1 - beta) g + beta m, the course's m is (1 - beta) times PyTorch's undamped buffer.
    Also checks that momentum defaults to 0 (plain SGD).
    """
    rng = _new_rng(seed)
    for _ in range(2):
        lr, beta = _log_uniform(rng, 1e-3, 0.5), rng.uniform(0.5, 0.95)
        compare_with_oracle(
            lambda p: momentum_class(p, lr=lr, momentum=beta),
            lambda p: _TorchSGD(p, lr=lr * (1 - beta), momentum=beta),
            rng,
            f"SGDMomentum(lr={lr:.3g}, momentum={beta:.3g})",
        )
    lr = _log_uniform(rng, 1e-3, 0.5)
    compare_with_oracle(lambda p: momentum_class(p, lr=lr), lambda p: _TorchSGD(p, lr=lr), rng,
                        f"SGDMomentum(lr={lr:.3g}) with the default momentum")


def check_adam(adam_class: type, seed: int | None = None) -> None:
    """Adam(params, lr, beta1, beta2, eps) against torch.optim.Adam.

    Random betas and an eps large enough to matter tell apart eps added inside or after the square
    root; a run with the default arguments uses gradients so small that eps = 1e-8 matters too.
    """
    rng = _new_rng(seed)
    for _ in range(2):
        lr = _log_uniform(rng, 1e-3, 0.3)
        beta1, beta2 = rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)
        eps = _log_uniform(rng, 1e-4, 1e-1)
        compare_with_oracle(
            lambda p: adam_class(p, lr=lr, beta1=beta1, beta2=beta2, eps=eps),
            lambda p: _TorchAdam(p, lr=lr, betas=(beta1, beta2), eps=eps),
            rng,
            f"Adam(lr={lr:.3g}, beta1={beta1:.3g}, beta2={beta2:.4g}, eps={eps:.3g})",
        )
    lr = _log_uniform(rng, 1e-3, 0.3)
    compare_with_oracle(lambda p: adam_class(p, lr=lr), lambda p: _TorchAdam(p, lr=lr), rng,
                        f"Adam(lr={lr:.3g}) with default betas and eps", grad_scale=(1e-7, 1e-5))
