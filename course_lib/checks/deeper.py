"""The "deeper" assignment: orthogonal and LSUV initialization, a warm-up + cosine schedule (AdamW: adamw.py).

``orthogonal_init(model, gain=1.0)`` is judged on the recorded weights: orthonormal rows or columns
(whichever fit the layer's shape) scaled by ``gain``, biases 0, and a uniform (Haar) draw: the signs of
the diagonal entries of a uniformly random orthogonal matrix are independent fair coins (flipping the sign
of a row keeps the distribution), while QR without the sign fix makes most of them negative.

``lsuv_init(model, batch, tol=0.05, max_iter=10)`` is judged by running the grader's own forward pass of
the recorded parameters on the batch it drew: an orthogonal start (weights proportional to orthonormal
rows or columns), each linear layer's output with variance 1 within ``tol``, each output unit centred on
the batch by its bias.

``warmup_cosine_lr(step, total_steps, warmup_steps, base_lr, min_lr=0.0)`` is judged against its formula
(the oracle) on every step of a few schedules, with the known mistakes simulated to name them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .core import PropertyVerdict, Results, make_verdict
from .initializers import UNTOUCHED_BIAS, LayerNames, network_run, recorded_layers, untouched_message
from .runner import decode_tensor, encode_tensor
from .stats import FALSE_ALARM_PER_BOUND

ORTHO_TOL = 1e-4  # max |G / c^2 - I| of a float32 orthogonal matrix (rounding is about 1e-6)
LSUV_SLACK = 1e-3  # added to the student's tol: float32 against the grader's float64 forward pass
CENTRE_TOL = 1e-3  # |mean| of an output unit on the batch, in units of the layer's standard deviation
SCHEDULE_RTOL = 1e-5  # relative to base_lr: float32 arithmetic passes
DEFAULT_TOL, DEFAULT_MAX_ITER = 0.05, 10


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def architecture(rng: random.Random) -> Dict[str, object]:
    """3-5 linear layers of 30-160 units: wide and tall layers (small and large sizes alternate), one square.

    The input size is never the notebook's 784.
    """
    n_layers = rng.randint(3, 5)
    start_small = rng.random() < 0.5
    sizes = [rng.randint(30, 60) if (k % 2 == 0) == start_small else rng.randint(100, 160)
             for k in range(n_layers + 1)]
    square = rng.randrange(1, n_layers)  # layer `square` maps sizes[square] -> sizes[square + 1]
    sizes.insert(square + 1, sizes[square])
    return {"input_size": sizes[0], "hidden_sizes": sizes[1:-1], "num_classes": sizes[-1]}


def _batch(rng: random.Random, gen: torch.Generator, width: int) -> torch.Tensor:
    """A batch with a non-zero mean and a spread far from 1, so nothing is already normalized."""
    size = rng.randint(128, 256)
    scale = rng.choice([rng.uniform(0.2, 0.5), rng.uniform(1.8, 3.0)])
    offset = rng.choice([-1, 1]) * rng.uniform(0.3, 1.0)
    return (torch.randn((size, width), generator=gen, dtype=torch.float64) * scale + offset).float()


def challenge(exercise: str, rng: random.Random) -> dict:
    """The runs of one exercise (JSON-able)."""
    if exercise == "orthogonal_init":
        default_arch = architecture(rng)
        runs = {"gain_1": network_run(rng, "relu", {"gain": rng.uniform(1.3, 2.5)}, architecture(rng)),
                "gain_2": network_run(rng, "tanh", {"gain": rng.uniform(0.3, 0.8)}, architecture(rng)),
                "default": network_run(rng, "relu", {}, default_arch),
                "default_2": network_run(rng, "relu", {}, default_arch)}
        return {"kind": "initializer", "runs": runs}
    if exercise == "lsuv_init":
        gen = torch.Generator().manual_seed(rng.randrange(2**62))
        runs = {}
        for name, act, kwargs in (("relu", "relu", {"tol": rng.uniform(0.01, 0.1), "max_iter": rng.randint(10, 20)}),
                                  ("tanh", "tanh", {"tol": rng.uniform(0.01, 0.1), "max_iter": rng.randint(10, 20)}),
                                  ("default", "relu", {})):
            run = network_run(rng, act, kwargs, architecture(rng))
            run["batch"] = encode_tensor(_batch(rng, gen, int(run["input_size"])))
            runs[name] = run
        return {"kind": "initializer", "runs": runs}
    if exercise == "warmup_cosine_lr":
        return {"kind": "schedule", "runs": _schedule_runs(rng)}
    if exercise == "adamw":
        from . import adamw

        return adamw.challenge(rng)
    raise KeyError(exercise)


def expected_tensors(spec: dict) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of every tensor a run may record (schedules: one float64 per step)."""
    if spec["kind"] == "schedule":
        return {f"{name}/value": ((len(run["steps"]),), torch.float64) for name, run in spec["runs"].items()}
    return {f"{run_name}/{name}": (tuple(shape), torch.float32)
            for run_name, run in spec["runs"].items() for name, shape in run["parameters"].items()}


