"""The fast training loop gives the same curves as a plain, obviously correct loop (same seed)."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.data import BatchLoader
from course_lib.models import BaseNetwork
from course_lib.optim import OptimizerTemplate
from course_lib.training import evaluate, train_epoch, train_model

SMALL = dict(input_size=784, num_classes=10, hidden_sizes=(64, 32))
EPOCHS, BATCH, SEED = 4, 64, 42  # 4 x 63 = 252 steps on the 4k slice


class Adam(OptimizerTemplate):
    """The exercises' Adam, as the solution notebook writes it (test-local copy)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.param_step = {p: 0 for p in self.params}
        self.param_momentum = {p: torch.zeros_like(p) for p in self.params}
        self.param_2nd_momentum = {p: torch.zeros_like(p) for p in self.params}

    def update_param(self, p):
        self.param_step[p] += 1
        t = self.param_step[p]
        m, v = self.param_momentum[p], self.param_2nd_momentum[p]
        m.mul_(self.beta1).add_(p.grad, alpha=1 - self.beta1)
        v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
        p.sub_(self.lr * (m / (1 - self.beta1**t)) / ((v / (1 - self.beta2**t)).sqrt() + self.eps))


OPTIMIZERS = {
    "torch_adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    "template_adam": lambda params: Adam(params, lr=1e-3),
}


def reference_training(model, optimizer, data):
    """The plain loop: shuffle, Sequential forward, cross-entropy, backward, step; validate per epoch."""
    generator = torch.Generator().manual_seed(SEED)  # train_model's batch order
    n = len(data.train_labels)
    losses, val_acc, val_loss = [], [], []
    for _ in range(EPOCHS):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = F.cross_entropy(model.layers(data.train_images[idx]), data.train_labels[idx])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            logits = torch.cat([model.layers(data.val_images[s:s + 256]) for s in range(0, len(data.val_labels), 256)])
        val_acc.append((logits.argmax(dim=1) == data.val_labels).float().mean().item())
        val_loss.append(F.cross_entropy(logits, data.val_labels).item())
    return losses, val_acc, val_loss


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_train_model_matches_the_plain_loop(name, small_fashion, tmp_path):
    """Per-step training losses, per-epoch validation accuracy and the final weights agree with the plain loop."""
    torch.manual_seed(0)
    ref_model = BaseNetwork("relu", **SMALL)
    torch.manual_seed(0)
    model = BaseNetwork("relu", **SMALL)
    ref_losses, ref_acc, _ = reference_training(ref_model, OPTIMIZERS[name](ref_model.parameters()), small_fashion)

    results = train_model(model, name, OPTIMIZERS[name], small_fashion, tmp_path, max_epochs=EPOCHS,
                          batch_size=BATCH, seed=SEED, progress=False)
    assert len(results["train_losses"]) == len(ref_losses) == EPOCHS * 63
    torch.testing.assert_close(torch.tensor(results["train_losses"]), torch.tensor(ref_losses), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(results["val_scores"]), torch.tensor(ref_acc), rtol=0, atol=2e-3)
    assert ref_losses[-1] < ref_losses[0] and max(ref_acc) > 0.7  # the comparison is of a run that learns


def test_weights_and_validation_loss_match_the_plain_loop_each_epoch(small_fashion):
    """With the template Adam, train_epoch + evaluate track the plain loop: validation loss, accuracy, weights."""
    torch.manual_seed(0)
    ref_model = BaseNetwork("relu", **SMALL)
    torch.manual_seed(0)
    model = BaseNetwork("relu", **SMALL)
    _, ref_acc, ref_val_loss = reference_training(ref_model, Adam(ref_model.parameters(), lr=1e-3), small_fashion)

    optimizer = Adam(model.parameters(), lr=1e-3)
    loader = BatchLoader(small_fashion.train_images, small_fashion.train_labels, batch_size=BATCH, shuffle=True,
                         generator=torch.Generator().manual_seed(SEED))
    val_loss, val_acc = [], []
    for _ in range(EPOCHS):
        train_epoch(model, optimizer, loader)
        val_acc.append(evaluate(model, small_fashion.val_images, small_fashion.val_labels))
        with torch.no_grad():
            val_loss.append(F.cross_entropy(model(small_fashion.val_images), small_fashion.val_labels).item())
    torch.testing.assert_close(torch.tensor(val_loss), torch.tensor(ref_val_loss), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor(val_acc), torch.tensor(ref_acc), rtol=0, atol=2e-3)
    for a, b in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["identity", "tanh", "relu", "leaky_relu", "sigmoid"])
def test_forward_matches_the_sequential_with_and_without_hooks(act):
    """BaseNetwork's in-place forward gives the Sequential's logits and gradients, leaves its input alone,
    and calls the modules one by one (so hooks see every activation) once a hook is registered."""
    torch.manual_seed(0)
    net = BaseNetwork(act, input_size=12, num_classes=3, hidden_sizes=(8, 5))
    x = torch.randn(6, 12)
    x_before = x.clone()
    fast = net(x)
    fast.square().sum().backward()
    fast_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    plain = net.layers(x)
    plain.square().sum().backward()
    assert torch.equal(x, x_before) and torch.equal(fast, plain)
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), fast_grads))
    seen = []
    handle = net.layers[1].register_forward_hook(lambda module, inputs, output: seen.append(output.clone()))
    hooked = net(x)
    handle.remove()
    assert torch.equal(hooked, plain) and len(seen) == 1
    assert torch.equal(seen[0], net.layers[1](net.layers[0](x)))
