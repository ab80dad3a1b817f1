"""AdamW (decoupled weight decay): the student's trajectories against torch's AdamW and its known variants.

Judged like the optimizers of course_lib.checks.optimizers: the trajectories are matched against the
oracle (the functional form of torch.optim.AdamW) and against simulations of the known mistakes and
their pairs; the variant that reproduces every run names the mistakes, and each property fails only
for its own. Metamorphic properties (state per parameter, default arguments) compare the code with itself.
"""

from __future__ import annotations

import itertools
import random
from typing import Dict, FrozenSet, List, Optional, Tuple

import torch

from . import optimizers as opt
from .core import PropertyVerdict, Results
from .optimizers import OracleProperty, Run, Spec, first_deviation

DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}  # torch.optim.AdamW's


def challenge(rng: random.Random) -> dict:
    """The runs of the AdamW exercise (JSON-able)."""
    gen = torch.Generator().manual_seed(rng.randrange(2**62))

    def kwargs(lr: Tuple[float, float], wd: Tuple[float, float]) -> dict:
        return {"lr": opt._log_uniform(rng, *lr), "beta1": rng.uniform(0.5, 0.95), "beta2": rng.uniform(0.9, 0.999),
                "eps": opt._log_uniform(rng, 1e-12, 1e-10), "weight_decay": rng.uniform(*wd)}

    runs = {"main": opt._make_run(rng, gen, kwargs((1e-3, 0.1), (0.02, 0.3)), (1e-2, 3.0)),
            "late": opt._make_run(rng, gen, kwargs((1e-3, 0.1), (0.02, 0.3)), (1e-2, 3.0), late=True),
            "nodecay": opt._make_run(rng, gen, kwargs((1e-3, 0.3), (0.0, 0.0)), (1e-2, 3.0)),
            "decay": opt._make_run(rng, gen, kwargs((0.05, 0.3), (0.2, 0.5)), (1e-2, 1.0))}
    eps_kwargs = {**kwargs((1e-3, 0.3), (0.0, 0.1)), "eps": opt._log_uniform(rng, 0.03, 0.3)}
    runs["eps"] = opt._make_run(rng, gen, eps_kwargs, (1e-2, 0.3))  # eps as large as sqrt(v): where it goes shows
    runs["solo"], _ = opt._solo(runs["main"])
    default = opt._make_run(rng, gen, {}, (1e-7, 1e-5), frozen=False)
    runs["default"] = default
    runs["explicit_default"] = {**default, "kwargs": dict(DEFAULTS)}
    return {"kind": "optimizer", "optimizer": "adamw", "runs": runs}


def _kw(run: Run) -> dict:
    return {**DEFAULTS, **run.kwargs}


def oracle(run: Run) -> List[torch.Tensor]:
    """torch.optim.AdamW's trajectories [steps, *shape] (its functional form, with per-parameter state)."""
    from torch.optim import adam as torch_adam

    kw = _kw(run)
    params = [t.clone() for t in run.inits]
    exp_avg = [torch.zeros_like(t) for t in params]
    exp_avg_sq = [torch.zeros_like(t) for t in params]
    steps = [torch.tensor(0.0) for _ in params]
    out = [torch.empty((run.steps, *t.shape), dtype=torch.float64) for t in run.inits]
    for step in range(1, run.steps + 1):
        on = [k for k in run.active() if step >= run.starts[k]]
        torch_adam.adam([params[k] for k in on], [run.grads[k][step - 1] for k in on], [exp_avg[k] for k in on],
                        [exp_avg_sq[k] for k in on], [], [steps[k] for k in on], foreach=False, capturable=False,
                        differentiable=False, fused=None, grad_scale=None, found_inf=None, has_complex=False,
                        decoupled_weight_decay=True, amsgrad=False, beta1=kw["beta1"], beta2=kw["beta2"],
                        lr=kw["lr"], weight_decay=kw["weight_decay"], eps=kw["eps"], maximize=False)
        for k, p in enumerate(params):
            out[k][step - 1] = p
    return out


FLAGS = ("ascends", "lr_squared", "undamped", "no_state", "eps_inside", "no_bias_correction", "global_step",
         "l2_decay", "decay_unscaled", "decay_after_update")


