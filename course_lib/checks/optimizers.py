"""Optimizer exercises: the student's parameter trajectories against PyTorch's and known variants.

Each exercise is a weighted set of properties. "Oracle" properties (update direction, moving averages,
bias correction, eps...) are judged by explanation: the trajectories are matched against PyTorch (the
oracle) and against simulations of the known mistakes and their pairs; the variant that reproduces every
trajectory names the mistakes, and each property fails only for its own mistakes. A submission that no
variant explains is judged property by property against the oracle on each property's own test.
"Metamorphic" properties compare the student's code with itself (one parameter alone vs among others;
default arguments vs the same values passed explicitly), so other mistakes cannot affect them.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch

from .core import PropertyVerdict, Results, make_verdict
from .runner import decode_tensor, encode_tensor

RTOL, ATOL = 1e-5, 1e-12  # relative to the distance the expected parameter travelled so far


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
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


def _make_run(rng: random.Random, gen: torch.Generator, kwargs: dict, grad_scale: Tuple[float, float],
              late: bool = False, frozen: bool = True) -> dict:
    """A run: parameters (some never get a gradient, some start late), per-step gradients, kwargs."""
    steps = rng.randint(20, 40)
    shapes = _random_shapes(rng)
    starts = [1] * len(shapes)
    if late:  # one parameter starts at step 1, the others later, at distinct steps
        later = rng.sample(range(2, 10), len(shapes) - 1)
        starts = [1, *later]
        rng.shuffle(starts)
    params = []
    for shape, start in zip(shapes, starts):
        scale = _log_uniform(rng, *grad_scale)
        grads = torch.randn((steps, *shape), generator=gen, dtype=torch.float64) * scale
        grads[: start - 1] = 0
        params.append({"init": encode_tensor(torch.randn(shape, generator=gen, dtype=torch.float64)),
                       "start": start, "grads": encode_tensor(grads)})
    if frozen:
        for _ in range(rng.randint(1, 2)):
            shape = (rng.randint(2, 6),)
            params.insert(rng.randrange(len(params) + 1),
                          {"init": encode_tensor(torch.randn(shape, generator=gen, dtype=torch.float64)),
                           "start": None})
    return {"kwargs": kwargs, "steps": steps, "params": params}


def _solo(run: dict) -> Tuple[dict, int]:
    """The last parameter that gets gradients from step 1, alone, with the same data; and its index in ``run``."""
    index = max(k for k, p in enumerate(run["params"]) if p["start"] == 1)
    return {"kwargs": run["kwargs"], "steps": run["steps"], "params": [run["params"][index]]}, index


def challenge(exercise: str, rng: random.Random) -> dict:
    """The runs of one optimizer exercise (JSON-able)."""
    gen = torch.Generator().manual_seed(rng.randrange(2**62))
    runs: Dict[str, dict] = {}
    if exercise == "sgd":
        runs["main"] = _make_run(rng, gen, {"lr": _log_uniform(rng, 1e-3, 0.5)}, (1e-3, 3.0))
        runs["main_2"] = _make_run(rng, gen, {"lr": _log_uniform(rng, 1e-3, 0.5)}, (1e-3, 3.0), late=True)
    elif exercise == "sgd_momentum":
        for name, late in (("main", False), ("main_2", True)):
            kwargs = {"lr": _log_uniform(rng, 1e-3, 0.5), "momentum": rng.uniform(0.5, 0.95)}
            runs[name] = _make_run(rng, gen, kwargs, (1e-3, 3.0), late=late)
        runs["solo"], _ = _solo(runs["main"])
        default = _make_run(rng, gen, {"lr": _log_uniform(rng, 1e-3, 0.5)}, (1e-3, 3.0), frozen=False)
        runs["default"] = default
        runs["explicit_default"] = {**default, "kwargs": {**default["kwargs"], "momentum": 0.0}}
    elif exercise == "adam":
        def adam_kwargs(eps: float) -> dict:
            return {"lr": _log_uniform(rng, 1e-3, 0.3), "beta1": rng.uniform(0.5, 0.95),
                    "beta2": rng.uniform(0.9, 0.999), "eps": eps}
        runs["main"] = _make_run(rng, gen, adam_kwargs(_log_uniform(rng, 1e-12, 1e-10)), (1e-2, 3.0))
        runs["late"] = _make_run(rng, gen, adam_kwargs(_log_uniform(rng, 1e-12, 1e-10)), (1e-2, 3.0), late=True)
        runs["eps"] = _make_run(rng, gen, adam_kwargs(_log_uniform(rng, 0.03, 0.3)), (1e-2, 0.3))
        runs["solo"], _ = _solo(runs["main"])
        default = _make_run(rng, gen, {"lr": _log_uniform(rng, 1e-3, 0.3)}, (1e-7, 1e-5), frozen=False)
        runs["default"] = default
        runs["explicit_default"] = {**default, "kwargs": {**default["kwargs"], "beta1": 0.9, "beta2": 0.999,
                                                          "eps": 1e-8}}
    else:
        raise KeyError(exercise)
    return {"kind": "optimizer", "optimizer": exercise, "runs": runs}


def expected_tensors(spec: dict) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtype of every tensor a run may record."""
    return {f"{name}/{k}": ((run["steps"], *p["init"]["shape"]), torch.float64)
            for name, run in spec["runs"].items() for k, p in enumerate(run["params"])}


