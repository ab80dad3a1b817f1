"""Training practice: learning-rate schedules with warm-up, L2 versus decoupled weight decay, early stopping.

Schedules are ``torch.optim.lr_scheduler`` objects stepped once per batch (``train_model``'s
``scheduler_factory``); each factory takes the optimizer and the total number of steps.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch.optim import lr_scheduler

SCHEDULES = ("constant", "step", "cosine", "onecycle")
SchedulerFactory = Callable[[torch.optim.Optimizer, int], lr_scheduler.LRScheduler]


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                   step_every: Optional[int] = None, gamma: float = 0.1) -> lr_scheduler.LRScheduler:
    """A per-step schedule of the optimizer's learning rate ``lr_0`` over ``total_steps`` steps.

    constant: lr_0; step: lr_0 * gamma ** (s // step_every) (default: every third of the run);
    cosine: lr_0 (1 + cos(pi s / S)) / 2 after the warm-up; onecycle: PyTorch's OneCycleLR with peak lr_0
    (30% warm-up from lr_0 / 25, cosine down to lr_0 / 1e4; Smith & Topin, 2019). ``warmup_steps`` > 0
    prepends a linear warm-up from lr_0 / warmup_steps to lr_0 (Goyal et al., 2017) to the first three.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
    if name == "onecycle":
        peak = optimizer.param_groups[0]["lr"]
        return lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=0.3)
    rest = total_steps - warmup_steps
    if name == "constant":
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "step":
        main = lr_scheduler.StepLR(optimizer, step_size=step_every or max(1, rest // 3), gamma=gamma)
    else:
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    if warmup_steps == 0:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def scheduler_factory(name: str, warmup_steps: int = 0) -> SchedulerFactory:
    """A factory ``(optimizer, total_steps) -> scheduler`` for ``train_model``."""
    return lambda optimizer, total_steps: make_scheduler(name, optimizer, total_steps, warmup_steps)


def schedule_values(name: str, lr: float, total_steps: int, warmup_steps: int = 0) -> List[float]:
    """The learning rate at each of ``total_steps`` steps under a schedule (no training: a dummy parameter)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(name, optimizer, total_steps, warmup_steps)
    values = []
    for _ in range(total_steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def make_optimizer(kind: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """One of the chapter's optimizers: "sgd" (momentum, L2 via weight_decay), "adam_l2" or "adamw".

    adam_l2 adds ``weight_decay * w`` to the gradient before Adam's normalization (coupled L2);
    adamw subtracts ``lr * weight_decay * w`` from the weights outside it (Loshchilov & Hutter, 2019).
    """
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adam_l2":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}; known: sgd, adam_l2, adamw")


def early_stopping_epoch(val_scores: Sequence[float], patience: int) -> int:
    """The 1-based epoch at which training stops: ``patience`` epochs after the last improvement.

    Returns len(val_scores) if the run ends first. The weights kept are those of the best epoch.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    best, since = float("-inf"), 0
    for epoch, score in enumerate(val_scores, start=1):
        if score > best:
            best, since = score, 0
        else:
            since += 1
            if since >= patience:
                return epoch
    return len(val_scores)


def weight_norm(model: torch.nn.Module) -> float:
    """The Euclidean norm of all weight matrices together (biases and norm layers left out)."""
    squares = [p.detach().double().pow(2).sum() for n, p in model.named_parameters() if p.ndim >= 2]
    return float(torch.stack(squares).sum().sqrt())


def best_of(results: Dict[str, dict], key: str = "test_acc") -> str:
    """The name of the run with the highest ``key``."""
    return max(results, key=lambda name: results[name][key])
