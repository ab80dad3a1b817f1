"""Plot helpers: Agg backend, they draw on given axes or a new figure, return it, and leave nothing open.

New figures are CourseFigures, which display themselves as PNG images in any IPython kernel.
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_lib import plotting
from course_lib.models import BaseNetwork
from course_lib.surfaces import pathological_curve_loss, steep_optima_loss, train_curve


@pytest.fixture(autouse=True)
def no_figures_left_open():
    """Every test starts and must end with no pyplot figure open."""
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a plot helper left a pyplot figure open"


def test_backend_is_agg():
    """Tests run headless."""
    assert matplotlib.get_backend().lower() == "agg"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_dists_one_panel_per_key_with_the_given_titles():
    """One histogram panel per key, titled by ``titles`` (or the key); weight titles read fan-in -> fan-out."""
    values = {"Layer 0": np.random.default_rng(0).normal(size=(8, 5)), "Layer 2": np.zeros((3, 8))}
    fig = plotting.plot_dists(values, xlabel="w", titles=plotting.weight_titles(values))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_title() == r"Layer 0 (5 $\to$ 8)"  # a weight [fan_out, fan_in] = [8, 5]
    assert fig.axes[1].get_title() == r"Layer 2 (8 $\to$ 3)"
    assert len(fig.axes[0].patches) == 50  # 50 bins
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[1].lines) == 0  # KDE only where there is spread
    assert plotting.plot_dists(values).axes[0].get_title() == "Layer 0"


def test_distribution_titles_and_labels_match_what_is_plotted(fashion_batch):
    """Weights and gradients: "(fan_in -> fan_out)"; activations: the layer's outputs, never the batch size."""
    images, labels = fashion_batch
    net = BaseNetwork("relu")
    expected = [r"Layer 0 (784 $\to$ 512)", r"Layer 2 (512 $\to$ 256)", r"Layer 4 (256 $\to$ 256)",
                r"Layer 6 (256 $\to$ 128)", r"Layer 8 (128 $\to$ 10)"]
    weights = plotting.plot_weight_distribution(net)
    gradients = plotting.plot_gradient_distribution(net, images[:64], labels[:64])
    activations = plotting.plot_activation_distribution(net, images[:64])
    assert [ax.get_title() for ax in weights.axes] == expected
    assert [ax.get_title() for ax in gradients.axes] == expected
    assert [ax.get_title() for ax in activations.axes] == [
        f"Layer {i} ({n} outputs)" for i, n in zip((0, 2, 4, 6, 8), (512, 256, 256, 128, 10))]
    assert all("64" not in ax.get_title() for ax in activations.axes), "the batch size is not a layer size"
    assert gradients.axes[0].get_xlabel() == "gradient (signed)"  # gradients have both signs
    assert min(p.get_x() for p in gradients.axes[0].patches) < 0 < max(p.get_x() for p in gradients.axes[0].patches)


def test_every_new_figure_displays_as_a_png_image(fashion_batch):
    """Every helper's new figure carries its own _repr_png_ (no pyplot, no inline backend needed)."""
    images, labels = fashion_batch
    net = BaseNetwork("relu")
    paths = {"SGD": train_curve(lambda p: torch.optim.SGD(p, lr=1.0), num_updates=5)}
    results = {"SGD": {"val_scores": [0.8, 0.85], "train_scores": [0.82, 0.9], "test_acc": 0.8909}}
    figures = [
        plotting.new_figure(),
        plotting.plot_weight_distribution(net),
        plotting.plot_gradient_distribution(net, images[:64], labels[:64]),
        plotting.plot_activation_distribution(net, images[:64]),
        plotting.plot_surface(pathological_curve_loss).figure,
        plotting.plot_surface(steep_optima_loss, plot_3d=True).figure,
        plotting.plot_trajectories(paths, pathological_curve_loss).figure,
        plotting.plot_training_curves(results).figure,
        plotting.plot_variances_by_depth({"a": {"activations": {"Layer 0": 1.0, "Layer 2": 0.1}}}),
        plotting.plot_image_grid(images, labels, [str(i) for i in range(10)], ncols=4, nrows=1),
    ]
    for fig in figures:
        assert isinstance(fig, plotting.CourseFigure)
        png = fig._repr_png_()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
        assert _png_dpi(png) >= 150  # the resolution recorded in the PNG (its pHYs chunk)
        assert b"Description" in png and "Figure of" in fig.description()  # the site's alt text


