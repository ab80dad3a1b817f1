"""Optimizer explorer: SGD, momentum and Adam trajectories on the course's two loss surfaces.

``explorer_figure`` draws one fixed setting (the static site shows these); ``launch_explorer``
wraps it in ipywidgets sliders for a live kernel such as Colab. ipywidgets is imported only there.
The optimizers are PyTorch's own, set up to match the course's definitions: the course's momentum
m = (1 - beta) g + beta m, w = w - lr m equals ``torch.optim.SGD(lr=lr * (1 - beta), momentum=beta)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure

from .plotting import new_figure, plot_trajectories
from .surfaces import LossSurface, pathological_curve_loss, steep_optima_loss, train_curve

OPTIMIZER_NAMES = ("SGD", "SGD momentum", "Adam")


@dataclass(frozen=True)
class Surface:
    """A loss surface with its start point, plot window and the course's learning rates."""

    title: str
    loss: LossSurface
    init: Tuple[float, float]
    x_range: Tuple[float, float]
    y_range: Tuple[float, float]
    learning_rates: Dict[str, float]


SURFACES: Dict[str, Surface] = {
    "pathological": Surface(
        "Pathological curvature", pathological_curve_loss, (5.0, 5.0), (-7.0, 7.0), (-15.0, 6.0),
        {"SGD": 10.0, "SGD momentum": 10.0, "Adam": 1.0},
    ),
    "steep": Surface(
        "Steep optima", steep_optima_loss, (0.0, 0.0), (-2.0, 2.0), (-2.0, 2.0),
        {"SGD": 0.5, "SGD momentum": 1.0, "Adam": 0.2},
    ),
}


@dataclass(frozen=True)
class Settings:
    """Hyperparameters shared by both surfaces, plus each surface's learning rates."""

    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    steps: int = 100
    learning_rates: Dict[str, Dict[str, float]] = field(
        default_factory=lambda: {key: dict(s.learning_rates) for key, s in SURFACES.items()}
    )


def optimizer_factories(
    learning_rates: Dict[str, float], momentum: float, beta1: float, beta2: float
) -> Dict[str, Callable[[list], torch.optim.Optimizer]]:
    """PyTorch optimizers equivalent to the course's SGD, SGDMomentum and Adam, by name."""
    return {
        "SGD": lambda params: torch.optim.SGD(params, lr=learning_rates["SGD"]),
        "SGD momentum": lambda params: torch.optim.SGD(
            params, lr=learning_rates["SGD momentum"] * (1 - momentum), momentum=momentum
        ),
        "Adam": lambda params: torch.optim.Adam(params, lr=learning_rates["Adam"], betas=(beta1, beta2)),
    }


def surface_trajectories(surface_key: str, settings: Settings) -> Dict[str, np.ndarray]:
    """Run each optimizer from the surface's start point; return name -> [steps, 3] (w1, w2, loss)."""
    surface = SURFACES[surface_key]
    factories = optimizer_factories(
        settings.learning_rates[surface_key], settings.momentum, settings.beta1, settings.beta2
    )
    return {
        name: train_curve(factory, loss=surface.loss, num_updates=settings.steps, init=surface.init)
        for name, factory in factories.items()
    }


def explorer_figure(settings: Settings = Settings()) -> Figure:
    """Trajectories of the three optimizers on both surfaces, side by side, for one setting."""
    fig = new_figure((12, 4.6))
    axes = fig.subplots(1, len(SURFACES))
    for ax, (key, surface) in zip(axes, SURFACES.items()):
        paths = surface_trajectories(key, settings)
        rates = settings.learning_rates[key]
        title = f"{surface.title}\n" + ", ".join(f"{name} lr={rates[name]:g}" for name in OPTIMIZER_NAMES)
        plot_trajectories(paths, surface.loss, x_range=surface.x_range, y_range=surface.y_range,
                          title=title, ax=ax)
    fig.suptitle(
        f"momentum beta={settings.momentum:g}, Adam betas=({settings.beta1:g}, {settings.beta2:g}), "
        f"{settings.steps} steps", y=1.0
    )
    fig.subplots_adjust(wspace=0.25, top=0.82)
    return fig


def launch_explorer():
    """Sliders for learning rates, momentum, betas and steps that redraw ``explorer_figure`` (live kernels only)."""
    import ipywidgets as widgets
    from IPython.display import display

    defaults = Settings()
    log_slider = dict(min=-3, max=2, step=0.05, continuous_update=False, readout_format=".3g")
    rate_sliders = {
        key: {
            name: widgets.FloatLogSlider(value=defaults.learning_rates[key][name], description=f"{name} lr",
                                         style={"description_width": "110px"}, **log_slider)
            for name in OPTIMIZER_NAMES
        }
        for key in SURFACES
    }
    common = dict(continuous_update=False, style={"description_width": "110px"})
    momentum = widgets.FloatSlider(value=defaults.momentum, min=0.0, max=0.99, step=0.01,
                                   description="momentum beta", **common)
    beta1 = widgets.FloatSlider(value=defaults.beta1, min=0.0, max=0.99, step=0.01, description="Adam beta1", **common)
    beta2 = widgets.FloatSlider(value=defaults.beta2, min=0.9, max=0.9999, step=0.0001,
                                readout_format=".4f", description="Adam beta2", **common)
    steps = widgets.IntSlider(value=defaults.steps, min=20, max=300, step=10, description="steps", **common)
    output = widgets.Output()

    def redraw(_change=None) -> None:
        """Recompute the trajectories for the current slider values and show the new figure."""
        settings = replace(
            defaults, momentum=momentum.value, beta1=beta1.value, beta2=beta2.value, steps=steps.value,
            learning_rates={key: {name: s.value for name, s in sliders.items()}
                            for key, sliders in rate_sliders.items()},
        )
        with output:
            output.clear_output(wait=True)
            display(explorer_figure(settings))

    all_sliders = [momentum, beta1, beta2, steps] + [s for group in rate_sliders.values() for s in group.values()]
    for slider in all_sliders:
        slider.observe(redraw, names="value")
    tabs = widgets.Tab(children=[widgets.VBox(list(rate_sliders[key].values())) for key in SURFACES])
    for index, surface in enumerate(SURFACES.values()):
        tabs.set_title(index, f"{surface.title}: learning rates")
    controls = widgets.HBox([tabs, widgets.VBox([momentum, beta1, beta2, steps])])
    redraw()
    return widgets.VBox([controls, output])