# --- Decoded runs, the oracle and the simulated variants ------------------------------------------------------


@dataclass
class Run:
    """A decoded run: kwargs, step count, per-parameter initial values, gradients and first step."""

    name: str
    kwargs: dict
    steps: int
    inits: List[torch.Tensor]
    grads: List[Optional[torch.Tensor]]
    starts: List[Optional[int]]

    @classmethod
    def decode(cls, name: str, run: dict) -> "Run":
        params = run["params"]
        return cls(name, dict(run["kwargs"]), int(run["steps"]), [decode_tensor(p["init"]) for p in params],
                   [decode_tensor(p["grads"]) if p.get("start") else None for p in params],
                   [p.get("start") for p in params])

    def active(self) -> List[int]:
        """Indices of the parameters that get gradients."""
        return [k for k, s in enumerate(self.starts) if s]


def oracle(kind: str, run: Run) -> List[torch.Tensor]:
    """PyTorch's trajectories [steps, *shape] for every parameter (float64).

    The functional form of torch.optim.SGD / torch.optim.Adam (what their step() calls), fed the same
    per-parameter state the classes keep, so that no torch.compile machinery is imported.
    """
    from torch.optim import adam as torch_adam
    from torch.optim import sgd as torch_sgd

    params = [t.clone() for t in run.inits]
    kw = run.kwargs
    beta = kw.get("momentum", 0.0)
    buffers: List[Optional[torch.Tensor]] = [None] * len(params)
    exp_avg = [torch.zeros_like(t) for t in params]
    exp_avg_sq = [torch.zeros_like(t) for t in params]
    steps = [torch.tensor(0.0) for _ in params]
    out = [torch.empty((run.steps, *t.shape), dtype=torch.float64) for t in run.inits]
    for step in range(1, run.steps + 1):
        on = [k for k in run.active() if step >= run.starts[k]]
        grads = [run.grads[k][step - 1] for k in on]
        if kind in ("sgd", "sgd_momentum"):
            # The course's m = beta m + (1 - beta) g is (1 - beta) times torch's undamped buffer.
            bufs = [buffers[k] for k in on]
            torch_sgd.sgd([params[k] for k in on], grads, bufs, weight_decay=0.0, momentum=beta,
                          lr=kw["lr"] * (1 - beta), dampening=0.0, nesterov=False, maximize=False, foreach=False)
            for k, b in zip(on, bufs):
                buffers[k] = b
        else:
            torch_adam.adam([params[k] for k in on], grads, [exp_avg[k] for k in on], [exp_avg_sq[k] for k in on],
                            [], [steps[k] for k in on], foreach=False, capturable=False, differentiable=False,
                            fused=None, grad_scale=None, found_inf=None, has_complex=False, amsgrad=False,
                            beta1=kw.get("beta1", 0.9), beta2=kw.get("beta2", 0.999), lr=kw["lr"],
                            weight_decay=0.0, eps=kw.get("eps", 1e-8), maximize=False)
        for k, p in enumerate(params):
            out[k][step - 1] = p
    return out


