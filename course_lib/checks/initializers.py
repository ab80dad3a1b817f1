"""Initializer exercises: random architectures, and the statistics of the weights each layer got."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .core import PropertyVerdict, Results, make_verdict
from .stats import mean_tolerance, normal_within, uniform_within, variance_bounds, within_one_sd_bounds

UNTOUCHED_WEIGHT, UNTOUCHED_BIAS = 3.0, 0.5  # what the probe fills the network with before the student's call


def random_architecture(rng: random.Random) -> Dict[str, object]:
    """Sizes alternating between small (60-120) and large (300-480): fan_in / fan_out >= 2.5 or <= 0.4.

    Every weight matrix has at least 18,000 entries, and the input size is never the notebook's 784.
    """
    n_layers = rng.randint(3, 5)  # linear layers, i.e. 2-4 hidden layers
    start_small = rng.random() < 0.5
    sizes = [rng.randint(60, 120) if (k % 2 == 0) == start_small else rng.randint(300, 480)
             for k in range(n_layers + 1)]
    return {"input_size": sizes[0], "hidden_sizes": sizes[1:-1], "num_classes": sizes[-1]}


def network_run(rng: random.Random, act_fn: str, kwargs: Optional[dict] = None,
                architecture: Optional[dict] = None) -> dict:
    """One probe run: the network to build, the keyword arguments of the call, the parameters to record."""
    arch = architecture or random_architecture(rng)
    sizes = [arch["input_size"], *arch["hidden_sizes"], arch["num_classes"]]
    parameters = {}
    for rank, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        parameters[f"layers.{2 * rank}.weight"] = [fan_out, fan_in]
        parameters[f"layers.{2 * rank}.bias"] = [fan_out]
    return {"act_fn": act_fn, **arch, "kwargs": dict(kwargs or {}), "parameters": parameters}


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def challenge(exercise: str, rng: random.Random) -> dict:
    """The runs of one initializer exercise."""
    if exercise == "var_init":
        default_arch = random_architecture(rng)
        runs = {
            "std_small": network_run(rng, "identity", {"std": _log_uniform(rng, 0.02, 0.07)}),
            "std_large": network_run(rng, "identity", {"std": _log_uniform(rng, 0.15, 0.5)}),
            "default": network_run(rng, "identity", {}, default_arch),
            "std_0.01": network_run(rng, "identity", {"std": 0.01}, default_arch),
        }
    elif exercise == "equal_var_init":
        runs = {"identity_1": network_run(rng, "identity"), "identity_2": network_run(rng, "identity")}
    elif exercise == "xavier_init":
        runs = {"identity": network_run(rng, "identity"), "tanh": network_run(rng, "tanh")}
    elif exercise == "kaiming_init":
        runs = {"relu_1": network_run(rng, "relu"), "relu_2": network_run(rng, "relu")}
    else:
        raise KeyError(exercise)
    return {"kind": "initializer", "runs": runs}


def expected_tensors(spec: dict) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtype of every tensor a run may record."""
    return {f"{run_name}/{name}": (tuple(shape), torch.float32)
            for run_name, run in spec["runs"].items() for name, shape in run["parameters"].items()}


# --- Per-layer statistics -------------------------------------------------------------------------------


class LayerNames:
    """``label`` and ``untouched`` of a recorded layer (needs ``rank``, ``fan_in``, ``fan_out``, ``weight``)."""

    @property
    def label(self) -> str:
        return f"layer {2 * self.rank} ({self.fan_in} -> {self.fan_out} units)"

    @property
    def untouched(self) -> bool:
        return bool((self.weight == UNTOUCHED_WEIGHT).all())


@dataclass
class Layer(LayerNames):
    """One linear layer of one run, with the statistics of its weights."""

    run: str
    rank: int  # position among the linear layers (0 = first)
    fan_in: int
    fan_out: int
    kwargs: dict
    weight: torch.Tensor
    bias: torch.Tensor
    n: int = 0
    mean: float = 0.0
    var: float = 0.0  # centred (population) variance
    within_sd: float = 0.0  # fraction of |w - mean| <= sd

    def __post_init__(self) -> None:
        w = self.weight.reshape(-1).to(torch.float64)
        self.n = w.numel()
        self.mean = float(w.mean())
        centred = w - self.mean
        self.var = float(centred.square().mean())
        self.within_sd = float((centred.abs() <= math.sqrt(self.var)).double().mean())



