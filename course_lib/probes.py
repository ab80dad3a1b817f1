"""Per-layer weights, gradients and activations of a BaseNetwork, keyed "Layer i".

``i`` is the index of the linear layer in ``model.layers`` (0, 2, 4, ...), as in Lippe's tutorial (2022).
Values come back as NumPy arrays on the CPU in the layer's own shape: weights and gradients
[fan_out, fan_in], activations [batch, fan_out].
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _linear_layers(model: nn.Module) -> Dict[int, nn.Linear]:
    """Linear layers of ``model.layers`` by index."""
    return {i: m for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)}


def layer_weights(model: nn.Module) -> Dict[str, np.ndarray]:
    """Return the weight matrix of every linear layer."""
    return {f"Layer {i}": m.weight.detach().cpu().numpy().copy() for i, m in _linear_layers(model).items()}


def layer_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, np.ndarray]:
    """Return the cross-entropy gradient of every linear layer's weight on one batch.

    The model's existing gradients and train/eval mode are restored afterwards.
    """
    device = next(model.parameters()).device
    was_training = model.training
    saved = {p: (None if p.grad is None else p.grad.clone()) for p in model.parameters()}
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images.to(device)), labels.to(device))
        loss.backward()
        grads = {
            f"Layer {i}": m.weight.grad.detach().cpu().numpy().copy()
            for i, m in _linear_layers(model).items()
        }
    finally:
        for p, g in saved.items():
            p.grad = g
        model.train(was_training)
    return grads


@torch.no_grad()
def layer_activations(model: nn.Module, images: torch.Tensor) -> Dict[str, np.ndarray]:
    """Return the output of every linear layer (before its activation function) on one batch."""
    device = next(model.parameters()).device
    feats = images.to(device).reshape(images.shape[0], -1)
    activations = {}
    for i, layer in enumerate(model.layers):
        feats = layer(feats)
        if isinstance(layer, nn.Linear):
            activations[f"Layer {i}"] = feats.cpu().numpy().copy()
    return activations


def variances(values: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Return the variance of all entries of each array (population variance, like ``np.var``)."""
    return {key: float(np.var(value.astype(np.float64))) for key, value in values.items()}


def format_variances(
    values: Dict[str, np.ndarray], reference: Dict[str, float] | None = None, reference_label: str = "Lippe (2022)"
) -> str:
    """Return one line per layer with its variance, beside a reference value (named ``reference_label``)."""
    lines = []
    for key, var in variances(values).items():
        line = f"{key} - Variance: {var:.4g}"
        if reference is not None and key in reference:
            line += f"   ({reference_label}: {reference[key]:.4g})"
        lines.append(line)
    return "\n".join(lines)
