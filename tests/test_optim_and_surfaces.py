"""OptimizerTemplate mechanics (PyTorch as the reference) and the two loss surfaces."""

import math

import numpy as np
import pytest
import torch

from course_lib.optim import OptimizerTemplate
from course_lib.surfaces import bivar_gaussian, pathological_curve_loss, steep_optima_loss, train_curve


class PlainSGD(OptimizerTemplate):
    """w <- w - lr * g, the smallest subclass of the template (test-local)."""

    def update_param(self, p):
        p.add_(p.grad, alpha=-self.lr)


def test_template_subclass_matches_torch_sgd_over_many_steps():
    """A subclass driven by step()/zero_grad() follows torch.optim.SGD step for step on several tensors."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin.load_state_dict(model.state_dict())
    ours, ref = PlainSGD(model.parameters(), lr=0.05), torch.optim.SGD(twin.parameters(), lr=0.05)
    for _ in range(25):
        x = torch.randn(16, 5)
        for net, opt in ((model, ours), (twin, ref)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


def test_step_skips_parameters_without_gradient():
    """A parameter whose .grad is None is not passed to update_param."""
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    seen = []

    class Recorder(OptimizerTemplate):
        def update_param(self, p):
            seen.append(p)

    opt = Recorder([used, unused], lr=1.0)
    used.sum().backward()
    opt.step()
    assert len(seen) == 1 and seen[0] is used


def test_zero_grad_zeroes_and_detaches():
    """zero_grad leaves zero gradients that require no grad."""
    p = torch.nn.Parameter(torch.randn(4))
    p.grad = 2 * torch.randn(4, requires_grad=True)  # a gradient inside a graph, as 2nd-order code leaves it
    assert p.grad.requires_grad
    opt = PlainSGD([p], lr=0.1)
    opt.zero_grad()
    assert torch.equal(p.grad, torch.zeros(4)) and not p.grad.requires_grad


def test_step_runs_without_autograd_and_base_class_is_abstract():
    """update_param runs under no_grad (in-place on leaves is allowed); the base class raises."""
    p = torch.nn.Parameter(torch.ones(2))
    p.sum().backward()
    PlainSGD([p], lr=1.0).step()
    assert torch.equal(p.detach(), torch.zeros(2))
    with pytest.raises(NotImplementedError):
        OptimizerTemplate([p], lr=1.0).step()


def test_pathological_curve_values():
    """tanh(w1)^2 + 0.01|w1| + sigmoid(w2) at a few points."""
    assert pathological_curve_loss(torch.tensor(0.0), torch.tensor(0.0)).item() == pytest.approx(0.5)
    w1, w2 = torch.tensor(2.0), torch.tensor(-1.0)
    expected = math.tanh(2) ** 2 + 0.02 + 1 / (1 + math.exp(1))
    assert pathological_curve_loss(w1, w2).item() == pytest.approx(expected, rel=1e-6)


def test_steep_optima_has_three_wells_of_depth_one_over_2pi_sigma_squared():
    """Each Gaussian well bottoms out near -1/(2*pi*0.04) = -3.98 and the plane far away is flat."""
    for w1, w2 in ((1.0, -0.5), (-1.0, 0.5), (-0.5, -0.8)):
        depth = -1 / (2 * math.pi * 0.04)
        assert steep_optima_loss(torch.tensor(w1), torch.tensor(w2)).item() == pytest.approx(depth, rel=0.02)
    assert abs(steep_optima_loss(torch.tensor(0.0), torch.tensor(0.0)).item()) < 1e-3
    assert bivar_gaussian(torch.tensor(0.0), torch.tensor(0.0)).item() == pytest.approx(1 / (2 * math.pi))


def test_train_curve_records_points_before_each_step():
    """[num_updates, 3] rows of (w1, w2, loss); row 0 is the start; each row is one SGD step from the previous."""
    lr = 0.5
    points = train_curve(lambda params: torch.optim.SGD(params, lr=lr), pathological_curve_loss, num_updates=30,
                         init=(1.5, 2.0))
    assert points.shape == (30, 3)
    np.testing.assert_allclose(points[0, :2], [1.5, 2.0])
    w = torch.tensor(points[4, :2], requires_grad=True)
    loss = pathological_curve_loss(w[0], w[1])
    assert loss.item() == pytest.approx(points[4, 2], rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(points[5, :2], (w - lr * w.grad).detach().numpy(), rtol=1e-5)


def test_train_curve_default_start_and_length():
    """Defaults: 100 updates from (5, 5), and gradient descent lowers the loss."""
    points = train_curve(lambda params: torch.optim.SGD(params, lr=1.0))
    assert points.shape == (100, 3) and tuple(points[0, :2]) == (5.0, 5.0)
    assert points[-1, 2] < points[0, 2]