def recorded_layers(spec: dict, results: Results) -> Tuple[List[Tuple[str, int, dict, list, torch.Tensor,
                                                                    torch.Tensor]], List[str]]:
    """(run name, rank, run spec, weight shape, weight, bias) of every recorded linear layer, and the errors of
    the runs that raised or recorded no such layer."""
    found, errors = [], []
    for run_name, run in spec["runs"].items():
        tensors = results.run(run_name)
        if tensors is None:
            errors.append(results.run_error(run_name))
            continue
        for name, shape in run["parameters"].items():
            if name.endswith(".weight"):
                bias = tensors.get(name[: -len("weight")] + "bias")
                if name not in tensors or bias is None:
                    errors.append("your code produced no result for this test")
                    continue
                found.append((run_name, int(name.split(".")[1]) // 2, run, shape, tensors[name], bias))
    return found, errors


def layers_of(spec: dict, results: Results) -> Tuple[List[Layer], List[str]]:
    """The layers of every recorded run, and the errors of the runs that raised."""
    found, errors = recorded_layers(spec, results)
    return [Layer(run_name, rank, shape[1], shape[0], run["kwargs"], weight, bias)
            for run_name, rank, run, shape, weight, bias in found], errors


def untouched_message(layer: Layer) -> str:
    """The message for a layer whose weights the student's function left as they were."""
    return (f"{layer.label} still holds the weights it had before your function ran (all {UNTOUCHED_WEIGHT}): "
            f"initialize every linear layer of the model")


def check_mean(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """Every layer's weights are centred on 0 (bound relative to the layer's own spread)."""
    for layer in layers:
        if layer.untouched:
            return False, untouched_message(layer)
        if layer.var == 0:
            value = float(layer.weight.reshape(-1)[0])
            return False, f"{layer.label}: all weights are {value:.3g}; draw them at random"
        low, _ = variance_bounds(layer.n)
        sd_bound = math.sqrt(layer.var / max(low, 1e-12))
        if abs(layer.mean) > mean_tolerance(layer.n) * sd_bound:
            return False, (f"{layer.label}: the weights have mean {layer.mean:.3g} "
                           f"({abs(layer.mean) / max(math.sqrt(layer.var), 1e-300):.2g} standard deviations); "
                           f"draw them centred on 0")
    return True, ""


Formula = Callable[[Layer], float]


def variance_matches(layer: Layer, expected: float) -> bool:
    """The layer's centred variance is within the bounds of a correct draw of variance ``expected``."""
    if expected <= 0:
        return layer.var == 0
    low, high = variance_bounds(layer.n)
    return low <= layer.var / expected <= high


def check_variance(layers: Sequence[Layer], formula: Formula, formula_text: str,
                   mistakes: Dict[str, Tuple[Formula, str]]) -> Tuple[bool, str]:
    """Every layer's variance matches ``formula``; else a message naming the layer and the likely mistake."""
    wrong = [layer for layer in layers if not variance_matches(layer, formula(layer))]
    if not wrong:
        return True, ""
    first = wrong[0]
    if first.untouched:
        return False, untouched_message(first)
    message = (f"{first.label}: weight variance {first.var:.3g}, expected {formula_text} = "
               f"{formula(first):.3g}")
    for mistake, hint in mistakes.values():
        if all(variance_matches(layer, mistake(layer)) for layer in layers):
            return False, f"{message}; {hint}"
    return False, message


def check_distribution(layers: Sequence[Layer], allowed: Sequence[str]) -> Tuple[bool, str]:
    """Each layer's weights look normal (or uniform, where allowed): the fraction within one sd."""
    shapes = {"normal": normal_within, "uniform": uniform_within}
    for layer in layers:
        if layer.untouched:
            return False, untouched_message(layer)
        sd = math.sqrt(layer.var)
        ratio = abs(layer.mean) / sd if sd > 0 else 0.0
        looks = [name for name, within in shapes.items()
                 if sd > 0 and within_one_sd_bounds(layer.n, within, ratio)[0] <= layer.within_sd
                 <= within_one_sd_bounds(layer.n, within, ratio)[1]]
        if not set(looks) & set(allowed):
            seen = f"they look {looks[0]}" if looks else "they follow neither a normal nor a uniform distribution"
            return False, (f"{layer.label}: {100 * layer.within_sd:.1f}% of the weights lie within one standard "
                           f"deviation of their mean; {seen}, but a {' or '.join(allowed)} distribution is "
                           f"asked for")
    return True, ""


def check_biases_zero(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """Every bias is exactly 0 (credited only where the weights were drawn at random)."""
    for layer in layers:
        if layer.var == 0:
            return False, f"{layer.label}: its weights are all equal; draw them at random and set the biases to 0"
        if not bool((layer.bias == 0).all()):
            if bool((layer.bias == UNTOUCHED_BIAS).all()):
                return False, f"{layer.label}: the biases still hold their previous values; set them to 0"
            return False, f"{layer.label}: the biases should all be 0"
    return True, ""


# --- The exercises -------------------------------------------------------------------------------------------

FAN_MISTAKES: Dict[str, Tuple[Formula, str]] = {
    "1/fan_out": (lambda ly: 1 / ly.fan_out, "it matches 1/fan_out: a weight of shape [fan_out, fan_in] has the "
                  "fan-in in dimension 1"),
    "1/fan_in": (lambda ly: 1 / ly.fan_in, "it matches 1/fan_in (the equal-variance condition of the forward pass)"),
    "2/fan_in": (lambda ly: 2 / ly.fan_in, "it matches 2/fan_in (Kaiming's factor 2)"),
    "2/fan_out": (lambda ly: 2 / ly.fan_out, "it matches 2/fan_out: the fan-in is dimension 1 of the weight"),
    "1/(fan_in+fan_out)": (lambda ly: 1 / (ly.fan_in + ly.fan_out), "it matches 1/(fan_in + fan_out): the factor 2 "
                           "is missing (for U[-a, a], a = sqrt(6 / (fan_in + fan_out)))"),
    "6/(fan_in+fan_out)": (lambda ly: 6 / (ly.fan_in + ly.fan_out), "it matches 6/(fan_in + fan_out): the uniform "
                           "bound a was used as the standard deviation (U[-a, a] has variance a^2 / 3)"),
    "3/fan_in": (lambda ly: 3 / ly.fan_in, "it matches 3/fan_in: the uniform bound was used as the standard "
                 "deviation"),
    "1/fan_in^2": (lambda ly: 1 / ly.fan_in**2, "it matches (1/fan_in)^2: 1/fan_in is the variance, so the "
                   "standard deviation is 1/sqrt(fan_in)"),
    "2/fan_in^2": (lambda ly: 4 / ly.fan_in**2, "it matches (2/fan_in)^2: 2/fan_in is the variance, so the "
                   "standard deviation is sqrt(2/fan_in)"),
    "U[0, a]": (lambda ly: 0.5 / (ly.fan_in + ly.fan_out), "it matches U[0, a] with a = sqrt(6 / (fan_in + "
                "fan_out)): draw from U[-a, a]"),
    "xavier std as variance": (lambda ly: 4 / (ly.fan_in + ly.fan_out) ** 2, "it matches (2/(fan_in + fan_out))^2: "
                               "that is the variance, the standard deviation is its square root"),
}

STD_MISTAKES: Dict[str, Tuple[Formula, str]] = {
    "std^4": (lambda ly: ly.kwargs["std"] ** 4, "it matches std^4: std is the standard deviation, pass it as such "
              "(not std**2)"),
    "std": (lambda ly: ly.kwargs["std"], "it matches std itself: std is the standard deviation, the variance is "
            "std**2 (do not take its square root)"),
    "0.01": (lambda ly: 1e-4, "it matches a standard deviation of 0.01 whatever std is given: use the std argument"),
}


def _property(name: str, weight: float, result: Tuple[bool, str]) -> PropertyVerdict:
    return PropertyVerdict(name, weight, result[0], result[1])


def _var_init_default(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """The default std is 0.01: directly, or (if the function scales with std) as the call with std=0.01."""
    default = [layer for layer in layers if layer.run == "default"]
    explicit = {layer.rank: layer for layer in layers if layer.run == "std_0.01"}
    if not default:
        return False, "your function raised an error when called without std"
    if all(variance_matches(layer, 1e-4) for layer in default):
        return True, ""
    small = [layer for layer in layers if layer.run == "std_small"]
    large = [layer for layer in layers if layer.run == "std_large"]
    # Only a function whose variance follows std can have "the default behaves like std=0.01" checked.
    scales = bool(small and large) and min(small[0].var, large[0].var) > 0 and \
        abs(math.log(large[0].var / small[0].var)) > 0.5
    same = scales and all(layer.rank in explicit and _same_variance(layer, explicit[layer.rank])
                          for layer in default)
    if same:
        return True, ""
    layer = default[0]
    return False, (f"called without std, your function gives {layer.label} weights of variance {layer.var:.3g}; "
                   f"the default std should be 0.01 (variance 1e-4)")


def _same_variance(a: Layer, b: Layer) -> bool:
    """Two layers of equal size have variances consistent with one common variance."""
    low_a, high_a = variance_bounds(a.n)
    low_b, high_b = variance_bounds(b.n)
    if b.var == 0 or a.var == 0:
        return a.var == b.var
    return low_a / high_b <= a.var / b.var <= high_a / low_b


def judge(exercise: str, spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of an initializer exercise, judged on the recorded weights."""
    layers, errors = layers_of(spec, results)
    note = errors[0] if errors else ""
    if exercise == "var_init":
        std_layers = [layer for layer in layers if layer.run in ("std_small", "std_large")]
        props = [
            _property("weights centred on 0", 0.2, check_mean(layers)),
            _property("weight variance std^2 for the std given", 0.4,
                      check_variance(std_layers, lambda ly: ly.kwargs["std"] ** 2, "std^2", STD_MISTAKES)),
            _property("normal distribution", 0.2, check_distribution(std_layers, ["normal"])),
            _property("default std 0.01", 0.2, _var_init_default(layers)),
        ]
        needed = {"weight variance std^2 for the std given": std_layers, "normal distribution": std_layers,
                  "weights centred on 0": layers}
    else:
        formulas = {
            "equal_var_init": ("weight variance 1/fan_in in every layer", lambda ly: 1 / ly.fan_in, "1/fan_in"),
            "xavier_init": ("weight variance 2/(fan_in + fan_out) in every layer",
                            lambda ly: 2 / (ly.fan_in + ly.fan_out), "2/(fan_in + fan_out)"),
        }
        allowed = ["uniform"] if exercise == "xavier_init" else ["normal"]  # the distribution each exercise asks for
        distribution = f"{allowed[0]} distribution"
        if exercise == "kaiming_init":
            first = [layer for layer in layers if layer.rank == 0]
            later = [layer for layer in layers if layer.rank > 0]
            first_mistakes = {"2/fan_in": (lambda ly: 2 / ly.fan_in, "it matches 2/fan_in: the first layer's input is "
                                           "the image, not a ReLU output; find the first layer by its position, "
                                           "not its size")}
            first_mistakes.update({k: v for k, v in FAN_MISTAKES.items() if k not in ("2/fan_in", "1/fan_in")})
            later_mistakes = {k: v for k, v in FAN_MISTAKES.items() if k != "2/fan_in"}
            later_mistakes["1/fan_in"] = (lambda ly: 1 / ly.fan_in, "it matches 1/fan_in: the factor 2 that makes up "
                                          "for the ReLU is missing")
            props = [
                _property("weights centred on 0", 0.15, check_mean(layers)),
                _property("weight variance 1/fan_in in the first layer", 0.25,
                          check_variance(first, lambda ly: 1 / ly.fan_in, "1/fan_in", first_mistakes)),
                _property("weight variance 2/fan_in in the later layers", 0.3,
                          check_variance(later, lambda ly: 2 / ly.fan_in, "2/fan_in", later_mistakes)),
                _property("biases 0", 0.15, check_biases_zero(layers)),
                _property(distribution, 0.15, check_distribution(layers, allowed)),
            ]
            needed = {p.name: (first if "first" in p.name else later if "later" in p.name else layers)
                      for p in props}
        else:
            name, formula, text = formulas[exercise]
            mistakes = {k: v for k, v in FAN_MISTAKES.items() if k != text}
            props = [
                _property("weights centred on 0", 0.2, check_mean(layers)),
                _property(name, 0.4, check_variance(layers, formula, text, mistakes)),
                _property("biases 0", 0.2, check_biases_zero(layers)),
                _property(distribution, 0.2, check_distribution(layers, allowed)),
            ]
            needed = {p.name: layers for p in props}
    for prop in props:  # a property judged on no layer at all (every run raised) fails
        if prop.name in needed and not needed[prop.name]:
            prop.passed, prop.message = False, note or "your code produced no result for this test"
    return props, note


def verdict(exercise: str, spec: dict, results: Results):
    """ExerciseVerdict of an initializer exercise."""
    props, note = judge(exercise, spec, results)
    return make_verdict(exercise, props, note)
