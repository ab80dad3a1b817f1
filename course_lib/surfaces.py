"""Two-parameter loss surfaces that show where SGD, momentum and Adam differ."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

LossSurface = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pathological_curve_loss(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """A ravine: steep and bumpy across w1, a gentle sigmoid slope along w2."""
    x1_loss = torch.tanh(w1) ** 2 + 0.01 * torch.abs(w1)
    x2_loss = torch.sigmoid(w2)
    return x1_loss + x2_loss


def bivar_gaussian(
    w1: torch.Tensor,
    w2: torch.Tensor,
    x_mean: float = 0.0,
    y_mean: float = 0.0,
    x_sig: float = 1.0,
    y_sig: float = 1.0,
) -> torch.Tensor:
    """Density of an axis-aligned 2D Gaussian at (w1, w2)."""
    norm = 1 / (2 * math.pi * x_sig * y_sig)
    x_exp = -((w1 - x_mean) ** 2) / (2 * x_sig**2)
    y_exp = -((w2 - y_mean) ** 2) / (2 * y_sig**2)
    return norm * torch.exp(x_exp + y_exp)


def steep_optima_loss(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Three narrow Gaussian wells on an almost flat plane: tiny gradients except near the optima."""
    z = -bivar_gaussian(w1, w2, x_mean=1.0, y_mean=-0.5, x_sig=0.2, y_sig=0.2)
    z = z - bivar_gaussian(w1, w2, x_mean=-1.0, y_mean=0.5, x_sig=0.2, y_sig=0.2)
    z = z - bivar_gaussian(w1, w2, x_mean=-0.5, y_mean=-0.8, x_sig=0.2, y_sig=0.2)
    return z


def train_curve(
    optimizer_factory: Callable[[list], object],
    loss: LossSurface = pathological_curve_loss,
    num_updates: int = 100,
    init: Sequence[float] = (5, 5),
) -> np.ndarray:
    """Optimize (w1, w2) on ``loss``; return a [num_updates, 3] array of (w1, w2, loss) before each step."""
    weights = torch.nn.Parameter(torch.tensor([float(v) for v in init], dtype=torch.float32))
    optimizer = optimizer_factory([weights])
    points = np.empty((num_updates, 3), dtype=np.float32)
    for t in range(num_updates):
        value = loss(weights[0], weights[1])
        points[t, :2] = weights.detach().numpy()
        points[t, 2] = value.item()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    return points
