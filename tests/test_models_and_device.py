"""BaseNetwork, activations by name, device choice and seeding."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.device import seed_everything, try_gpu
from course_lib.models import ACTIVATIONS, BaseNetwork, activation_name, make_activation


def test_parameter_names_and_shapes_follow_the_seed():
    """Linear layers sit at even indices of `layers`: layers.0.weight is 512x784, layers.8.weight 10x128."""
    net = BaseNetwork("relu")
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {
        "layers.0.weight": (512, 784), "layers.0.bias": (512,),
        "layers.2.weight": (256, 512), "layers.2.bias": (256,),
        "layers.4.weight": (256, 256), "layers.4.bias": (256,),
        "layers.6.weight": (128, 256), "layers.6.bias": (128,),
        "layers.8.weight": (10, 128), "layers.8.bias": (10,),
    }
    assert isinstance(net.layers, nn.Sequential)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_by_name_is_used_between_linear_layers(name):
    """Each named activation appears after every hidden linear layer and matches torch's function."""
    net = BaseNetwork(name, input_size=6, num_classes=3, hidden_sizes=(5, 4))
    acts = [m for m in net.layers if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(activation_name(a) == name for a in acts)
    x = torch.linspace(-3, 3, 7)
    reference = {"identity": x, "tanh": torch.tanh(x), "relu": torch.relu(x),
                 "leaky_relu": torch.nn.functional.leaky_relu(x, 0.01), "sigmoid": torch.sigmoid(x)}[name]
    assert torch.allclose(acts[0](x), reference)


def test_forward_flattens_images_and_returns_logits():
    """A batch of 28x28 images gives [batch, num_classes] logits."""
    net = BaseNetwork("tanh")
    assert net(torch.randn(7, 1, 28, 28)).shape == (7, 10)


def test_module_instance_is_accepted_and_recorded_by_name():
    """An nn.ReLU() instance works like "relu" and the config stores the name."""
    assert BaseNetwork(nn.ReLU()).config["act_fn"] == "relu"


def test_unknown_activation_lists_known_ones():
    """An unknown name is a ValueError that lists every known activation."""
    with pytest.raises(ValueError) as err:
        BaseNetwork("swish")
    for name in ACTIVATIONS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="known"):
        make_activation("gelu")


def test_config_round_trip_rebuilds_the_same_architecture():
    """from_config(config) builds a network with the same parameter shapes."""
    net = BaseNetwork("leaky_relu", input_size=20, num_classes=4, hidden_sizes=(16, 8))
    clone = BaseNetwork.from_config(net.config)
    assert [p.shape for p in clone.parameters()] == [p.shape for p in net.parameters()]
    assert clone.config == net.config


def test_try_gpu_prefers_cuda_and_falls_back_to_cpu():
    """CUDA when available, else MPS when available, else CPU."""
    device = try_gpu()
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device == torch.device("cpu")


def test_seed_everything_makes_all_three_generators_repeat():
    """After the same seed, Python, NumPy and torch draw the same numbers."""
    seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_importing_course_lib_changes_no_global_state():
    """Importing every module leaves the torch RNG and matplotlib rcParams untouched."""
    import importlib
    import subprocess
    import sys

    code = (
        "import torch, matplotlib; torch.manual_seed(5); rc = dict(matplotlib.rcParams); a = torch.rand(1)\n"
        "torch.manual_seed(5)\n"
        "import course_lib.data, course_lib.models, course_lib.plotting, course_lib.training, course_lib.surfaces\n"
        "import course_lib.probes, course_lib.optim, course_lib.device, course_lib.checkpoints\n"
        "assert torch.equal(torch.rand(1), a), 'an import consumed or reseeded the RNG'\n"
        "assert dict(matplotlib.rcParams) == rc, 'an import changed rcParams'\n"
    )
    assert importlib.util.find_spec("course_lib")
    subprocess.run([sys.executable, "-c", code], check=True)