def simulate(kind: str, run: Run, flags: FrozenSet[str]) -> List[torch.Tensor]:
    """Trajectories of the course's update rule with the mistakes in ``flags`` (vectorized over parameters)."""
    active = run.active()
    sizes = [run.inits[k].numel() for k in active]
    w = torch.cat([run.inits[k].reshape(-1) for k in active]) if active else torch.zeros(0, dtype=torch.float64)
    start = torch.cat([torch.full((n,), run.starts[k], dtype=torch.float64) for k, n in zip(active, sizes)]) \
        if active else torch.zeros(0, dtype=torch.float64)
    owner = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)]) if active else \
        torch.zeros(0, dtype=torch.long)
    grads = torch.cat([run.grads[k].reshape(run.steps, -1) for k in active], dim=1) if active else \
        torch.zeros((run.steps, 0), dtype=torch.float64)
    kw = run.kwargs
    lr = kw["lr"] ** 2 if "lr_squared" in flags else kw["lr"]
    sign = 1.0 if "ascends" in flags else -1.0
    beta = kw.get("momentum", 0.0)
    b1, b2, eps = kw.get("beta1", 0.9), kw.get("beta2", 0.999), kw.get("eps", 1e-8)
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    t = torch.zeros_like(w)
    updates = 0  # calls to update_param so far (all parameters together)
    traj = torch.empty((run.steps, w.numel()), dtype=torch.float64)
    for step in range(1, run.steps + 1):
        on = start <= step
        g = grads[step - 1]
        if "no_state" in flags:
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            t = torch.zeros_like(w)
        if kind == "sgd":
            w = torch.where(on, w + sign * lr * g, w)
        elif kind == "sgd_momentum":
            if "beta_swapped" in flags:
                new_m = (1 - beta) * m + beta * g
            else:
                new_m = beta * m + (g if "undamped" in flags else (1 - beta) * g)
            m = torch.where(on, new_m, m)
            factor = (1 - beta) if "damped_twice" in flags else 1.0
            w = torch.where(on, w + sign * lr * factor * m, w)
        else:
            t = torch.where(on, t + 1, t)
            if "global_step" in flags:
                count = torch.full_like(w, float(step))
            elif "update_count" in flags:
                active_now = [i for i in range(len(sizes)) if run.starts[active[i]] <= step]
                rank = torch.zeros(len(sizes), dtype=torch.float64)
                for r, i in enumerate(active_now, start=1):
                    rank[i] = updates + r
                updates += len(active_now)
                count = rank[owner] if len(sizes) else t
            elif "no_state" in flags:
                count = torch.ones_like(w)
            else:
                count = t
            new_m = b1 * m + (g if "undamped" in flags else (1 - b1) * g)
            new_v = b2 * v + (1 - b2) * g * g
            m = torch.where(on, new_m, m)
            v = torch.where(on, new_v, v)
            if "no_bias_correction" in flags:
                m_hat, v_hat = m, v
            else:
                m_hat, v_hat = m / (1 - b1**count), v / (1 - b2**count)
            denom = torch.sqrt(v_hat + eps) if "eps_inside" in flags else torch.sqrt(v_hat) + eps
            w = torch.where(on, w + sign * lr * m_hat / denom, w)
        traj[step - 1] = w
    out: List[torch.Tensor] = [torch.empty(0)] * len(run.inits)
    for k in range(len(run.inits)):
        out[k] = run.inits[k].expand((run.steps, *run.inits[k].shape)).clone()
    offset = 0
    for k, n in zip(active, sizes):
        out[k] = traj[:, offset: offset + n].reshape((run.steps, *run.inits[k].shape))
        offset += n
    return out


@dataclass
class Deviation:
    """Where a trajectory first leaves the expected one."""

    step: int
    shape: Tuple[int, ...]
    amount: float

    def sentence(self) -> str:
        return (f"your update after step {self.step} differs from the expected one by {self.amount:.2g} for a "
                f"parameter of shape {self.shape}")