def test_a_figure_describes_its_titles_axes_and_legend_in_words():
    """The description (the site's alt text) names the suptitle, each panel's title, axes and legend, with
    mathtext as words."""
    fig = plotting.new_figure()
    fig.suptitle("Losses")
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], label="$\\beta_1$ = 0.9")
    left.legend()
    left.set(title="Adam", xlabel="step", ylabel="loss")
    right.set(title="SGD", xlabel="step")
    assert fig.description() == ("Losses. Figure of 2 panels: Adam: loss against step (beta_1 = 0.9); SGD: step.")


def _png_dpi(png: bytes) -> float:
    """Dots per inch recorded in a PNG's pHYs chunk (pixels per metre, unit 1)."""
    at = png.index(b"pHYs")
    per_metre_x, unit = int.from_bytes(png[at + 4:at + 8], "big"), png[at + 12]
    assert unit == 1
    return per_metre_x * 0.0254


def test_ipython_formats_a_course_figure_as_png():
    """IPython's display formatter (what Jupyter, Colab and myst-nb call) produces image/png for it."""
    from IPython.core.formatters import DisplayFormatter

    fig = plotting.new_figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"].startswith(PNG_SIGNATURE)


def test_kde_line_integrates_to_the_histogram_area():
    """In count mode, the KDE curve has the area of the histogram (n * bin width * bins)."""
    values = {"Layer 0": np.random.default_rng(1).normal(size=(100, 50))}
    ax = plotting.plot_dists(values).axes[0]
    x, y = ax.lines[0].get_data()
    hist_area = sum(p.get_height() * p.get_width() for p in ax.patches)
    assert np.trapezoid(y, x) == pytest.approx(hist_area, rel=0.1)


def test_distribution_plots_use_given_axes(fashion_batch):
    """Weight, gradient and activation plots draw into the axes they are given."""
    net = BaseNetwork("relu")
    fig = Figure()
    axes = fig.subplots(1, 5)
    assert plotting.plot_weight_distribution(net, axes=axes) is fig
    assert all(len(ax.patches) == 50 for ax in axes)
    images, labels = fashion_batch
    assert isinstance(plotting.plot_gradient_distribution(net, images[:64], labels[:64], color="C1"), Figure)
    act_fig = plotting.plot_activation_distribution(net, images[:64])
    assert act_fig._suptitle.get_text() == "Activation distribution"


def test_surface_2d_and_3d():
    """2D heat map and 3D surface of a loss; the grid is evaluated with the loss itself."""
    ax2 = plotting.plot_surface(pathological_curve_loss)
    assert isinstance(ax2, Axes) and len(ax2.images) == 1
    ax3 = plotting.plot_surface(steep_optima_loss, x_range=(-2, 2), y_range=(-2, 2), plot_3d=True, title="Steep optima")
    assert ax3.name == "3d" and ax3.get_title() == "Steep optima"
    w1, w2, z = plotting.surface_grid(pathological_curve_loss, (-5, 5), (-5, 5), resolution=11)
    assert z[5, 5] == pytest.approx(0.5)  # the grid centre (0, 0)


def test_trajectories_drawn_over_the_surface():
    """Each optimizer's path is one labelled line; later paths lie on top, thinner, with their own marker."""
    paths = {
        "SGD": train_curve(lambda p: torch.optim.SGD(p, lr=1.0), num_updates=20),
        "Adam": train_curve(lambda p: torch.optim.Adam(p, lr=0.5), num_updates=20),
        "Adam again": train_curve(lambda p: torch.optim.Adam(p, lr=0.5), num_updates=20),
    }
    fig = Figure()
    ax = fig.add_subplot()
    assert plotting.plot_trajectories(paths, pathological_curve_loss, ax=ax) is ax
    assert [line.get_label() for line in ax.lines] == ["SGD", "Adam", "Adam again"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), paths["SGD"][:, 0])
    zorders = [line.get_zorder() for line in ax.lines]
    widths = [line.get_linewidth() for line in ax.lines]
    assert zorders == sorted(zorders) and len(set(zorders)) == 3, "a later path must be drawn over an earlier one"
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 3, "a path on top must not hide one below"
    assert len({line.get_marker() for line in ax.lines}) == 3


def test_variances_by_depth_is_log_scale_with_every_run_in_the_legend():
    """One line per run and panel (outputs, gradients), log y axis, the legend naming every run."""
    measured = {
        "std 0.01": {"activations": {"Layer 0": 0.08, "Layer 2": 4e-3, "Layer 4": 1e-4}},
        "Kaiming": {"gradients": {"Layer 0": 3e-5, "Layer 2": 5e-5, "Layer 4": 7e-5},
                    "activations": {"Layer 0": 1.0, "Layer 2": 1.0, "Layer 4": 0.9}},
    }
    fig = plotting.plot_variances_by_depth(measured)
    outputs, gradients = fig.axes[:2]
    assert outputs.get_yscale() == gradients.get_yscale() == "log"
    assert [line.get_label() for line in outputs.lines] == ["std 0.01", "Kaiming"]
    assert [line.get_label() for line in gradients.lines] == ["Kaiming"]
    assert [t.get_text() for t in gradients.get_legend().get_texts()] == ["std 0.01", "Kaiming"]
    np.testing.assert_allclose(outputs.lines[0].get_ydata(), [0.08, 4e-3, 1e-4])


