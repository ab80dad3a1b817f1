"""The derivation exercises: variance ratios measured by the student's own function, exact given the tensors.

``backward_variance_ratio(weight, grad_output)`` is Var(grad_output @ weight) / Var(grad_output) and
``relu_variance_ratio(weight, x)`` is Var(relu(x) @ weight.T) / Var(x), each variance over all entries of
its tensor. The sample variance (torch.var's default) and the population variance are both accepted.
"""

from __future__ import annotations

import random
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .core import PropertyVerdict, Results, make_verdict
from .runner import decode_tensor, encode_tensor

RTOL = 1e-4  # relative; float32 sums of a few thousand entries are far more accurate than this

Ratio = Callable[[torch.Tensor, torch.Tensor], Optional[float]]


def _var(t: torch.Tensor, unbiased: bool = True) -> float:
    return float(t.reshape(-1).var(unbiased=unbiased))


def _ratio(top: torch.Tensor, bottom: torch.Tensor) -> List[float]:
    """Both readings of Var(top) / Var(bottom): sample and population variances."""
    return [_var(top) / _var(bottom), _var(top, False) / _var(bottom, False)]


def _backward_product(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return g @ w


def _relu_layer(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) @ w.T


def _transposed(w: torch.Tensor, g: torch.Tensor) -> Optional[torch.Tensor]:
    return g @ w.T if w.shape[0] == w.shape[1] else None


# Each exercise: the correct value and the variants with the mistake they name, and whether that
# mistake is one of structure (which product, where the ReLU goes) or only of the statistic returned.
def _variants(exercise: str, w: torch.Tensor, a: torch.Tensor) -> Dict[str, Tuple[List[float], bool]]:
    """name -> (accepted values, structure right?) for one case; "exact" is the correct one."""
    w, a = w.double(), a.double()
    if exercise == "backward_variance_ratio":
        out, wrong = _backward_product(w, a), {"transposed": _transposed(w, a)}
        base = a
    else:
        out, base = _relu_layer(w, a), a
        wrong = {"relu_after": torch.relu(a @ w.T), "no_relu": a @ w.T,
                 "relu_twice": torch.relu(torch.relu(a) @ w.T),
                 "transposed": torch.relu(a) @ w if w.shape[0] == w.shape[1] else None}
    variants: Dict[str, Tuple[List[float], bool]] = {"exact": (_ratio(out, base), True)}
    variants["inverted"] = ([1 / v for v in _ratio(out, base)], True)
    variants["std"] = ([v**0.5 for v in _ratio(out, base)], True)
    variants["second_moment"] = ([float(out.square().mean() / base.square().mean())], True)
    if exercise == "relu_variance_ratio":
        variants["relu_denominator"] = (_ratio(out, torch.relu(a)), True)
    variants["theory"] = ([w.shape[0] * _var(w) if exercise == "backward_variance_ratio"
                           else w.shape[1] * _var(w) / 2], True)
    for name, t in wrong.items():
        if t is not None:
            variants[name] = (_ratio(t, base), False)
    return variants


HINTS = {
    "transposed": {"backward_variance_ratio": "the gradient flows back through the same weights: grad_input = "
                   "grad_output @ weight (weight has shape [d_y, d_x]), not weight.T",
                   "relu_variance_ratio": "a linear layer maps x (shape [batch, d_x]) to x @ weight.T, weight "
                   "having shape [d_y, d_x]"},
    "relu_after": "apply the ReLU to the layer's input, before the layer: relu(x) @ weight.T",
    "no_relu": "the ReLU is missing: the layer's input is relu(x)",
    "relu_twice": "apply the ReLU once, to the layer's input only",
    "inverted": "the ratio is upside down: divide the variance of the layer's result by that of its input",
    "std": "return the ratio of variances, not of standard deviations",
    "second_moment": "compute variances (around the mean), not mean squares: the inputs here do not have mean 0",
    "relu_denominator": "divide by the variance of x itself, before the ReLU",
    "theory": "measure the ratio from the tensors you are given, rather than computing the theoretical value",
}


def _hint(exercise: str, name: str) -> str:
    hint = HINTS[name]
    return hint[exercise] if isinstance(hint, dict) else hint


def _case(gen: torch.Generator, rng: random.Random, exercise: str, square: bool) -> dict:
    """One case: a weight [d_y, d_x] and a batch of gradients [B, d_y] (or inputs [B, d_x]) with an offset."""
    d_x = rng.randint(30, 120)
    d_y = d_x if square else rng.choice([d for d in range(30, 121) if abs(d - d_x) >= 10])
    batch = rng.randint(64, 160)
    var_w = rng.choice([1 / d_x, 1 / d_y, 2 / d_x, 2 / (d_x + d_y)]) * rng.uniform(0.5, 2.0)
    weight = torch.randn((d_y, d_x), generator=gen, dtype=torch.float64) * var_w**0.5
    width = d_y if exercise == "backward_variance_ratio" else d_x
    offset = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0)
    data = torch.randn((batch, width), generator=gen, dtype=torch.float64) * rng.uniform(0.5, 2.0) + offset
    return {"first": encode_tensor(weight.float()), "second": encode_tensor(data.float())}