def first_deviation(run: Run, got: Sequence[torch.Tensor], want: Sequence[torch.Tensor],
                    last_step: Optional[int] = None) -> Optional[Deviation]:
    """The earliest step at which an active parameter of ``got`` leaves ``want`` (None if they agree).

    Each parameter is compared by its movement since the step before its first gradient, so a change
    made while it had no gradient (judged on its own) does not count again here.
    """
    best: Optional[Deviation] = None
    steps = run.steps if last_step is None else min(last_step, run.steps)
    for k in run.active():
        first = run.starts[k] - 1  # index of the first step with a gradient
        if first >= steps:
            continue
        before_got = got[k][first - 1].reshape(1, -1) if first else run.inits[k].reshape(1, -1)
        before_want = want[k][first - 1].reshape(1, -1) if first else run.inits[k].reshape(1, -1)
        g = got[k][first:steps].reshape(steps - first, -1) - before_got
        e = want[k][first:steps].reshape(steps - first, -1) - before_want
        # rounding errors accumulate along the path: the tolerance grows with the distance travelled so far
        travelled = torch.diff(e, dim=0, prepend=torch.zeros_like(e[:1])).abs().amax(dim=1).cumsum(0)
        diff = (g - e).abs().amax(dim=1)
        bad = ~(diff <= RTOL * travelled + ATOL)  # NaN counts as bad
        if bool(bad.any()):
            step = first + int(bad.nonzero()[0, 0]) + 1
            if best is None or step < best.step:
                best = Deviation(step, tuple(run.inits[k].shape), float(diff[step - first - 1]))
    return best


def changed_without_gradient(run: Run, got: Sequence[torch.Tensor]) -> Optional[str]:
    """A sentence if a parameter changed while it had no gradient (never, or before its first one)."""
    for k, start in enumerate(run.starts):
        before = run.steps if not start else start - 1
        if before and not bool((got[k][:before] == run.inits[k]).all()):
            when = "never gets a gradient" if not start else f"gets its first gradient at step {start}"
            return (f"a parameter of shape {tuple(run.inits[k].shape)} that {when} was changed before it had a "
                    f"gradient; skip parameters whose .grad is None")
    return None


# --- Properties --------------------------------------------------------------------------------------------

HINTS = {
    "ascends": "your parameters move along the gradient instead of against it: subtract the update",
    "lr_squared": "your steps are lr times too small: the learning rate seems to be applied twice",
    "undamped": "your moving average matches m = beta * m + g; weigh the new gradient by (1 - beta): "
                "m = beta * m + (1 - beta) * g",
    "damped_twice": "your steps match w <- w - lr * (1 - beta) * m with m already weighted by (1 - beta): apply "
                    "the (1 - beta) factor once, in the moving average, and step by lr * m",
    "beta_swapped": "your moving average matches m = (1 - beta) * m + beta * g: beta weighs the old average and "
                    "(1 - beta) the new gradient, m = beta * m + (1 - beta) * g",
    "no_state": "your optimizer forgets its moving averages between steps: create the state once in __init__ "
                "(one tensor per parameter) and update it in update_param",
    "no_bias_correction": "your updates match Adam without bias correction: divide m by 1 - beta1^t and v by "
                          "1 - beta2^t",
    "global_step": "your bias correction counts the calls to step() for every parameter; check that the step "
                   "count is kept per parameter (a parameter that gets its first gradient later starts at t = 1)",
    "update_count": "your step count grows with every parameter update, shared by all parameters; check that "
                    "the step count is kept per parameter",
    "eps_inside": "you add eps inside the square root; add it after: sqrt(v_hat) + eps",
}


@dataclass(frozen=True)
class OracleProperty:
    """A property judged by explanation; ``runs`` (and ``first_step_only``) are its own test."""

    name: str
    weight: float
    mistakes: FrozenSet[str]
    runs: Tuple[str, ...]
    first_step_only: bool = False