def simulate(run: Run, flags: FrozenSet[str]) -> List[torch.Tensor]:
    """Trajectories of the course's AdamW rule with the mistakes in ``flags``."""
    kw = _kw(run)
    lr, wd, b1, b2, eps = kw["lr"], kw["weight_decay"], kw["beta1"], kw["beta2"], kw["eps"]
    step_lr = lr**2 if "lr_squared" in flags else lr
    sign = 1.0 if "ascends" in flags else -1.0
    out = [t.expand((run.steps, *t.shape)).clone() for t in run.inits]
    for k in run.active():
        w = run.inits[k].clone()
        m, v, t = torch.zeros_like(w), torch.zeros_like(w), 0
        for step in range(run.starts[k], run.steps + 1):
            g = run.grads[k][step - 1]
            if "no_state" in flags:
                m, v, t = torch.zeros_like(w), torch.zeros_like(w), 0
            t += 1
            count = step if "global_step" in flags else t
            if "l2_decay" in flags:
                g = g + wd * w
            m = b1 * m + (g if "undamped" in flags else (1 - b1) * g)
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = (m, v) if "no_bias_correction" in flags else (m / (1 - b1**count), v / (1 - b2**count))
            denom = torch.sqrt(v_hat + eps) if "eps_inside" in flags else torch.sqrt(v_hat) + eps
            update = sign * step_lr * m_hat / denom
            if "l2_decay" in flags:
                w = w + update
            elif "decay_after_update" in flags:
                w = (w + update) * (1 - lr * wd)
            else:
                w = w * (1 - (wd if "decay_unscaled" in flags else lr * wd)) + update
            out[k][step - 1] = w
    return out


HINTS = {**opt.HINTS,
         "global_step": "your bias correction counts the calls to step(); keep the step count per parameter (a "
                        "parameter that gets its first gradient later starts at t = 1)",
         "l2_decay": "your updates match weight decay added to the gradient (L2 regularization inside Adam): "
                     "AdamW decays the weight itself, w <- w - lr * weight_decay * w, apart from the Adam step",
         "decay_unscaled": "your decay matches w <- w - weight_decay * w: scale it by the learning rate, "
                           "w <- w - lr * weight_decay * w",
         "decay_after_update": "you decay the weight after the Adam step: decay the weight it had before the "
                               "step, w <- w - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w)"}

ADAM_STEP = "Adam step: direction, learning rate and moving averages"
BIAS = "bias correction with each parameter's own step count"
DECOUPLED = "weight decay decoupled from the gradient"
DECAY_SIZE = "decay of lr * weight_decay * w, from the weight before the step"
STATE, DEFAULT_ARGS = "state kept per parameter", "default arguments as torch.optim.AdamW"

SPEC = Spec(
    FLAGS,
    (OracleProperty(ADAM_STEP, 0.2, frozenset({"ascends", "lr_squared", "undamped", "no_state", "eps_inside"}),
                    ("nodecay", "eps")),
     OracleProperty(BIAS, 0.15, frozenset({"no_bias_correction", "global_step"}), ("late",)),
     OracleProperty(DECOUPLED, 0.25, frozenset({"l2_decay"}), ("main", "decay")),
     OracleProperty(DECAY_SIZE, 0.15, frozenset({"decay_unscaled", "decay_after_update"}), ("decay",))),
    0.05, STATE, 0.1, DEFAULT_ARGS, 0.1)


def explain(runs: Dict[str, Run], got: Dict[str, List[torch.Tensor]],
            expected: Dict[str, List[torch.Tensor]]) -> Optional[FrozenSet[str]]:
    """The smallest set of known mistakes (at most two) whose simulation reproduces every recorded run."""
    names = [n for n in runs if n in got]
    if all(first_deviation(runs[n], got[n], expected[n]) is None for n in names):
        return frozenset()
    for flags in (frozenset(c) for size in (1, 2) for c in itertools.combinations(FLAGS, size)):
        if all(first_deviation(runs[n], got[n], simulate(runs[n], flags)) is None for n in names):
            return flags
    return None


def judge(exercise: str, spec_json: dict, results: Results) -> Tuple[List[PropertyVerdict], str]:
    """The properties of AdamW, judged on the recorded trajectories."""
    spec = SPEC
    runs = {name: Run.decode(name, run) for name, run in spec_json["runs"].items()}
    got = opt.recorded_trajectories(runs, results)
    oracle_runs = [r for r in runs if any(r in p.runs for p in spec.properties)]
    expected = {name: oracle(runs[name]) for name in oracle_runs}
    explained = explain({n: runs[n] for n in oracle_runs}, got, expected)
    props = opt.oracle_verdicts(spec.properties, runs, got, expected, explained, HINTS, results,
                                lambda prop, run: opt.scale_hint(run, got[run.name], expected[run.name],
                                                                 opt.STEP_FACTORS["adam"], oracle)
                                if prop.name == ADAM_STEP else "")
    engaged = explained is not None or opt._moves(runs["main"], got.get("main"))
    props.append(opt._per_parameter(spec, runs, got, results))
    props.append(opt._defaults(spec, runs, got, results))
    props.append(opt._untouched(spec, runs, got, results))
    if not engaged:  # checks of the code against itself credit nothing that does not update at all
        for prop in props:
            if prop.passed:
                prop.passed, prop.message = False, opt.NOT_ENGAGED
    errors = [results.run_error(r) for r in runs if r not in got]
    return props, errors[0] if errors else ""
