"""Plot helpers: Agg backend, they draw on given axes or a new figure, return it, and leave nothing open."""

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


def test_plot_dists_one_panel_per_layer_with_shapes_in_titles():
    """One histogram panel per key, titled with the layer's fan-in -> fan-out."""
    values = {"Layer 0": np.random.default_rng(0).normal(size=(8, 5)), "Layer 2": np.zeros((3, 8))}
    fig = plot = plotting.plot_dists(values, xlabel="w")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_title() == r"Layer 0 (5 $\to$ 8)"
    assert len(plot.axes[0].patches) == 50  # 50 bins
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[1].lines) == 0  # KDE only where there is spread


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
    """Each optimizer's path is one labelled line on the given axes."""
    paths = {
        "SGD": train_curve(lambda p: torch.optim.SGD(p, lr=1.0), num_updates=20),
        "Adam": train_curve(lambda p: torch.optim.Adam(p, lr=0.5), num_updates=20),
    }
    fig = Figure()
    ax = fig.add_subplot()
    assert plotting.plot_trajectories(paths, pathological_curve_loss, ax=ax) is ax
    assert [line.get_label() for line in ax.lines] == ["SGD", "Adam"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), paths["SGD"][:, 0])


def test_training_curves_label_test_accuracy():
    """Validation and training curves per run, the legend showing the test accuracy."""
    results = {"SGD": {"val_scores": [0.8, 0.85], "train_scores": [0.82, 0.9], "test_acc": 0.8909}}
    ax = plotting.plot_training_curves(results)
    assert len(ax.lines) == 2
    assert "89.09%" in ax.get_legend().get_texts()[0].get_text()