@dataclass(frozen=True)
class Spec:
    """An optimizer exercise: its oracle properties, its known mistakes, its metamorphic property weights."""

    flags: Tuple[str, ...]
    properties: Tuple[OracleProperty, ...]
    per_parameter: float  # weight of "state kept per parameter" (solo vs among others); 0 = not judged
    per_parameter_name: str
    defaults: float  # weight of "default arguments" (default vs explicit); 0 = not judged
    defaults_name: str
    untouched: float


UNTOUCHED = "parameters without a gradient left unchanged"
NOT_IN_PLACE = ("your step left the parameters as they were: change them in place (p.data.add_(...), or "
                "p.data -= ...); p = p - ... only gives the name p a new tensor, which the model never sees")
# The factors of each exercise's step besides the learning rate, named when the learning rate cannot explain a
# step of the wrong size.
STEP_FACTORS = {"sgd": "", "sgd_momentum": "the (1 - beta) factor", "adam": "the bias correction"}
SPECS = {
    "sgd": Spec(
        ("ascends", "lr_squared"),
        (OracleProperty("first step", 0.3, frozenset({"ascends", "lr_squared"}), ("main",), True),
         OracleProperty("many steps and shapes", 0.5, frozenset({"ascends", "lr_squared"}), ("main", "main_2"))),
        0.0, "", 0.0, "", 0.2),
    "sgd_momentum": Spec(
        ("ascends", "lr_squared", "undamped", "beta_swapped", "damped_twice", "no_state"),
        (OracleProperty("update direction and learning rate", 0.2, frozenset({"ascends", "lr_squared"}),
                        ("main",), True),
         OracleProperty("moving average with the (1 - beta) factor", 0.2,
                        frozenset({"undamped", "beta_swapped", "damped_twice"}), ("main", "main_2")),
         OracleProperty("momentum carried over many steps and shapes", 0.25, frozenset({"no_state"}),
                        ("main", "main_2"))),
        0.15, "one momentum buffer per parameter", 0.1, "default momentum 0", 0.1),
    "adam": Spec(
        ("ascends", "lr_squared", "undamped", "no_state", "no_bias_correction", "global_step", "update_count",
         "eps_inside"),
        (OracleProperty("update direction and learning rate", 0.15, frozenset({"ascends", "lr_squared"}),
                        ("main",), True),
         OracleProperty("moving averages kept over many steps and shapes", 0.25,
                        frozenset({"no_state", "undamped"}), ("main",)),
         OracleProperty("bias correction with each parameter's own step count", 0.2,
                        frozenset({"no_bias_correction", "global_step", "update_count"}), ("late",)),
         OracleProperty("eps added after the square root", 0.1, frozenset({"eps_inside"}), ("eps",))),
        0.1, "state kept per parameter", 0.1, "default betas and eps", 0.1),
}


def explain(kind: str, spec: Spec, runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
            expected: Dict[str, List[torch.Tensor]]) -> Optional[FrozenSet[str]]:
    """The smallest set of known mistakes (at most two) whose simulation reproduces every recorded run."""
    names = [n for n in runs if n in got]
    if all(first_deviation(runs[n], got[n], expected[n]) is None for n in names):
        return frozenset()
    variants = [frozenset(c) for size in (1, 2) for c in itertools.combinations(spec.flags, size)]
    for flags in variants:
        if all(first_deviation(runs[n], got[n], simulate(kind, runs[n], flags)) is None for n in names):
            return flags
    return None