# --- Layers of a recorded network -------------------------------------------------------------------------


@dataclass
class Layer(LayerNames):
    """One linear layer of one run: its recorded weight and bias (float64) and its Gram statistics."""

    run: str
    rank: int
    weight: torch.Tensor
    bias: torch.Tensor
    kwargs: dict

    @property
    def fan_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])


    def gram(self) -> torch.Tensor:
        """W W^T for a wide or square layer (orthonormal rows), W^T W for a tall one (orthonormal columns)."""
        w = self.weight
        return w @ w.T if self.fan_out <= self.fan_in else w.T @ w

    def scale(self) -> float:
        """c such that the weight is c times an orthogonal matrix, were it one: sqrt(trace(G) / size of G)."""
        g = self.gram()
        return math.sqrt(max(float(torch.trace(g)) / g.shape[0], 0.0))

    def orthogonality_error(self) -> float:
        """max |G / c^2 - I| (inf when the weight is zero)."""
        c = self.scale()
        if c == 0 or not math.isfinite(c):
            return math.inf
        g = self.gram() / c**2
        return float((g - torch.eye(g.shape[0], dtype=g.dtype)).abs().max())


def layers_of(spec: dict, results: Results) -> Tuple[List[Layer], List[str]]:
    """The layers of every recorded run (float64), and the errors of the runs that raised."""
    found, errors = recorded_layers(spec, results)
    return [Layer(run_name, rank, weight.double(), bias.double(), run["kwargs"])
            for run_name, rank, run, _, weight, bias in found], errors


def _side(layer: Layer) -> str:
    return "rows" if layer.fan_out <= layer.fan_in else "columns"


