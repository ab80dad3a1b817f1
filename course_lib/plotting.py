"""Plots for the course. Every function draws on the ``ax``/``axes`` it is given, or on a new
figure that pyplot does not track (so nothing is left open), and returns the figure or axes.
No function calls ``plt.show()`` or changes global style; in a notebook, display what is returned.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import seaborn as sns
import torch
from matplotlib import cm
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .probes import layer_activations, layer_gradients, layer_weights
from .surfaces import LossSurface

KDE_MAX_POINTS = 20_000  # the KDE line is fitted on a fixed subsample: fast on 400k weights


def _new_axes(ncols: int, figsize: Tuple[float, float], **subplot_kw) -> Tuple[Figure, np.ndarray]:
    """A new untracked figure with one row of ``ncols`` axes."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(1, ncols, squeeze=False, subplot_kw=subplot_kw or None)[0]
    return fig, axes


def _kde_line(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE density of ``values`` on ``grid`` (Scott's bandwidth, fixed subsample)."""
    if values.size > KDE_MAX_POINTS:
        values = np.random.default_rng(0).choice(values, KDE_MAX_POINTS, replace=False)
    bandwidth = 1.06 * values.std() * values.size ** (-1 / 5)
    z = (grid[:, None] - values[None, :]) / bandwidth
    return np.exp(-0.5 * z**2).sum(axis=1) / (values.size * bandwidth * np.sqrt(2 * np.pi))


def plot_dists(
    values: Mapping[str, np.ndarray],
    color: str = "C0",
    xlabel: Optional[str] = None,
    stat: str = "count",
    use_kde: bool = True,
    axes: Optional[Sequence[Axes]] = None,
) -> Figure:
    """Histogram (50 bins, optional KDE line) of each array in ``values``, one panel per key."""
    keys = list(values)
    if axes is None:
        fig, axes = _new_axes(len(keys), (len(keys) * 3, 2.5))
    else:
        fig = axes[0].figure
    for key, ax in zip(keys, axes):
        array = np.asarray(values[key])
        flat = array.reshape(-1).astype(np.float64)
        sns.histplot(flat, ax=ax, color=color, bins=50, stat=stat, kde=False)
        spread = flat.max() - flat.min()
        if use_kde and spread > 1e-8:  # a KDE needs some spread
            grid = np.linspace(flat.min(), flat.max(), 200)
            density = _kde_line(flat, grid)
            scale = flat.size * spread / 50 if stat == "count" else 1.0
            ax.plot(grid, density * scale, color=color)
        shape = rf" ({array.shape[1]} $\to$ {array.shape[0]})" if array.ndim == 2 and "Layer" in key else ""
        ax.set_title(f"{key}{shape}", fontsize=10)
        if xlabel is not None:
            ax.set_xlabel(xlabel)
    fig.subplots_adjust(wspace=0.4)
    return fig


def plot_weight_distribution(model: torch.nn.Module, color: str = "C0", axes: Optional[Sequence[Axes]] = None) -> Figure:
    """Histograms of each linear layer's weights."""
    fig = plot_dists(layer_weights(model), color=color, xlabel="Weight vals", axes=axes)
    fig.suptitle("Weight distribution", fontsize=14, y=1.05)
    return fig


def plot_gradient_distribution(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    color: str = "C0",
    axes: Optional[Sequence[Axes]] = None,
) -> Figure:
    """Histograms of each linear layer's weight gradients on one batch."""
    fig = plot_dists(layer_gradients(model, images, labels), color=color, xlabel="Grad magnitude", axes=axes)
    fig.suptitle("Gradient distribution", fontsize=14, y=1.05)
    return fig


def plot_activation_distribution(
    model: torch.nn.Module, images: torch.Tensor, color: str = "C0", axes: Optional[Sequence[Axes]] = None
) -> Figure:
    """Histograms of each linear layer's outputs on one batch."""
    fig = plot_dists(layer_activations(model, images), color=color, stat="density", xlabel="Activation vals", axes=axes)
    fig.suptitle("Activation distribution", fontsize=14, y=1.05)
    return fig


def surface_grid(
    loss: LossSurface, x_range: Tuple[float, float], y_range: Tuple[float, float], resolution: int = 100
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``loss`` on a ``resolution`` x ``resolution`` grid; return (W1, W2, Z) arrays."""
    w1 = torch.linspace(x_range[0], x_range[1], resolution)
    w2 = torch.linspace(y_range[0], y_range[1], resolution)
    w1, w2 = torch.meshgrid(w1, w2, indexing="xy")
    with torch.no_grad():
        z = loss(w1, w2)
    return w1.numpy(), w2.numpy(), z.numpy()


def plot_surface(
    loss: LossSurface,
    x_range: Tuple[float, float] = (-5, 5),
    y_range: Tuple[float, float] = (-5, 5),
    plot_3d: bool = False,
    cmap=cm.viridis,
    title: str = "Pathological curvature",
    ax: Optional[Axes] = None,
) -> Axes:
    """Draw a loss surface over (w1, w2), as a 3D surface or a 2D heat map; return the axes."""
    if ax is None:
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot(projection="3d" if plot_3d else None)
    w1, w2, z = surface_grid(loss, x_range, y_range)
    if plot_3d:
        ax.plot_surface(w1, w2, z, cmap=cmap, linewidth=1, antialiased=False)
        ax.set_zlabel("loss")
    else:
        ax.imshow(z[::-1], cmap=cmap, extent=(x_range[0], x_range[1], y_range[0], y_range[1]), aspect="auto")
    ax.set_title(title)
    ax.set_xlabel(r"$w_1$")
    ax.set_ylabel(r"$w_2$")
    return ax


def plot_trajectories(
    trajectories: Mapping[str, np.ndarray],
    loss: LossSurface,
    x_range: Optional[Tuple[float, float]] = None,
    y_range: Optional[Tuple[float, float]] = None,
    title: str = "",
    ax: Optional[Axes] = None,
) -> Axes:
    """Draw optimizer paths (name -> [steps, 3] array from ``train_curve``) over a 2D loss map."""
    points = np.concatenate(list(trajectories.values()), axis=0)
    if x_range is None:
        reach = max(float(np.abs(points[:, 0]).max()), 1e-3)
        x_range = (-reach, reach)
    if y_range is None:
        low, high = float(points[:, 1].min()), float(points[:, 1].max())
        pad = max(0.05 * (high - low), 1e-3)
        y_range = (low - pad, high + pad)
    ax = plot_surface(loss, x_range=x_range, y_range=y_range, plot_3d=False, title=title, ax=ax)
    colors = ["red", "blue", "grey", "orange", "magenta", "cyan"]
    for rank, (name, path) in enumerate(trajectories.items()):
        ax.plot(path[:, 0], path[:, 1], color=colors[rank % len(colors)], marker="o",
                markersize=3, zorder=len(trajectories) - rank, label=name, alpha=0.7)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.legend()
    return ax


def plot_training_curves(results: Mapping[str, Dict], ax: Optional[Axes] = None) -> Axes:
    """Validation (solid) and training (dashed) accuracy per epoch for each named results dict."""
    if ax is None:
        ax = Figure(figsize=(6, 4)).add_subplot()
    for rank, (name, res) in enumerate(results.items()):
        color = f"C{rank}"
        epochs = np.arange(1, len(res["val_scores"]) + 1)
        ax.plot(epochs, np.asarray(res["val_scores"]) * 100, color=color,
                label=f"{name} val (test {res['test_acc'] * 100:.2f}%)")
        if res.get("train_scores"):
            ax.plot(epochs, np.asarray(res["train_scores"]) * 100, color=color, linestyle="--", alpha=0.6)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title("Validation (solid) and training (dashed) accuracy")
    ax.legend()
    return ax
