"""The optimizer template that the course's SGD, SGDMomentum and Adam exercises subclass."""

from __future__ import annotations

from typing import Iterable

import torch


class OptimizerTemplate:
    """Base class: keeps the parameters and learning rate; subclasses implement ``update_param``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        self.params = list(params)
        self.lr = lr

    def zero_grad(self) -> None:
        """Set the gradient of every parameter to zero."""
        grads = [p.grad for p in self.params if p.grad is not None]
        for g in grads:
            if g.requires_grad:
                g.detach_()  # cut the gradient out of any graph (matters for 2nd-order methods)
        try:
            torch._foreach_zero_(grads)  # one call for all of them
        except (AttributeError, RuntimeError):  # an older torch, or gradients on several devices
            for g in grads:
                g.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient; skip the others."""
        for p in [p for p in self.params if p.grad is not None]:
            self.update_param(p)

    def update_param(self, p: torch.nn.Parameter) -> None:
        """Update one parameter in place from ``p.grad`` (implemented by each optimizer)."""
        raise NotImplementedError