def test_training_curves_label_test_accuracy():
    """Validation and training curves per run, the legend showing the test accuracy."""
    results = {"SGD": {"val_scores": [0.8, 0.85], "train_scores": [0.82, 0.9], "test_acc": 0.8909}}
    ax = plotting.plot_training_curves(results)
    assert len(ax.lines) == 2
    assert "89.09%" in ax.get_legend().get_texts()[0].get_text()


def test_grader_kernels_draw_no_figure(monkeypatch, fashion_batch):
    """With COURSE_NO_FIGURES=1 (the grader's kernels) a plot returns at once a figure that shows as one line of
    text and renders no PNG; without it, the same call draws panels and displays as a PNG."""
    model = BaseNetwork("relu")
    images, labels = fashion_batch
    drawn = plotting.plot_gradient_distribution(model, images[:64], labels[:64])
    assert len(drawn.axes) == 5 and drawn._repr_png_().startswith(b"\x89PNG")  # one panel per linear layer
    monkeypatch.setenv("COURSE_NO_FIGURES", "1")
    placeholder = plotting.plot_gradient_distribution(model, images[:64], labels[:64])
    assert placeholder.axes == [] and placeholder._repr_png_() is None
    from IPython.lib.pretty import pretty

    assert pretty(placeholder) == "[figure not drawn while grading]"
    axes = plotting.new_figure().subplots(1, 5)
    assert plotting.plot_gradient_distribution(model, images[:64], labels[:64], axes=axes).axes  # given axes: drawn


def test_training_curves_over_seeds_draw_the_mean_and_a_band():
    """A list of results per name: the mean curve, a band of ± one std, the legend quoting mean ± std."""
    seeds = [{"val_scores": [0.80, 0.84], "train_scores": [0.81, 0.9], "test_acc": 0.83},
             {"val_scores": [0.82, 0.86], "train_scores": [0.83, 0.9], "test_acc": 0.85}]
    ax = plotting.plot_training_curves({"Adam": seeds})
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [81.0, 85.0])
    assert len(ax.collections) == 2  # validation and training bands
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(81.0 - np.std([80, 82], ddof=1))
    assert "84.0 ± 1.4%" in ax.get_legend().get_texts()[0].get_text()
    assert "mean ± std over seeds" in ax.get_title()
    plt.close(ax.figure)


def test_accuracy_by_depth_draws_mean_lines_with_bands_per_variant():
    """One panel per activation; per variant the mean over seeds at each depth and a band around it."""
    accuracy = {"relu": {"kaiming": {10: [0.82, 0.80, 0.81], 50: [0.3, 0.2, 0.25]},
                         "xavier": {10: [0.8, 0.8, 0.8], 50: [0.1, 0.1, 0.1]}},
                "tanh": {"kaiming": {10: 0.83, 50: 0.19}, "xavier": {10: 0.82, 50: 0.76}}}
    fig = plotting.plot_accuracy_by_depth(accuracy)
    relu, tanh = fig.axes[:2]
    kaiming, xavier = relu.lines[:2]  # seaborn draws the data lines first, then empty legend handles
    np.testing.assert_allclose(kaiming.get_ydata(), [81.0, 25.0])
    np.testing.assert_allclose(xavier.get_ydata(), [80.0, 10.0])
    assert len(relu.collections) >= 1  # the bands
    assert [t.get_text() for t in tanh.get_legend().get_texts()] == ["kaiming", "xavier"]
    assert tanh.get_legend().get_title().get_text() == "mean ± std over seeds"
    assert relu.get_legend() is None
    plt.close(fig)


def test_step_curves_over_seeds_share_a_colour_and_one_label():
    """Several curves for one name are drawn in one colour and labelled once."""
    ax = plotting.plot_step_curves({"lr 0.16": [[2.3, 1.0], [2.3, float("nan")]], "lr 0.01": [2.3, 2.0]})
    assert len(ax.lines) == 3
    assert ax.lines[0].get_color() == ax.lines[1].get_color() != ax.lines[2].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lr 0.16", "lr 0.01"]
    plt.close(ax.figure)
