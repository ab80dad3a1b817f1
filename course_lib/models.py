"""The course's fully connected network and its activation functions, chosen by name."""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

# Activation modules by name; each call builds a fresh module.
ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


# The same functions applied in place, used by BaseNetwork.forward on the fresh output of a Linear layer.
IN_PLACE: Dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    nn.Identity: lambda m, x: x,
    nn.Tanh: lambda m, x: x.tanh_(),
    nn.ReLU: lambda m, x: x.relu_(),
    nn.LeakyReLU: lambda m, x: F.leaky_relu_(x, m.negative_slope),
    nn.Sigmoid: lambda m, x: x.sigmoid_(),
}


def make_activation(name: str) -> nn.Module:
    """Return a new activation module for ``name``; ValueError lists the known names."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


def activation_name(act_fn: nn.Module) -> str:
    """Return the registered name of an activation module (ValueError if it has none)."""
    for name, cls in ACTIVATIONS.items():
        if type(act_fn) is cls:
            return name
    raise ValueError(
        f"activation {type(act_fn).__name__} is not one of: {', '.join(sorted(ACTIVATIONS))}"
    )


class BaseNetwork(nn.Module):
    """An MLP: Linear -> act -> ... -> Linear, held in ``self.layers`` (an ``nn.Sequential``).

    Linear layers sit at even indices of ``self.layers`` (``layers.0.weight``, ``layers.2.weight``, ...)
    and ``self.config`` is the JSON-able description a checkpoint stores beside the weights.
    """

    def __init__(
        self,
        act_fn: Union[str, nn.Module],
        input_size: int = 784,
        num_classes: int = 10,
        hidden_sizes: Sequence[int] = (512, 256, 256, 128),
    ) -> None:
        super().__init__()
        act_name = act_fn if isinstance(act_fn, str) else activation_name(act_fn)
        make_activation(act_name)  # validate the name before building anything
        sizes = [input_size, *hidden_sizes]
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), make_activation(act_name)]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)
        self.config = {
            "act_fn": act_name,
            "input_size": int(input_size),
            "num_classes": int(num_classes),
            "hidden_sizes": [int(h) for h in hidden_sizes],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flatten each image to a vector and return the class logits."""
        x = x.reshape(x.shape[0], -1)
        if _has_hooks(self.layers):
            return self.layers(x)
        # Same values and gradients as self.layers(x), with each activation written over the
        # Linear output it reads (one tensor less per layer; Linear's backward does not need it).
        fresh = False  # whether x is a Linear output that nothing else holds
        for module in self.layers:
            if type(module) is nn.Linear:
                x, fresh = F.linear(x, module.weight, module.bias), True
            elif fresh and type(module) in IN_PLACE:
                x, fresh = IN_PLACE[type(module)](module, x), False
            else:
                x, fresh = module(x), False
        return x

    @classmethod
    def from_config(cls, config: dict) -> "BaseNetwork":
        """Build a network from a ``config`` dict as stored in ``self.config``."""
        return cls(
            act_fn=config["act_fn"],
            input_size=config["input_size"],
            num_classes=config["num_classes"],
            hidden_sizes=tuple(config["hidden_sizes"]),
        )

    def linear_layers(self) -> Dict[int, nn.Linear]:
        """Return the linear layers keyed by their index in ``self.layers``."""
        return {i: m for i, m in enumerate(self.layers) if isinstance(m, nn.Linear)}


def _has_hooks(sequential: nn.Sequential) -> bool:
    """Whether a hook could observe the modules one by one (then forward calls them as usual)."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    global_hooks = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                    "_global_backward_pre_hooks")
    return (any(getattr(m, h, None) for m in sequential for h in hooks)
            or any(getattr(nn.modules.module, h, None) for h in global_hooks))