def scale_hint(run: Run, got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], factors: str = "",
               oracle_at: Optional[Callable[[Run], List[torch.Tensor]]] = None) -> str:
    """A hint when the first step is a multiple of the expected one (sign or scale of the step, or no step).

    A step of the wrong size names the learning rate only when the oracle run with the learning rate scaled by
    that multiple (``oracle_at``) reproduces every step; otherwise it names ``factors``, the update's other
    factors."""
    ks = [k for k in run.active() if run.starts[k] == 1]
    if not ks:
        return ""
    step_got = torch.cat([(got[k][0] - run.inits[k]).reshape(-1) for k in ks])
    step_want = torch.cat([(want[k][0] - run.inits[k]).reshape(-1) for k in ks])
    norm = float(step_want.square().sum())
    if norm == 0:
        return ""
    ratio = float((step_got * step_want).sum()) / norm
    if float((step_got - ratio * step_want).abs().max()) > 1e-6 * float(step_want.abs().max()):
        return ""
    if ratio < 0:
        return "; " + HINTS["ascends"]
    if float(step_got.abs().max()) == 0:
        return "; " + NOT_IN_PLACE
    if abs(ratio - 1) <= 1e-6:
        return "; the first step is right, so check what is kept from one step to the next"
    lr = run.kwargs.get("lr")
    if oracle_at is not None and lr is not None:
        scaled = Run(run.name, {**run.kwargs, "lr": lr * ratio}, run.steps, run.inits, run.grads, run.starts)
        if first_deviation(run, got, oracle_at(scaled)) is None:
            return (f"; every step of yours is {ratio:.3g} times the expected one, as with a learning rate of "
                    f"{lr * ratio:.3g} instead of {lr:.3g}: check the learning rate")
    other = factors or "how the step is computed from the gradient"
    return (f"; your first step is {ratio:.3g} times the expected one, and no learning rate reproduces your later "
            f"steps: check {other}")


def recorded_trajectories(runs: Dict[str, Run], results: Results) -> Dict[str, List[torch.Tensor]]:
    """run name -> the recorded trajectory of each parameter, for the runs whose every parameter was recorded."""
    got: Dict[str, List[torch.Tensor]] = {}
    for name, run in runs.items():
        tensors = results.run(name)
        if tensors is not None and all(str(k) in tensors for k in range(len(run.inits))):
            got[name] = [tensors[str(k)] for k in range(len(run.inits))]
    return got


def oracle_verdicts(properties: Sequence[OracleProperty], runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
                    expected: Dict[str, List[torch.Tensor]], explained: Optional[FrozenSet[str]],
                    hints: Dict[str, str], results: Results,
                    hint_for: Callable[[OracleProperty, Run], str]) -> List[PropertyVerdict]:
    """Each property judged against the oracle: a named mistake that explains the trajectories fails its own
    properties with its hint; otherwise the first deviation (plus ``hint_for``) fails the property."""
    props: List[PropertyVerdict] = []
    for prop in properties:
        missing = [r for r in prop.runs if r not in got]
        if missing:
            props.append(PropertyVerdict(prop.name, prop.weight, False, results.run_error(missing[0])))
            continue
        last = 1 if prop.first_step_only else None
        deviation = next((d for r in prop.runs
                          if (d := first_deviation(runs[r], got[r], expected[r], last)) is not None), None)
        where = next((d for r in prop.runs if (d := first_deviation(runs[r], got[r], expected[r])) is not None),
                     None)
        if explained is not None:
            own = sorted(explained & prop.mistakes)
            if not own:
                props.append(PropertyVerdict(prop.name, prop.weight, True))
            else:
                prefix = f"{where.sentence()}; " if where else ""
                props.append(PropertyVerdict(prop.name, prop.weight, False, prefix + hints[own[0]]))
        elif deviation is None:
            props.append(PropertyVerdict(prop.name, prop.weight, True))
        else:
            props.append(PropertyVerdict(prop.name, prop.weight, False,
                                         deviation.sentence() + hint_for(prop, runs[prop.runs[0]])))
    return props


