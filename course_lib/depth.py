"""Deep MLPs for the "Going deeper" chapter: initializers, per-layer variances and the Jacobian's spectrum.

Notation of the book's page: ``h_1 = W_1 x + b_1`` is the first hidden pre-activation, and each further
hidden layer computes ``h_{l+1} = W_{l+1} phi(N(h_l)) + b_{l+1}`` (``N`` is BatchNorm or nothing); a residual
network adds the branch to the stream instead, ``h_{l+1} = h_l + alpha (W_{l+1} phi(N(h_l)) + b_{l+1})``
(pre-activation order, He et al., 2016). The logits are ``W_out phi(N(h_L))``.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import make_activation
from .probes import variances

INITS = ("xavier", "kaiming", "orthogonal", "lsuv")  # the initializations of the chapter, in its order


class DeepMLP(nn.Module):
    """An MLP of ``depth`` hidden layers of ``width`` units, optionally with BatchNorm and residual blocks.

    ``self.linears`` holds the ``depth + 1`` linear layers (input, ``depth - 1`` hidden, output) and
    ``self.config`` is the JSON-able description a checkpoint stores beside the weights.
    """

    def __init__(self, depth: int, width: int = 256, act_fn: str = "relu", batch_norm: bool = False,
                 residual: bool = False, branch_scale: Optional[float] = None, input_size: int = 784,
                 num_classes: int = 10) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be positive, got depth={depth}, width={width}")
        self.act = make_activation(act_fn)  # stateless, shared by every layer
        sizes = [input_size] + [width] * depth + [num_classes]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(depth)) if batch_norm else nn.ModuleList()
        # the residual branch's scale: 1/sqrt(depth) keeps the stream's variance bounded (about e-fold)
        scale = (1 / math.sqrt(depth) if branch_scale is None else float(branch_scale)) if residual else 1.0
        self.branch_scale = scale
        self.config = {"depth": int(depth), "width": int(width), "act_fn": act_fn, "batch_norm": bool(batch_norm),
                       "residual": bool(residual), "branch_scale": float(scale), "input_size": int(input_size),
                       "num_classes": int(num_classes)}

    @classmethod
    def from_config(cls, config: dict) -> "DeepMLP":
        """Build a network from a ``config`` dict as stored in ``self.config``."""
        return cls(config["depth"], config["width"], config["act_fn"], config["batch_norm"], config["residual"],
                   config["branch_scale"], config["input_size"], config["num_classes"])

    def _mix(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """phi(N(h_l)) for hidden layer ``k`` (0-based)."""
        return self.act(self.norms[k](h) if len(self.norms) else h)

    def _step(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """h_{l+1} from h_l (0-based ``k``): plain or residual."""
        branch = self.linears[k + 1](self._mix(k, h))
        return h + self.branch_scale * branch if self.config["residual"] else branch

    def stack(self, h1: torch.Tensor) -> torch.Tensor:
        """The hidden stack h_1 -> h_L (the map whose Jacobian the chapter studies)."""
        h = h1
        for k in range(self.config["depth"] - 1):
            h = self._step(k, h)
        return h

    def hidden_states(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The pre-activations h_1, ..., h_L and the logits, in order."""
        h = self.linears[0](x.reshape(x.shape[0], -1))
        states = [h]
        for k in range(self.config["depth"] - 1):
            h = self._step(k, h)
            states.append(h)
        states.append(self.linears[-1](self._mix(self.config["depth"] - 1, h)))
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten each image to a vector and return the class logits."""
        h = self.stack(self.linears[0](x.reshape(x.shape[0], -1)))
        return self.linears[-1](self._mix(self.config["depth"] - 1, h))


def init_gain(act_fn: str) -> float:
    """The gain that keeps a layer's output variance for this activation (torch.nn.init.calculate_gain)."""
    return nn.init.calculate_gain({"identity": "linear"}.get(act_fn, act_fn))


