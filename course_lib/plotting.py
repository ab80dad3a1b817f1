"""Plots for the course. Every function draws on the ``ax``/``axes`` it is given, or on a new
figure that pyplot does not track (so nothing is left open), and returns the figure or axes.
No function calls ``plt.show()`` or changes global style; in a notebook, display what is returned.

New figures are ``CourseFigure``s: they carry their own ``_repr_png_``, so Jupyter, Colab and the
book's build show them as images whatever matplotlib backend the kernel runs (an untracked figure
otherwise has no display formatter unless pyplot's inline backend happens to be active). In the
grader's kernels (``COURSE_NO_FIGURES=1``, see ``run_settings``) they show as one line of text
instead: no grade looks at a figure, and drawing them took most of a graded notebook's time.
"""

from __future__ import annotations

import functools
import io
import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib import cm
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .probes import layer_activations, layer_gradients, layer_weights
from .run_settings import run_settings
from .surfaces import LossSurface

KDE_MAX_POINTS = 5_000  # the KDE line is fitted on a fixed subsample: fast on 400k weights
PNG_DPI = 150  # sharp on a high-density screen; the site's figures are these PNGs


ALT_TEXT_CHARS = 600  # a screen reader reads the whole alt text: keep it to what the figure shows


class CourseFigure(Figure):
    """A matplotlib Figure that displays itself as a PNG image in IPython (Jupyter, Colab, myst-nb)."""

    def _repr_png_(self) -> Optional[bytes]:
        """The figure as PNG bytes, cropped to what was drawn (suptitles included), its ``description()`` in the
        PNG's Description text (the site's alt text); None in the grader's kernels."""
        if not run_settings().draw_figures:  # no grade looks at a figure: drawing cost seconds per submission
            return None
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight",
                     metadata={"Description": self.description()})
        return buffer.getvalue()

    def description(self) -> str:
        """What the figure shows, from its titles, axis labels and legends (for a screen reader)."""
        panels = []
        for ax in self.axes:
            if not ax.get_visible() or ax.get_label() == "<colorbar>":
                continue
            x, y = ax.get_xlabel().strip(), ax.get_ylabel().strip()
            what = f"{y} against {x}" if x and y else x or y or ("a 3D surface" if ax.name == "3d" else "a plot")
            if ax.name == "3d" and getattr(ax, "get_zlabel", None) and ax.get_zlabel():
                what = f"{ax.get_zlabel()} over {x} and {y}"
            legend = ax.get_legend()
            names = [t.get_text() for t in legend.get_texts()] if legend is not None else []
            title = ax.get_title().strip()
            panels.append((f"{title}: " if title else "") + what + (f" ({', '.join(names)})" if names else ""))
        suptitle = self._suptitle.get_text().strip() if self._suptitle is not None else ""
        count = f"{len(panels)} panels" if len(panels) > 1 else "one panel"
        text = (f"{suptitle}. " if suptitle else "") + f"Figure of {count}: " + "; ".join(panels) + "."
        text = " ".join(_plain(text).split())
        return text if len(text) <= ALT_TEXT_CHARS else text[: ALT_TEXT_CHARS - 3] + "..."

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """IPython's text form: what a figure is, or that it was not drawn while grading."""
        printer.text(repr(self) if run_settings().draw_figures else "[figure not drawn while grading]")


def _plain(text: str) -> str:
    """Mathtext as words a screen reader can say: no $, no braces, TeX commands as their names (\\to: to)."""
    text = text.replace("$", "").replace("{", "").replace("}", "")
    return re.sub(r"\\([A-Za-z]+)", lambda m: {"to": "to", "cdot": "times"}.get(m[1], m[1]), text)


def new_figure(figsize: Tuple[float, float] = (6, 4), **kwargs) -> CourseFigure:
    """A new figure that pyplot does not track and that notebooks show as an image."""
    return CourseFigure(figsize=figsize, **kwargs)