def challenge(exercise: str, rng: random.Random) -> dict:
    """Four cases of random shapes (one square weight, three not), each data tensor with a non-zero mean."""
    gen = torch.Generator().manual_seed(rng.randrange(2**62))
    squares = [True, False, False, False]
    rng.shuffle(squares)
    return {"kind": "ratio", "runs": {f"case_{i}": _case(gen, rng, exercise, sq) for i, sq in enumerate(squares)}}


def expected_tensors(spec: dict) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """One scalar (float64) per case."""
    return {f"{name}/value": ((), torch.float64) for name in spec["runs"]}


def _matches(value: float, accepted: List[float]) -> bool:
    return any(abs(value - a) <= RTOL * abs(a) for a in accepted)


def judge(exercise: str, spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """Shapes handled, the right structure (product order, ReLU placement), the exact value."""
    structure_name = ("the gradient flows back as grad_output @ weight" if exercise == "backward_variance_ratio"
                      else "ReLU on the layer's input: relu(x) @ weight.T")
    shapes_name, value_name = "a number for every layer shape", "the exact value for random shapes"
    values, failed = {}, []
    for name, case in spec["runs"].items():
        tensors = results.run(name)
        if tensors is None:
            failed.append(name)
        else:
            values[name] = (float(tensors["value"]), decode_tensor(case["first"]), decode_tensor(case["second"]))
    if failed:
        case = spec["runs"][failed[0]]
        shape, other = tuple(decode_tensor(case["first"]).shape), tuple(decode_tensor(case["second"]).shape)
        error = results.run_error(failed[0])
        shapes = PropertyVerdict(shapes_name, 0.25, False, f"for a weight of shape {shape} and {_second(exercise)} "
                                 f"of shape {other} {error}"
                                 + (f"; {_product(exercise, shape, other)}" if _is_shape_error(error) else "")
                                 + "; return one number (a float) for any d_x, d_y")
    else:
        shapes = PropertyVerdict(shapes_name, 0.25, True)
    if len({v for v, _, _ in values.values()}) == 1 and len(values) > 1:  # a constant is no measurement
        shapes = PropertyVerdict(shapes_name, 0.25, False, "your function returns the same number for every "
                                 "case; compute the ratio from the tensors it is given")
    if not values:
        note = results.run_error(failed[0]) if failed else "your code produced no result for this test"
        return [shapes, PropertyVerdict(structure_name, 0.35, False, note),
                PropertyVerdict(value_name, 0.4, False, note)], note
    table = {name: (v, _variants(exercise, w, a)) for name, (v, w, a) in values.items()}
    names = list(next(iter(table.values()))[1])
    # The explanation: one variant that gives every recorded value (variants undefined for a case are skipped).
    explained = next((n for n in names if all(n not in var or _matches(v, var[n][0]) for v, var in table.values())
                      and any(n in var for _, var in table.values())), None)
    worst = max(table.items(), key=lambda item: abs(item[1][0] - item[1][1]["exact"][0][0])
                / abs(item[1][1]["exact"][0][0]))
    case_name, (value, variants) = worst
    shape = tuple(values[case_name][1].shape)
    where = f"for a weight of shape {shape} your function returned {value:.4g}, expected {variants['exact'][0][0]:.4g}"
    if explained == "exact":
        return [shapes, PropertyVerdict(structure_name, 0.35, True), PropertyVerdict(value_name, 0.4, True)], ""
    if explained is not None:
        structure_ok = next(var[explained][1] for _, var in table.values() if explained in var)
        hint = f"{where}; {_hint(exercise, explained)}"
        structure = PropertyVerdict(structure_name, 0.35, structure_ok, "" if structure_ok else hint)
        return [shapes, structure, PropertyVerdict(value_name, 0.4, False, hint)], ""
    return [shapes, PropertyVerdict(structure_name, 0.35, False, where),
            PropertyVerdict(value_name, 0.4, False, where)], ""


def _second(exercise: str) -> str:
    return "grad_output" if exercise == "backward_variance_ratio" else "x"


def _is_shape_error(error: str) -> bool:
    return any(words in error for words in ("shapes cannot be multiplied", "must match the size", "size mismatch",
                                            "Dimension out of range", "is invalid for input of size"))


def _product(exercise: str, weight: Tuple[int, ...], other: Tuple[int, ...]) -> str:
    """The product the exercise asks for, with the shapes of this case."""
    if exercise == "backward_variance_ratio":
        return (f"the weight is (fan_out, fan_in) = {weight} and grad_output is (batch, fan_out) = {other}, so "
                f"grad_output @ weight is (batch, fan_in) = {(other[0], weight[1])}")
    return (f"the weight is (fan_out, fan_in) = {weight} and x is (batch, fan_in) = {other}, so "
            f"relu(x) @ weight.T is (batch, fan_out) = {(other[0], weight[0])}")


def verdict(exercise: str, spec: dict, results: Results):
    """ExerciseVerdict of a derivation exercise."""
    props, note = judge(exercise, spec, results)
    return make_verdict(exercise, props, note)