def critical_gain(act_fn: str) -> float:
    """The gain at which sigma_w^2 E[phi'(h)^2] = 1 near h = 0: sqrt(2) for ReLU, 1 for tanh and identity.

    Orthogonal weights at this gain give tanh networks dynamical isometry (Pennington et al., 2017).
    """
    gains = {"relu": math.sqrt(2.0), "tanh": 1.0, "identity": 1.0}
    if act_fn not in gains:
        raise ValueError(f"no critical gain for {act_fn!r}; known: {', '.join(gains)}")
    return gains[act_fn]


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, gain: float = 1.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill ``weight`` [fan_out, fan_in] with a uniformly random (semi-)orthogonal matrix times ``gain``.

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri, 2007), so that Q is
    Haar-distributed: rows orthonormal if the matrix is wide (W W^T = gain^2 I), columns if tall.
    """
    rows, cols = weight.shape
    gaussian = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)  # q: [max, min] with orthonormal columns
    q = q * torch.sign(torch.diagonal(r))  # a fixed sign convention makes the distribution uniform
    q = q if rows >= cols else q.T
    weight.copy_((gain * q).to(weight.dtype))
    return weight


@torch.no_grad()
def lsuv_(model: DeepMLP, images: torch.Tensor, tol: float = 0.02, max_iter: int = 10) -> Dict[str, float]:
    """Layer-sequential unit-variance init (Mishkin & Matas, 2016) on a batch of real ``images``.

    Starts from orthogonal weights (call ``init_weights(model, "orthogonal")`` first), then, layer by layer
    from the input, divides each weight matrix by the standard deviation of its output on the batch until
    that variance is 1 within ``tol``. Plain networks only. Returns each linear layer's final variance.
    """
    if not isinstance(model, DeepMLP):
        raise TypeError(f"lsuv_ needs a DeepMLP, got {type(model).__name__}")
    if model.config["residual"]:
        raise ValueError("LSUV scales each layer's output to unit variance: it is defined for plain networks only")
    was_training = model.training
    model.eval()
    a, final = images.reshape(images.shape[0], -1), {}
    for i, linear in enumerate(model.linears):
        for _ in range(max_iter):
            h = linear(a)
            var = h.var().item()
            if abs(var - 1) < tol:
                break
            linear.weight.div_(math.sqrt(var))  # biases are zero: the output scales with the weights
        h = linear(a)
        final[f"Layer {i}"] = h.var().item()
        if i < model.config["depth"]:
            a = model._mix(i, h)
    model.train(was_training)
    return final


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, images: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> DeepMLP:
    """Initialize every linear layer of ``model`` with ``scheme`` (one of INITS); biases to zero.

    ``model`` is a DeepMLP or any network with a ``config["act_fn"]`` (a BaseNetwork); LSUV needs a DeepMLP.

    xavier: N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio, 2010); kaiming: N(0, gain^2 / fan_in) with
    PyTorch's gain for the activation (sqrt(2) for ReLU, 5/3 for tanh; He et al., 2015); orthogonal:
    ``orthogonal_`` at the ``critical_gain`` (sqrt(2) for ReLU, 1 for tanh; Saxe et al., 2014); lsuv:
    orthogonal, then ``lsuv_`` on ``images`` (needed for this scheme only).
    """
    if scheme not in INITS:
        raise ValueError(f"unknown initialization {scheme!r}; known: {', '.join(INITS)}")
    act = model.config["act_fn"]
    for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
        if scheme == "xavier":
            nn.init.xavier_normal_(linear.weight, generator=generator)
        elif scheme == "kaiming":
            nn.init.normal_(linear.weight, 0.0, init_gain(act) / math.sqrt(linear.in_features), generator=generator)
        else:
            orthogonal_(linear.weight, gain=critical_gain(act), generator=generator)
        nn.init.zeros_(linear.bias)
    if scheme == "lsuv":
        if images is None:
            raise ValueError("LSUV needs a batch of images to measure the layers' variances")
        lsuv_(model, images)
    return model


def layer_variances(model: DeepMLP, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, Dict[str, float]]:
    """Variance of each hidden pre-activation h_l (and the logits) and of each linear weight's gradient.

    One batch, the model in eval mode for the forward values (BatchNorm in train mode, as at the first step,
    for a BatchNorm network); cross-entropy gradient. Keys "Layer 1" ... "Layer L+1" (the logits last).
    Returns {"activations": {...}, "gradients": {...}}, as ``plot_variances_by_depth`` reads them.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.train(model.config["batch_norm"])  # BatchNorm normalizes with the batch's statistics, as in training
    saved = {p: p.grad for p in model.parameters()}
    try:
        model.zero_grad(set_to_none=True)
        states = model.hidden_states(images.to(device))
        F.cross_entropy(states[-1], labels.to(device)).backward()
        acts = {f"Layer {i + 1}": s.detach().cpu().numpy() for i, s in enumerate(states)}
        grads = {f"Layer {i + 1}": lin.weight.grad.cpu().numpy() for i, lin in enumerate(model.linears)}
    finally:
        for p, g in saved.items():
            p.grad = g
        model.train(was_training)
    return {"activations": variances(acts), "gradients": variances(grads)}


def stack_jacobians(model: DeepMLP, images: torch.Tensor) -> torch.Tensor:
    """The Jacobians dh_L / dh_1 [batch, width, width] of the hidden stack at each image (torch.func).

    The model is evaluated in eval mode (a BatchNorm network with its running statistics).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h1 = model.linears[0](images.reshape(images.shape[0], -1))
        return torch.func.vmap(torch.func.jacrev(lambda h: model.stack(h[None])[0]))(h1).detach()
    finally:
        model.train(was_training)


def jacobian_singular_values(model: DeepMLP, images: torch.Tensor) -> np.ndarray:
    """All singular values of the stack's Jacobian at each image, pooled and sorted (descending)."""
    values = torch.linalg.svdvals(stack_jacobians(model, images).double())
    return np.sort(values.reshape(-1).cpu().numpy())[::-1].copy()


def spectrum_summary(singular_values: Sequence[float], zero_below: float = 1e-10) -> Dict[str, float]:
    """Largest and median singular value, the share that is (numerically) zero, and the decades spanned.

    Values below ``zero_below`` times the largest count as zero (a ReLU network's Jacobian is singular:
    every unit that is off removes a direction). ``decades`` is log10 of the 90th over the 10th percentile
    of the non-zero values: 0 means every direction is stretched alike (dynamical isometry).
    """
    s = np.asarray(singular_values, dtype=np.float64)
    nonzero = s[s > zero_below * s.max()] if s.max() > 0 else s[:0]
    if nonzero.size == 0:
        return {"max": float(s.max()), "median": 0.0, "zero_fraction": 1.0, "decades": float("nan")}
    p10, p90 = np.percentile(nonzero, [10, 90])
    return {"max": float(s.max()), "median": float(np.median(s)), "zero_fraction": 1 - nonzero.size / s.size,
            "decades": float(np.log10(p90 / p10))}