def judge(exercise: str, spec_json: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of an optimizer exercise, judged on the recorded trajectories."""
    spec = SPECS[exercise]
    runs = {name: Run.decode(name, run) for name, run in spec_json["runs"].items()}
    got = recorded_trajectories(runs, results)
    oracle_runs = sorted({r for p in spec.properties for r in p.runs}, key=list(runs).index)
    expected = {name: oracle(exercise, runs[name]) for name in oracle_runs}
    explained = explain(exercise, spec, {n: runs[n] for n in oracle_runs}, got, expected)
    props = oracle_verdicts(spec.properties, runs, got, expected, explained, HINTS, results,
                            lambda prop, run: scale_hint(run, got[run.name], expected[run.name],
                                                          STEP_FACTORS.get(exercise, ""),
                                                          lambda scaled: oracle(exercise, scaled))
                            if run.name in got else "")
    engaged = explained is not None or _moves(runs["main"], got.get("main"))
    if spec.per_parameter:
        per_parameter = _per_parameter(spec, runs, got, results)
        if explained is None and not per_parameter.passed and "follows a different path" in per_parameter.message:
            for prop in props:
                if not prop.passed and "raised" not in prop.message:
                    prop.message += "; your parameters change each other's updates: keep each parameter's state apart"
        props.append(per_parameter)
    if spec.defaults:
        props.append(_defaults(spec, runs, got, results))
    props.append(_untouched(spec, runs, got, results))
    if not engaged:  # checks of the code against itself credit nothing that does not update at all
        for prop in props:
            if prop.passed:
                prop.passed, prop.message = False, NOT_ENGAGED
    errors = [results.run_error(r) for r in runs if r not in got]
    return props, errors[0] if errors else ""


NOT_ENGAGED = ("your optimizer does not change the parameters that get a gradient at every step, so this "
               "property cannot be credited; implement update_param")


def _moves(run: Run, got: Optional[List[torch.Tensor]]) -> bool:
    """Every parameter with a gradient changes at every step of ``run``."""
    if got is None:
        return False
    for k in run.active():
        path = torch.cat([run.inits[k].reshape(1, -1), got[k].reshape(run.steps, -1)])
        first = run.starts[k] - 1
        if not bool((path[first + 1:] != path[first:-1]).any(dim=1).all()):
            return False
    return True


def _missing_run(name: str, weight: float, got: Dict[str, List[torch.Tensor]], results: Results,
                 *needed: str) -> Optional[PropertyVerdict]:
    """The failed property when a run it compares raised (None when every run is there)."""
    for r in needed:
        if r not in got:
            return PropertyVerdict(name, weight, False, results.run_error(r))
    return None


def _per_parameter(spec: Spec, runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
                   results: Results) -> PropertyVerdict:
    """One parameter optimized alone follows the same path as among the others."""
    name, weight = spec.per_parameter_name, spec.per_parameter
    missing = _missing_run(name, weight, got, results, "solo", "main")
    if missing:
        return missing
    main = runs["main"]
    index = max(k for k, s in enumerate(main.starts) if s == 1)
    alone = runs["solo"]
    deviation = first_deviation(alone, got["solo"], [got["main"][index]])
    if deviation is None:
        return PropertyVerdict(name, weight, True)
    return PropertyVerdict(name, weight, False, (
        f"a parameter of shape {deviation.shape} follows a different path when other parameters are optimized "
        f"with it (from step {deviation.step} on); keep the state of each parameter separate, e.g. in a dict "
        f"keyed by the parameter"))


def _defaults(spec: Spec, runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
              results: Results) -> PropertyVerdict:
    """Built without the optional arguments, the optimizer behaves as with the documented defaults."""
    name, weight = spec.defaults_name, spec.defaults
    missing = _missing_run(name, weight, got, results, "default", "explicit_default")
    if missing:
        return missing
    deviation = first_deviation(runs["default"], got["default"], got["explicit_default"])
    if deviation is None:
        return PropertyVerdict(name, weight, True)
    values = ", ".join(f"{k}={v}" for k, v in runs["explicit_default"].kwargs.items() if k != "lr")
    return PropertyVerdict(name, weight, False, (
        f"without the optional arguments your optimizer does not behave as with {values} (from step "
        f"{deviation.step} on); use these as the defaults"))


def _untouched(spec: Spec, runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
               results: Results) -> PropertyVerdict:
    """Parameters are unchanged until they get a gradient, in every run."""
    if not got:
        return PropertyVerdict(UNTOUCHED, spec.untouched, False, results.run_error(next(iter(runs))))
    for r in got:
        problem = changed_without_gradient(runs[r], got[r])
        if problem:
            return PropertyVerdict(UNTOUCHED, spec.untouched, False, problem)
    return PropertyVerdict(UNTOUCHED, spec.untouched, True)


def verdict(exercise: str, spec_json: dict, results: Results):
    """ExerciseVerdict of an optimizer exercise."""
    props, note = judge(exercise, spec_json, results)
    return make_verdict(exercise, props, note)