def _undrawn_in_grader_kernels(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """``plot`` as is, except in the grader's kernels: an empty figure at once when no ``axes`` are given."""

    @functools.wraps(plot)
    def plot_or_placeholder(*args, **kwargs) -> Figure:
        if kwargs.get("axes") is None and not run_settings().draw_figures:
            return new_figure()
        return plot(*args, **kwargs)

    return plot_or_placeholder


def _new_axes(ncols: int, figsize: Tuple[float, float], **subplot_kw) -> Tuple[Figure, np.ndarray]:
    """A new untracked figure with one row of ``ncols`` axes."""
    fig = new_figure(figsize)
    axes = fig.subplots(1, ncols, squeeze=False, subplot_kw=subplot_kw or None)[0]
    return fig, axes


def _kde_line(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE density of ``values`` on ``grid`` (Scott's bandwidth, fixed subsample)."""
    if values.size > KDE_MAX_POINTS:
        values = np.random.default_rng(0).choice(values, KDE_MAX_POINTS, replace=False)
    bandwidth = 1.06 * values.std() * values.size ** (-1 / 5)
    z = (grid[:, None] - values[None, :]) / bandwidth
    return np.exp(-0.5 * z**2).sum(axis=1) / (values.size * bandwidth * np.sqrt(2 * np.pi))


@_undrawn_in_grader_kernels
def plot_dists(
    values: Mapping[str, np.ndarray],
    color: str = "C0",
    xlabel: Optional[str] = None,
    stat: str = "count",
    use_kde: bool = True,
    axes: Optional[Sequence[Axes]] = None,
    titles: Optional[Mapping[str, str]] = None,
) -> Figure:
    """Histogram (50 bins, optional KDE line) of each array in ``values``, one panel per key.

    Each panel is titled ``titles[key]``, or the key itself.
    """
    keys = list(values)
    if axes is None:
        fig, axes = _new_axes(len(keys), (len(keys) * 3, 2.5))
    else:
        fig = axes[0].figure
    for key, ax in zip(keys, axes):
        array = np.asarray(values[key])
        flat = array.reshape(-1).astype(np.float64)
        # numpy's histogram: seaborn's histplot checks every value in Python (~1 s per 200k values)
        ax.hist(flat, bins=50, density=stat == "density", color=color, alpha=0.6, edgecolor="white", linewidth=0.4)
        ax.set_ylabel("Density" if stat == "density" else "Count")
        spread = flat.max() - flat.min()
        if use_kde and spread > 1e-8:  # a KDE needs some spread
            grid = np.linspace(flat.min(), flat.max(), 200)
            density = _kde_line(flat, grid)
            scale = flat.size * spread / 50 if stat == "count" else 1.0
            ax.plot(grid, density * scale, color=color)
        ax.set_title((titles or {}).get(key, key), fontsize=10)
        if xlabel is not None:
            ax.set_xlabel(xlabel)
        if ax is not axes[0]:
            ax.set_ylabel("")
    fig.subplots_adjust(wspace=0.4)
    return fig


def weight_titles(values: Mapping[str, np.ndarray]) -> Dict[str, str]:
    """Panel titles for weight-shaped arrays [fan_out, fan_in]: "Layer i (fan_in -> fan_out)"."""
    return {key: rf"{key} ({a.shape[1]} $\to$ {a.shape[0]})" for key, a in values.items() if np.ndim(a) == 2}


def activation_titles(values: Mapping[str, np.ndarray]) -> Dict[str, str]:
    """Panel titles for activations [batch, units]: "Layer i (units outputs)"."""
    return {key: f"{key} ({np.shape(a)[-1]} outputs)" for key, a in values.items()}


@_undrawn_in_grader_kernels
def plot_weight_distribution(
    model: torch.nn.Module, color: str = "C0", axes: Optional[Sequence[Axes]] = None
) -> Figure:
    """Histograms of each linear layer's weights."""
    weights = layer_weights(model)
    fig = plot_dists(weights, color=color, xlabel="weight", axes=axes, titles=weight_titles(weights))
    fig.suptitle("Weight distribution", fontsize=14, y=1.05)
    return fig


@_undrawn_in_grader_kernels
def plot_gradient_distribution(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    color: str = "C0",
    axes: Optional[Sequence[Axes]] = None,
) -> Figure:
    """Histograms of each linear layer's weight gradients on one batch (signed values)."""
    gradients = layer_gradients(model, images, labels)
    fig = plot_dists(gradients, color=color, xlabel="gradient (signed)", axes=axes, titles=weight_titles(gradients))
    fig.suptitle("Gradient distribution", fontsize=14, y=1.05)
    return fig


@_undrawn_in_grader_kernels
def plot_activation_distribution(
    model: torch.nn.Module, images: torch.Tensor, color: str = "C0", axes: Optional[Sequence[Axes]] = None
) -> Figure:
    """Histograms of each linear layer's outputs on one batch."""
    activations = layer_activations(model, images)
    fig = plot_dists(activations, color=color, stat="density", xlabel="layer output", axes=axes,
                     titles=activation_titles(activations))
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
    alpha: float = 1.0,
) -> Axes:
    """Draw a loss surface over (w1, w2), as a 3D surface or a 2D heat map (``alpha``: its opacity)."""
    if ax is None:
        fig = new_figure((6, 4.5))
        ax = fig.add_subplot(projection="3d" if plot_3d else None)
    w1, w2, z = surface_grid(loss, x_range, y_range)
    if plot_3d:
        ax.plot_surface(w1, w2, z, cmap=cmap, linewidth=1, antialiased=False)
        ax.set_zlabel("loss")
    else:
        ax.imshow(z[::-1], cmap=cmap, extent=(x_range[0], x_range[1], y_range[0], y_range[1]), aspect="auto",
                  alpha=alpha)
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
    # a faded map, so that every path stands out against it
    ax = plot_surface(loss, x_range=x_range, y_range=y_range, plot_3d=False, title=title, ax=ax, alpha=0.45)
    colors = ["red", "blue", "black", "darkorange", "magenta", "cyan"]
    markers = ["o", "s", "^", "D", "v", "P"]
    count = len(trajectories)
    for rank, (name, path) in enumerate(trajectories.items()):
        # later paths are drawn thinner and on top, so a path that follows an earlier one stays visible
        ax.plot(path[:, 0], path[:, 1], color=colors[rank % len(colors)], marker=markers[rank % len(markers)],
                markersize=3 + 2 * (count - 1 - rank), linewidth=1 + (count - 1 - rank),
                markeredgecolor="black", markeredgewidth=0.3, zorder=2 + rank, label=name, alpha=0.8)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.legend()
    return ax


def plot_training_curves(results: Mapping[str, Union[Dict, Sequence[Dict]]], ax: Optional[Axes] = None) -> Axes:
    """Validation (solid) and training (dashed) accuracy per epoch for each named results dict; a name given a
    list of results dicts (one per seed) is drawn as their mean with a band of ± one standard deviation."""
    if ax is None:
        ax = new_figure((6, 4)).add_subplot()
    banded = False
    for rank, (name, res) in enumerate(results.items()):
        color = f"C{rank}"
        runs = [res] if isinstance(res, Mapping) else list(res)
        test = np.array([r["test_acc"] for r in runs]) * 100
        label = f"{name} val (test {test.mean():.2f}%)" if len(runs) == 1 else \
            f"{name} val (test {test.mean():.1f} ± {test.std(ddof=1):.1f}%)"
        for key, style, alpha, line_label in (("val_scores", "-", 1.0, label), ("train_scores", "--", 0.6, None)):
            if not all(r.get(key) for r in runs):
                continue
            length = min(len(r[key]) for r in runs)  # early-stopped seeds may end sooner
            scores = np.array([r[key][:length] for r in runs], dtype=float) * 100
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, scores.mean(axis=0), color=color, linestyle=style, alpha=alpha, label=line_label)
            if len(runs) > 1:
                spread = scores.std(axis=0, ddof=1)
                ax.fill_between(epochs, scores.mean(axis=0) - spread, scores.mean(axis=0) + spread, color=color,
                                alpha=0.15 * alpha, linewidth=0)
                banded = True
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title("Validation (solid) and training (dashed) accuracy" + (", mean ± std over seeds" if banded else ""))
    ax.legend()
    return ax


@_undrawn_in_grader_kernels
def plot_variances_by_depth(
    variances_by_run: Mapping[str, Mapping[str, Mapping[str, float]]], axes: Optional[Sequence[Axes]] = None
) -> Figure:
    """Activation and gradient variance per layer (log scale), one line per run.

    ``variances_by_run[run]["activations"|"gradients"]`` maps "Layer i" to a variance.
    """
    kinds = ("activations", "gradients")
    if axes is None:
        fig, axes = _new_axes(2, (11, 3.8))
    else:
        fig = axes[0].figure
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for ax, kind in zip(axes, kinds):
        for rank, (run, by_kind) in enumerate(variances_by_run.items()):
            if kind not in by_kind:
                continue
            layers = list(by_kind[kind])
            ax.plot(range(len(layers)), [by_kind[kind][layer] for layer in layers], marker=markers[rank % len(markers)],
                    color=f"C{rank}", label=run)
            ax.set_xticks(range(len(layers)), layers)
        ax.set_yscale("log")
        ax.set_xlabel("linear layer (input on the left)")
        ax.set_ylabel("variance")
        ax.set_title("Layer outputs" if kind == "activations" else "Weight gradients")
        ax.grid(alpha=0.3, which="both")
    handles, names = axes[0].get_legend_handles_labels()  # the outputs panel has every run
    axes[-1].legend(handles, names, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
    fig.subplots_adjust(wspace=0.3)
    return fig


@_undrawn_in_grader_kernels
def plot_image_grid(
    images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], ncols: int = 8, nrows: int = 2
) -> Figure:
    """The first ``nrows * ncols`` images (flattened 28x28 or [N, 28, 28]) in a grid, titled by class."""
    fig = new_figure((1.3 * ncols, 1.5 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    pictures = images[: nrows * ncols].detach().cpu().reshape(-1, 28, 28).numpy()
    for ax, picture, label in zip(axes.flat, pictures, labels[: nrows * ncols].tolist()):
        ax.imshow(picture, cmap="gray_r")
        ax.set_title(class_names[label], fontsize=8)
        ax.axis("off")
    return fig


@_undrawn_in_grader_kernels
def plot_layer_variances(
    variances_by_run: Mapping[str, Mapping[str, Mapping[str, float]]], axes: Optional[Sequence[Axes]] = None,
    title_suffix: str = "",
) -> Figure:
    """Activation and gradient variance against layer number (log scale), one line per run; for deep nets.

    ``variances_by_run[run]["activations"|"gradients"]`` maps "Layer i" (i = 1, 2, ...) to a variance.
    """
    if axes is None:
        fig, axes = _new_axes(2, (11, 3.6))
    else:
        fig = axes[0].figure
    for ax, kind in zip(axes, ("activations", "gradients")):
        for rank, (run, by_kind) in enumerate(variances_by_run.items()):
            layers = [int(key.split()[-1]) for key in by_kind[kind]]
            values = np.maximum(np.asarray(list(by_kind[kind].values()), dtype=float), 1e-45)  # 0 on a log axis
            ax.plot(layers, values, color=f"C{rank}", marker=".", markersize=4, label=run)
        ax.set_yscale("log")
        ax.set_xlabel("layer (input on the left; the last is the output layer)")
        ax.set_ylabel("variance")
        what = "Layer outputs (pre-activations)" if kind == "activations" else "Weight gradients"
        ax.set_title(what + title_suffix, fontsize=10)
        ax.grid(alpha=0.3, which="major")
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
    fig.subplots_adjust(wspace=0.3)
    return fig


@_undrawn_in_grader_kernels
def plot_accuracy_by_depth(
    accuracy: Mapping[str, Mapping[str, Mapping[int, Union[float, Sequence[float]]]]],
    axes: Optional[Sequence[Axes]] = None,
) -> Figure:
    """Test accuracy against depth, one panel per activation (``accuracy[act][variant][depth]``: a fraction, or
    one per seed), one line per initialization or variant: the mean over seeds with a band of ± one standard
    deviation (seaborn's ``lineplot``)."""
    import pandas as pd  # seaborn's input; both load only here (grading kernels import this module)
    import seaborn as sns

    if axes is None:
        fig, axes = _new_axes(len(accuracy), (5.2 * len(accuracy), 3.6))
    else:
        fig = axes[0].figure
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for ax, (act, by_variant) in zip(axes, accuracy.items()):
        rows = [{"variant": variant, "depth": depth, "accuracy": 100 * value}
                for variant, by_depth in by_variant.items() for depth, values in by_depth.items()
                for value in np.atleast_1d(np.asarray(values, dtype=float))]
        variants = list(by_variant)
        sns.lineplot(pd.DataFrame(rows), x="depth", y="accuracy", hue="variant", style="variant",
                     hue_order=variants, style_order=variants, palette=[f"C{i}" for i in range(len(variants))],
                     markers=markers[:len(variants)], dashes=False, errorbar="sd", ax=ax)
        ax.axhline(10, color="grey", linestyle=":", linewidth=1)  # chance: 10 classes
        depths = sorted({d for v in by_variant.values() for d in v})
        ax.set_xscale("log")
        ax.minorticks_off()  # no "3 x 10^1" labels between the depths
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])
        ax.set_xlabel("depth (hidden layers)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(act, fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.get_legend().remove()
    handles, labels = axes[-1].get_legend_handles_labels()
    axes[-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9,
                    title="mean ± std over seeds" if _has_seeds(accuracy) else None, title_fontsize=9)
    return fig


def _has_seeds(accuracy: Mapping[str, Mapping[str, Mapping[int, Union[float, Sequence[float]]]]]) -> bool:
    """Whether any point of ``accuracy`` holds more than one value."""
    return any(np.size(values) > 1 for by_variant in accuracy.values() for by_depth in by_variant.values()
               for values in by_depth.values())


def plot_singular_values(
    spectra: Mapping[str, Sequence[float]], ax: Optional[Axes] = None, title: str = ""
) -> Axes:
    """Each run's Jacobian singular values, sorted, against their rank (as a fraction); log scale, zeros left out.

    A flat line at 1 is dynamical isometry: every direction passes through the network unchanged in length.
    """
    if ax is None:
        ax = new_figure((5.5, 3.8)).add_subplot()
    for rank, (name, values) in enumerate(spectra.items()):
        s = np.sort(np.asarray(values, dtype=float))[::-1]
        keep = s > 1e-10 * s.max() if s.max() > 0 else np.zeros_like(s, dtype=bool)
        ax.plot((np.arange(s.size) / s.size)[keep], s[keep], color=f"C{rank}", label=name)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("rank of the singular value (fraction of all)")
    ax.set_ylabel("singular value")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_schedules(schedules: Mapping[str, Sequence[float]], ax: Optional[Axes] = None,
                   steps_per_epoch: Optional[int] = None) -> Axes:
    """Learning rate against step for each named schedule (x in epochs if ``steps_per_epoch`` is given)."""
    if ax is None:
        ax = new_figure((6, 3.4)).add_subplot()
    for rank, (name, values) in enumerate(schedules.items()):
        x = np.arange(len(values)) / (steps_per_epoch or 1)
        ax.plot(x, values, color=f"C{rank}", label=name)
    ax.set_xlabel("epoch" if steps_per_epoch else "step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return ax


def plot_step_curves(curves: Mapping[str, Union[Sequence[float], Sequence[Sequence[float]]]], ax: Optional[Axes] = None,
                     ylabel: str = "training loss", steps_per_epoch: Optional[int] = None, log: bool = False,
                     smooth: int = 1) -> Axes:
    """A per-step quantity (loss, gradient norm) for each named run, optionally a moving average over ``smooth``;
    a name given several curves (one per seed) draws each in the run's colour."""
    if ax is None:
        ax = new_figure((6, 3.4)).add_subplot()
    for rank, (name, values) in enumerate(curves.items()):
        several = len(values) > 0 and np.ndim(values[0]) == 1
        for index, curve in enumerate(values if several else [values]):
            y = np.asarray(curve, dtype=float)
            if smooth > 1 and y.size >= smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = (np.arange(y.size) + (smooth - 1)) / (steps_per_epoch or 1)
            ax.plot(x, y, color=f"C{rank}", label=name if index == 0 else None, linewidth=1,
                    alpha=0.8 if several else 1.0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch" if steps_per_epoch else "step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return ax


def plot_early_stopping(results: Mapping[str, Dict], stops: Mapping[str, int], ax: Optional[Axes] = None) -> Axes:
    """Training curves (``plot_training_curves``) with a vertical line where early stopping ends each run."""
    ax = plot_training_curves(results, ax=ax)
    for rank, name in enumerate(results):
        if name in stops:
            ax.axvline(stops[name], color=f"C{rank}", linestyle=":", linewidth=1.5)
    ax.set_title("Accuracy per epoch; dotted: where early stopping ends the run", fontsize=10)
    return ax
