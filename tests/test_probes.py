"""Per-layer probes on the real FashionMNIST, checked against the figures of Lippe (2022)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.models import BaseNetwork
from course_lib.probes import format_variances, layer_activations, layer_gradients, layer_weights, variances

FAN_INS = {"Layer 0": 784, "Layer 2": 512, "Layer 4": 256, "Layer 6": 256, "Layer 8": 128}


def normal_init(model, std_of_fan_in):
    """Weights N(0, std_of_fan_in(fan_in)^2), biases 0 (test-local: the exercises live in solutions/)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0, std_of_fan_in(p.shape[1]))


def test_keys_and_shapes(fashion_batch):
    """Keys are "Layer i" at the linear layers' indices; arrays keep the layer's shape."""
    net = BaseNetwork("relu")
    images, labels = fashion_batch
    weights, grads, acts = layer_weights(net), layer_gradients(net, images, labels), layer_activations(net, images)
    assert list(weights) == list(grads) == list(acts) == list(FAN_INS)
    assert weights["Layer 0"].shape == grads["Layer 0"].shape == (512, 784)
    assert acts["Layer 8"].shape == (1024, 10)


def test_gradients_match_autograd_and_leave_model_untouched(fashion_batch):
    """Gradients equal a hand-run backward pass; existing .grad and train mode are restored."""
    net = BaseNetwork("tanh")
    images, labels = fashion_batch
    net.train()
    grads = layer_gradients(net, images, labels)
    assert net.training and all(p.grad is None for p in net.parameters())
    F.cross_entropy(net(images), labels).backward()
    np.testing.assert_allclose(grads["Layer 4"], net.layers[4].weight.grad.numpy(), rtol=1e-5, atol=1e-8)
    before = net.layers[0].weight.grad.clone()
    layer_gradients(net, images, labels)
    assert torch.equal(net.layers[0].weight.grad, before)


def test_constant_variance_std_001_vanishes_by_fan_in_times_std_squared(fashion_batch):
    """Identity net, std 0.01: each layer's activation variance shrinks by fan_in*1e-4 (about 20x after layer 0,
    as in the seed)."""
    net = BaseNetwork("identity")
    normal_init(net, lambda fan_in: 0.01)
    var = variances(layer_activations(net, fashion_batch[0]))
    assert var["Layer 0"] == pytest.approx(0.082, rel=0.15)  # seed: 0.0822
    keys = list(FAN_INS)
    for prev, key in zip(keys, keys[1:]):
        expected = 1 / (FAN_INS[key] * 0.01**2)
        ratio = var[prev] / var[key]
        # The 10-unit output layer is a small, correlated sample: allow a factor of 2 there.
        if key == "Layer 8":
            assert expected / 2 < ratio < expected * 2, key
        else:
            assert ratio == pytest.approx(expected, rel=0.35), key
    assert var["Layer 0"] / var["Layer 2"] == pytest.approx(20, rel=0.25)  # seed: 0.0822 -> 0.00415
    assert var["Layer 8"] < 1e-7  # seed: 3.75e-8


def test_constant_variance_std_01_explodes(fashion_batch):
    """Identity net, std 0.1: variances grow layer by layer (seed: 8.2, 41.5, 104.7, 283.3, 375.5)."""
    net = BaseNetwork("identity")
    normal_init(net, lambda fan_in: 0.1)
    var = list(variances(layer_activations(net, fashion_batch[0])).values())
    assert var[0] == pytest.approx(8.2, rel=0.15)
    assert all(b > 1.5 * a for a, b in zip(var[:4], var[1:4]))  # expected growth x5.1, x2.6, x2.6
    assert var[-1] > 100  # the 10-unit output layer: noisy, but far above the input's variance


def test_equal_variance_keeps_activation_variance_near_one(fashion_batch):
    """Identity net, Var(w) = 1/fan_in: every layer's activation variance stays near 1 (seed: 1.05 ... 1.12)."""
    net = BaseNetwork("identity")
    normal_init(net, lambda fan_in: 1 / math.sqrt(fan_in))
    for key, var in variances(layer_activations(net, fashion_batch[0])).items():
        assert 0.7 < var < 1.4, (key, var)


def test_constant_init_gives_hidden_layers_identical_gradients(fashion_batch):
    """All weights 0.005: within layers 2, 4 and 6 every weight gets the same gradient; layer 0 and 8 do not."""
    net = BaseNetwork("identity")
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.005)
    grads = layer_gradients(net, *fashion_batch)
    for key in ("Layer 2", "Layer 4", "Layer 6"):
        g = grads[key]
        assert np.ptp(g) <= 1e-6 * max(np.abs(g).max(), 1e-12), key
    for key in ("Layer 0", "Layer 8"):
        assert np.ptp(grads[key]) > 1e-3 * np.abs(grads[key]).max(), key


def test_variances_and_formatting():
    """variances() is np.var over all entries; format_variances prints the reference beside it."""
    values = {"Layer 0": np.array([[1.0, 3.0]]), "Layer 2": np.array([2.0, 2.0])}
    assert variances(values) == {"Layer 0": 1.0, "Layer 2": 0.0}
    text = format_variances(values, reference={"Layer 0": 0.0822})
    assert text.splitlines()[0] == "Layer 0 - Variance: 1   (Lippe (2022): 0.0822)"
    assert text.splitlines()[1] == "Layer 2 - Variance: 0"