def check_orthogonal(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """Every weight is a multiple of a matrix with orthonormal rows (wide, square) or columns (tall)."""
    wrong = [layer for layer in layers if not layer.orthogonality_error() <= ORTHO_TOL]
    if not wrong:
        return True, ""
    first = wrong[0]
    if first.untouched:
        return False, untouched_message(first)
    message = (f"{first.label}: the {_side(first)} of the weight are not orthonormal (max |G / c^2 - I| = "
               f"{first.orthogonality_error():.2g} for the Gram matrix G of its {_side(first)})")
    square_ok = all(layer.orthogonality_error() <= ORTHO_TOL for layer in layers if layer.fan_in == layer.fan_out)
    if square_ok and all(layer.fan_in != layer.fan_out for layer in wrong):
        message += ("; your square layers are right: for a layer with fan_out != fan_in, draw a [max, min] matrix, "
                    "orthogonalize its columns and transpose it when fan_out < fan_in")
    return False, message


def _scale_hint(layer: Layer, gain: float) -> str:
    c = layer.scale()
    if abs(c - 1) <= 1e-3 and abs(gain - 1) > 1e-3:
        return "; it matches gain 1: multiply the orthogonal matrix by gain"
    if abs(c - gain**2) <= 1e-3 * gain**2:
        return "; it matches gain^2: multiply by gain once"
    if abs(c - math.sqrt(gain)) <= 1e-3:
        return "; it matches sqrt(gain): gain multiplies the weights (it is not a variance)"
    return ""


def check_gain(layers: Sequence[Layer], default: bool) -> Tuple[bool, str]:
    """Each weight's scale c is the gain asked for (1 when the call gives none)."""
    chosen = [layer for layer in layers if ("gain" not in layer.kwargs) == default]
    if not chosen:
        return False, "no layer holds an orthogonal matrix yet, so the scale is not judged"
    for layer in chosen:
        if layer.untouched:
            return False, untouched_message(layer)
        gain = float(layer.kwargs.get("gain", 1.0))
        c = layer.scale()
        if not abs(c - gain) <= 1e-4 * gain:
            where = "called without gain, " if default else ""
            return False, (f"{where}{layer.label}: the weight is {c:.4g} times an orthogonal matrix, expected gain = "
                           f"{gain:.4g}{_scale_hint(layer, gain)}")
    return True, ""


def sign_bound(n: int, false_alarm: float = FALSE_ALARM_PER_BOUND) -> float:
    """Hoeffding: the fraction of negative signs among n fair coins stays within 1/2 +- this bound."""
    return math.sqrt(math.log(2 / false_alarm) / (2 * n))


def check_uniform(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """The orthogonal matrices are random and uniform: diagonal signs are fair coins; two calls differ."""
    if not layers:
        return False, "no layer holds an orthogonal matrix yet, so their distribution is not judged"
    signs = torch.cat([torch.diagonal(layer.weight) for layer in layers])
    n = int((signs != 0).sum())
    negative = float((signs < 0).sum()) / max(n, 1)
    if n == 0 or abs(negative - 0.5) > sign_bound(n):
        return False, (f"{100 * negative:.0f}% of the diagonal entries of your orthogonal matrices are negative "
                       f"({n} entries), where a uniformly random orthogonal matrix has each sign with probability "
                       f"1/2: after Q, R = QR(A), multiply each column of Q by the sign of R's diagonal entry")
    first = {layer.rank: layer for layer in layers if layer.run == "default"}
    for layer in layers:
        if layer.run == "default_2" and layer.rank in first and torch.equal(layer.weight, first[layer.rank].weight):
            return False, "two calls give the same weights: draw the matrix at random at every call"
    return True, ""


def check_biases_zero(layers: Sequence[Layer]) -> Tuple[bool, str]:
    """Every bias is 0 (credited only where the weights were set)."""
    for layer in layers:
        if layer.untouched or layer.scale() == 0:
            return False, f"{layer.label}: its weights were not initialized; set them and the biases"
        if not bool((layer.bias == 0).all()):
            if bool((layer.bias == UNTOUCHED_BIAS).all()):
                return False, f"{layer.label}: the biases still hold their previous values; set them to 0"
            return False, f"{layer.label}: the biases should all be 0"
    return True, ""


ORTHOGONAL = "orthonormal rows or columns in every layer, square or not"
GAIN = "weights scaled by gain"
DEFAULT_GAIN = "default gain 1"
UNIFORM = "uniformly random orthogonal matrices (sign fix)"
BIASES = "biases 0"


def judge_orthogonal(spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of orthogonal_init."""
    layers, errors = layers_of(spec, results)
    note = errors[0] if errors else ""
    ortho = check_orthogonal(layers)
    orthogonal = [layer for layer in layers if layer.orthogonality_error() <= ORTHO_TOL]  # the others fail above
    props = [PropertyVerdict(ORTHOGONAL, 0.35, *ortho),
             PropertyVerdict(GAIN, 0.2, *check_gain(orthogonal, default=False)),
             PropertyVerdict(DEFAULT_GAIN, 0.15, *check_gain(orthogonal, default=True)),
             PropertyVerdict(UNIFORM, 0.15, *check_uniform(orthogonal)),
             PropertyVerdict(BIASES, 0.15, *check_biases_zero(layers))]
    if not layers:
        for prop in props:
            prop.passed, prop.message = False, note or "your code produced no result for this test"
    return props, note


# --- LSUV: the grader's own forward pass of the recorded parameters ----------------------------------------

ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": torch.relu, "tanh": torch.tanh,
                                                                   "identity": lambda x: x}


def forward_outputs(run: dict, layers: Sequence[Layer]) -> List[torch.Tensor]:
    """Each linear layer's output (before its activation) on the run's batch, in float64."""
    x = decode_tensor(run["batch"]).double()
    act = ACTIVATIONS[run["act_fn"]]
    outputs = []
    for k, layer in enumerate(sorted(layers, key=lambda ly: ly.rank)):
        h = x @ layer.weight.T + layer.bias
        outputs.append(h)
        x = act(h) if k < len(layers) - 1 else h
    return outputs


def _variance_ok(h: torch.Tensor, tol: float) -> bool:
    """var(h) over all entries is 1 within tol (sample or population variance)."""
    variances = [float(h.reshape(-1).var(unbiased=u)) for u in (True, False)]
    return any(abs(v - 1) <= tol + LSUV_SLACK for v in variances)


LSUV_START = "orthogonal start in every layer"
LSUV_VARIANCE = "variance 1 at every layer's output, within tol"
LSUV_CENTRED = "each output unit centred on the batch by its bias"


def judge_lsuv(spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of lsuv_init, judged on the grader's forward pass of the recorded parameters."""
    layers, errors = layers_of(spec, results)
    note = errors[0] if errors else ""
    by_run: Dict[str, List[Layer]] = {}
    for layer in layers:
        by_run.setdefault(layer.run, []).append(layer)
    if not by_run:
        note = note or "your code produced no result for this test"
        return [PropertyVerdict(LSUV_START, 0.2, False, note), PropertyVerdict(LSUV_VARIANCE, 0.5, False, note),
                PropertyVerdict(LSUV_CENTRED, 0.3, False, note)], note
    start = check_orthogonal(layers)
    if not start[0] and "not orthonormal" in start[1]:
        start = (False, start[1].split(" (max")[0] + ": start from orthogonal weights (your orthogonal_init) and "
                 "only rescale them")
    variance, centred = (True, ""), (True, "")
    after_activation = any(spec["runs"][r]["act_fn"] == "relu" for r in by_run)  # judged on ReLU networks
    for run_name, run_layers in by_run.items():
        run = spec["runs"][run_name]
        tol = float(run["kwargs"].get("tol", DEFAULT_TOL))
        outputs = forward_outputs(run, run_layers)
        act = ACTIVATIONS[run["act_fn"]]
        for k, (layer, h) in enumerate(zip(sorted(run_layers, key=lambda ly: ly.rank), outputs)):
            if run["act_fn"] == "relu" and k < len(outputs) - 1 and not _variance_ok(act(h), tol):
                after_activation = False  # (tanh outputs never reach variance 1: judged on ReLU networks)
            if not bool(torch.isfinite(h).all()):
                variance = variance if not variance[0] else (False, f"{layer.label}: the output overflows")
                centred = centred if not centred[0] else (False, f"{layer.label}: the output overflows")
                continue
            var = float(h.var())
            if variance[0] and not _variance_ok(h, tol):
                variance = (False, f"{layer.label}: its output on the batch has variance {var:.3g}, expected 1 within "
                            f"tol = {tol:.3g}")
                if layer.untouched:
                    variance = (False, untouched_message(layer))
                elif k > 0:
                    variance = (False, variance[1] + "; rescale the layers one after another, each measured on the "
                                "output of the layers before it, already rescaled")
            sd = math.sqrt(var)
            means = h.mean(dim=0)
            if centred[0] and (sd < 0.1 or not float(means.abs().max()) <= CENTRE_TOL * sd):
                if sd < 0.1:
                    centred = (False, f"{layer.label}: its output hardly varies on the batch (variance {var:.2g}), "
                               f"so its centring is not credited")
                elif bool((layer.bias == 0).all()):
                    centred = (False, f"{layer.label}: the biases are 0 and the output units have means up to "
                               f"{float(means.abs().max()):.3g} on the batch; set each bias so that its unit's "
                               f"output has mean 0")
                else:
                    centred = (False, f"{layer.label}: output units have means up to {float(means.abs().max()):.3g} "
                               f"on the batch; subtract each unit's mean through its bias, and rescale the bias "
                               f"with the weight")
    if not variance[0] and after_activation and not any(layer.untouched for layer in layers):
        variance = (False, variance[1].split("; rescale")[0] + "; your variances are 1 after the activation: measure "
                    "the output of the linear layer itself, before its activation")
    return [PropertyVerdict(LSUV_START, 0.2, *start), PropertyVerdict(LSUV_VARIANCE, 0.5, *variance),
            PropertyVerdict(LSUV_CENTRED, 0.3, *centred)], note


# --- The warm-up + cosine schedule ---------------------------------------------------------------------


def schedule_value(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """The oracle: linear warm-up from 0 at step 0 to base_lr at warmup_steps, cosine to min_lr at total_steps."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


EXTRA_STEPS = 4  # steps asked for past total_steps


def _schedule_runs(rng: random.Random) -> Dict[str, dict]:
    """Schedules with random lengths, warm-ups and rates; every step from 0 to total_steps + 4."""
    def run(warmup: Optional[int] = None, min_lr: Optional[float] = -1.0) -> dict:
        total = rng.randint(20, 60)
        warmup = rng.randint(2, total // 3) if warmup is None else warmup
        base = _log_uniform(rng, 1e-4, 1.0)
        out = {"total_steps": total, "warmup_steps": warmup, "base_lr": base,
               "steps": list(range(total + 1 + EXTRA_STEPS))}
        if min_lr is not None:
            out["min_lr"] = base * rng.uniform(0.02, 0.3) if min_lr < 0 else min_lr
        return out

    default = run(min_lr=None)
    return {"main_1": run(), "main_2": run(), "no_warmup": run(warmup=0), "default": default,
            "explicit_default": {**default, "min_lr": 0.0}}


def expected_schedule(run: dict, formula: Optional[Callable] = None) -> torch.Tensor:
    """The run's values by ``formula`` (float64; the oracle ``schedule_value`` if None, looked up when called so
    that no default argument keeps a reference to it past the grader's tripwires)."""
    formula = schedule_value if formula is None else formula
    args = (run["total_steps"], run["warmup_steps"], run["base_lr"])
    return torch.tensor([formula(s, *args, run.get("min_lr", 0.0)) for s in run["steps"]], dtype=torch.float64)


def _mistake(kind: str) -> Callable:
    def value(step: int, total: int, warmup: int, base: float, min_lr: float) -> float:
        if kind == "warmup_off_by_one" and step < warmup:
            return base * (step + 1) / warmup
        if kind == "warmup_from_min" and step < warmup:
            return min_lr + (base - min_lr) * step / warmup
        if kind == "no_clamp" and step >= total:
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        if kind == "cosine_from_zero" and step >= warmup and step < total:
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * step / total))
        if kind == "min_lr_one_step_early" and warmup <= step < total:
            span = max(total - 1 - warmup, 1)
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * min((step - warmup) / span, 1.0)))
        if kind == "min_lr_ignored" and warmup <= step < total:
            return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        return schedule_value(step, total, warmup, base, min_lr)
    return value


SCHEDULE_HINTS = {
    "warmup_off_by_one": "your warm-up is one step ahead: at step 0 the rate is 0, base_lr * step / warmup_steps",
    "warmup_from_min": "your warm-up starts from min_lr: it rises from 0 at step 0",
    "no_clamp": "after total_steps your rate rises again along the cosine: keep it at min_lr",
    "cosine_from_zero": "your cosine counts from step 0: its progress is (step - warmup_steps) / (total_steps - "
                        "warmup_steps)",
    "min_lr_one_step_early": "your cosine reaches min_lr one step early: it reaches it at step total_steps",
    "min_lr_ignored": "your cosine decays to 0: it decays to min_lr, min_lr + (base_lr - min_lr) * (1 + cos) / 2",
}

WARMUP = "linear warm-up from 0 to base_lr"
COSINE = "cosine decay from base_lr to min_lr at total_steps"
END = "min_lr after total_steps"
NO_WARMUP = "no warm-up when warmup_steps = 0"
DEFAULT_MIN = "default min_lr 0"


def _entries(run: dict, values: torch.Tensor, part: str) -> Tuple[List[int], torch.Tensor]:
    """Indices of the run's steps in one part of the schedule."""
    total, warmup = run["total_steps"], run["warmup_steps"]
    steps = run["steps"]
    keep = {"warmup": lambda s: s < warmup, "cosine": lambda s: warmup <= s <= total, "end": lambda s: s > total,
            "all": lambda s: True}[part]
    index = [i for i, s in enumerate(steps) if keep(s)]
    return index, values[index]


def _part_matches(run: dict, got: torch.Tensor, part: str, formula: Optional[Callable] = None) -> Optional[str]:
    """None when the student's values match ``formula`` on one part of a run; else where they first differ."""
    index, values = _entries(run, got, part)
    want = expected_schedule(run, formula)[index]
    bad = ~((values - want).abs() <= SCHEDULE_RTOL * run["base_lr"])
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0, 0])
    step = run["steps"][index[i]]
    return (f"with total_steps={run['total_steps']}, warmup_steps={run['warmup_steps']}, base_lr={run['base_lr']:.3g}"
            f", min_lr={run.get('min_lr', 0.0):.3g}: at step {step} your rate is {float(values[i]):.4g}, expected "
            f"{float(want[i]):.4g}")


def judge_schedule(spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of warmup_cosine_lr, each on its own part of the schedules, with the mistake named."""
    runs = spec["runs"]
    got = {name: t["value"] for name in runs if (t := results.run(name)) is not None and "value" in t}
    parts = {WARMUP: (0.3, [("main_1", "warmup"), ("main_2", "warmup")]),
             COSINE: (0.35, [("main_1", "cosine"), ("main_2", "cosine")]),
             END: (0.1, [("main_1", "end"), ("main_2", "end")]),
             NO_WARMUP: (0.15, [("no_warmup", "all")])}
    props: List[PropertyVerdict] = []
    engaged = False
    named: List[str] = []  # the mistakes that explain the failed parts of the main schedules
    for name, (weight, checks) in parts.items():
        missing = next((r for r, _ in checks if r not in got), None)
        if missing:
            props.append(PropertyVerdict(name, weight, False, results.run_error(missing)))
            continue
        problem = next((p for r, part in checks if (p := _part_matches(runs[r], got[r], part)) is not None), None)
        if problem is not None and name == NO_WARMUP and any(
                _part_matches(runs[r], got[r], part, _mistake(kind)) is None for r, part in checks for kind in named):
            problem = None  # the same cosine or end mistake as in the main schedules: not counted twice
        if problem is None:
            props.append(PropertyVerdict(name, weight, True))
            engaged = engaged or name in (WARMUP, COSINE)
            continue
        kind = next((k for k in SCHEDULE_HINTS
                     if all(_part_matches(runs[r], got[r], part, _mistake(k)) is None for r, part in checks)), "")
        named += [kind] if kind and name in (COSINE, END) else []
        hint = SCHEDULE_HINTS.get(kind, "")
        props.append(PropertyVerdict(name, weight, False, problem + (f"; {hint}" if hint else "")))
    props.append(_default_min(runs, got, results))
    if not engaged:  # a constant or a wrong formula everywhere: the parts a constant can match earn nothing
        for prop in props:
            if prop.passed and prop.name in (END, DEFAULT_MIN):
                prop.passed, prop.message = False, ("your schedule matches the formula neither during the warm-up "
                                                    "nor during the cosine decay, so this property is not credited")
    errors = [results.run_error(r) for r in runs if r not in got]
    return props, errors[0] if errors else ""


def _default_min(runs: dict, got: Dict[str, torch.Tensor], results: Results) -> PropertyVerdict:
    """Called without min_lr, the schedule is the one with min_lr=0.0."""
    for r in ("default", "explicit_default"):
        if r not in got:
            return PropertyVerdict(DEFAULT_MIN, 0.1, False, results.run_error(r))
    same = (got["default"] - got["explicit_default"]).abs() <= SCHEDULE_RTOL * runs["default"]["base_lr"]
    if bool(same.all()):
        return PropertyVerdict(DEFAULT_MIN, 0.1, True)
    step = runs["default"]["steps"][int((~same).nonzero()[0, 0])]
    return PropertyVerdict(DEFAULT_MIN, 0.1, False, f"called without min_lr, your schedule differs from the one with "
                           f"min_lr=0.0 at step {step}; make 0.0 the default")


# --- Dispatch ---------------------------------------------------------------------------------------------


def judge(exercise: str, spec: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of one exercise of the "deeper" assignment."""
    if exercise == "orthogonal_init":
        return judge_orthogonal(spec, results)
    if exercise == "lsuv_init":
        return judge_lsuv(spec, results)
    if exercise == "warmup_cosine_lr":
        return judge_schedule(spec, results)
    from . import adamw

    return adamw.judge(exercise, spec, results)


def verdict(exercise: str, spec: dict, results: Results):
    """ExerciseVerdict of an exercise of the "deeper" assignment."""
    props, note = judge(exercise, spec, results)
    return make_verdict(exercise, props, note)
