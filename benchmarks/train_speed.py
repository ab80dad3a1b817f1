"""Seconds per FashionMNIST epoch: course_lib's training against the seed tutorial's design and
against the machine's GEMM floor. Not a test: it prints a table, and as its last line one JSON object.

    python benchmarks/train_speed.py              # full: 10 timed rounds (about 4 min), 2 seed epochs
    python benchmarks/train_speed.py --quick      # seconds-long smoke run (CI)
    python benchmarks/train_speed.py --compile    # also torch.compile: its one-off compile time and s/epoch

An epoch is one pass over the 50k training images in batches of 256 plus the validation pass.
- seed: torchvision dataset with a per-image ToTensor+Normalize, DataLoader(batch 256, shuffle,
  drop_last, pin_memory) for training and batch 1024 for validation, the seed's out-of-place Adam.
- torch_optim: course_lib (tensors on the device, BatchLoader, train_epoch/evaluate), torch.optim.Adam
  (fused=True: one kernel for all parameters).
- template_adam, template_sgd, template_sgd_momentum: the same loop with the exercises' OptimizerTemplate
  subclasses, taken from the solution cells of solutions/optimization/optimization.ipynb as students write them.
- floor: only the matrix products the epoch must do (torch.mm at the layer shapes and batch sizes of
  the epoch: forward, the weight gradients, the input gradients of every layer but the first, and the
  validation forward at evaluate's batch size).
- lower bounds (information): what any loop must add to the floor, each timed like a design.
  floor_data: the floor plus, per batch, the gather of the shuffled batch from the training tensors.
  floor_data_torch_adam / floor_data_template_adam: that plus one step of torch's fused Adam / the
  exercises' Adam (on parameters of the network's shapes). No loss, activation, bias or autograd:
  nothing a real loop can skip, so a target below these ratios cannot be met on the machine that
  measured them. manual_step: a hand-written training step with no autograd and no optimizer (gather,
  addmm and ReLU forward, cross-entropy, the backward from the same aten ops autograd calls; its
  gradients are checked against autograd's before timing). ``no_autograd_bound``: per round,
  floor_data_<optimizer> + manual_step - floor_data, the ratio a loop would reach if autograd's
  bookkeeping cost nothing.

The course_lib designs and the floor run interleaved, one epoch of each per round (the first round is
a warm-up), so a noisy machine slows them alike; "vs floor" is the median over rounds of each round's
ratio. ``retrain_estimate_s`` is the optimization notebook's retrain (SGD, SGDMomentum and Adam, 40
epochs each) from the measured seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, random_split
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_lib.data import (  # noqa: E402
    TRAIN_MEAN,
    TRAIN_STD,
    BatchLoader,
    FashionMNISTSplits,
    load_fashion_mnist,
    prepare_fashion_mnist,
)
from course_lib.device import seed_everything, try_gpu  # noqa: E402
from course_lib.models import BaseNetwork  # noqa: E402
from course_lib.optim import OptimizerTemplate  # noqa: E402
from course_lib.training import evaluate, train_epoch  # noqa: E402

HIDDEN = (512, 256, 256, 128)
LAYER_SIZES = [784, *HIDDEN, 10]  # the network's input, hidden and output widths
BATCH, EVAL_BATCH = 256, 10_000  # train_model's batch size and evaluate's default
RETRAIN_EPOCHS = 40
TARGETS = {"torch_optim": 1.15, "template_adam": 1.5}  # at most this many times the floor
LOWER_BOUNDS = ("floor_data", "floor_data_torch_adam", "floor_data_template_adam", "manual_step")
BOUND_OF = {"torch_optim": "floor_data_torch_adam", "template_adam": "floor_data_template_adam"}


class SeedAdam(OptimizerTemplate):
    """The seed's hand-written Adam (out of place, bias-corrected, eps after the square root)."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.param_step = {p: 0 for p in self.params}
        self.param_momentum = {p: torch.zeros_like(p.data) for p in self.params}
        self.param_2nd_momentum = {p: torch.zeros_like(p.data) for p in self.params}

    def update_param(self, p):
        self.param_step[p] += 1
        self.param_momentum[p] = (1 - self.beta1) * p.grad + self.beta1 * self.param_momentum[p]
        self.param_2nd_momentum[p] = (1 - self.beta2) * (p.grad) ** 2 + self.beta2 * self.param_2nd_momentum[p]
        bias_correction_1 = 1 - self.beta1 ** self.param_step[p]
        bias_correction_2 = 1 - self.beta2 ** self.param_step[p]
        p_2nd_mom = self.param_2nd_momentum[p] / bias_correction_2
        p_mom = self.param_momentum[p] / bias_correction_1
        p_lr = self.lr / (torch.sqrt(p_2nd_mom) + self.eps)
        p.add_(-p_lr * p_mom)


def exercise_optimizers() -> Dict[str, Callable]:
    """The exercises' SGD, SGDMomentum and Adam classes, from the solution notebook's graded cells."""
    from grading.authoring.solutions import solution_namespace

    namespace = solution_namespace("optimization")
    return {name: namespace[name] for name in ("SGD", "SGDMomentum", "Adam")}


def torch_adam(params) -> torch.optim.Adam:
    """torch's Adam, fused into one kernel where this torch supports it."""
    try:
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=1e-3)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time is real."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def seed_design_epochs(epochs: int, limit: int | None, device: torch.device) -> list[float]:
    """Seconds per epoch of the seed's DataLoader design (train + validation)."""
    root = prepare_fashion_mnist().parent.parent
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((TRAIN_MEAN,), (TRAIN_STD,))])
    full = torchvision.datasets.FashionMNIST(root=str(root), train=True, transform=transform, download=False)
    train_set, val_set = random_split(full, [50_000, 10_000], generator=torch.Generator().manual_seed(42))
    if limit:
        train_set = torch.utils.data.Subset(train_set, range(limit))
        val_set = torch.utils.data.Subset(val_set, range(limit // 5))
    pin = device.type == "cuda"
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(val_set, batch_size=1024, shuffle=False, drop_last=False)
    model = BaseNetwork("relu", hidden_sizes=HIDDEN).to(device)
    optimizer = SeedAdam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for imgs, labels in train_loader:
            imgs, labels = imgs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(imgs), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for imgs, _labels in val_loader:
                model(imgs.to(device)).argmax(dim=-1)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def training_batches(data: FashionMNISTSplits) -> BatchLoader:
    """The shuffled training batches every design iterates (same seed, so the same batches)."""
    return BatchLoader(data.train_images, data.train_labels, batch_size=BATCH, shuffle=True,
                       generator=torch.Generator().manual_seed(0))


def course_lib_epoch(data: FashionMNISTSplits, optimizer_factory, compile_model: bool = False) -> Callable[[], None]:
    """One epoch of course_lib's loop (train_epoch + evaluate on the validation set), as a callable."""
    model = BaseNetwork("relu", hidden_sizes=HIDDEN).to(data.device)
    optimizer = optimizer_factory(model.parameters())
    loader = training_batches(data)
    run_model = torch.compile(model) if compile_model else model

    def epoch() -> None:
        train_epoch(run_model, optimizer, loader)
        evaluate(run_model, data.val_images, data.val_labels)

    return epoch


def gemm_floor(n_train: int, n_val: int, device: torch.device) -> Dict[str, Callable[..., None]]:
    """The matrix products alone: an epoch of them, one training batch, one validation pass."""
    sizes = LAYER_SIZES
    weights = [torch.randn(o, i, device=device) for i, o in zip(sizes[:-1], sizes[1:])]
    batches = [BATCH] * (n_train // BATCH) + ([n_train % BATCH] if n_train % BATCH else [])
    acts = {b: [torch.randn(b, s, device=device) for s in sizes] for b in set(batches)}
    val_in = [torch.randn(min(EVAL_BATCH, n_val - s), 784, device=device) for s in range(0, n_val, EVAL_BATCH)]

    def train_batch(b: int = BATCH) -> None:
        a = acts[b]
        for k, w in enumerate(weights):
            torch.mm(a[k], w.t())  # forward
            torch.mm(a[k + 1].t(), a[k])  # weight gradient [out, in]
            if k > 0:
                torch.mm(a[k + 1], w)  # input gradient

    def val_pass() -> None:
        for x in val_in:
            for w in weights:
                x = torch.mm(x, w.t())

    def epoch() -> None:
        for b in batches:
            train_batch(b)
        val_pass()

    return {"epoch": epoch, "train_batch": train_batch, "val_pass": val_pass}


def floor_with_data_and_optimizer(floor: Dict[str, Callable[..., None]], data: FashionMNISTSplits,
                                  optimizer_factory: Optional[Callable] = None) -> Callable[[], None]:
    """An epoch of the floor plus what no loop avoids: each shuffled batch's gather and one optimizer step."""
    sizes = LAYER_SIZES
    params = [torch.nn.Parameter(0.05 * torch.randn(o, i, device=data.device)) for i, o in zip(sizes[:-1], sizes[1:])]
    params += [torch.nn.Parameter(torch.zeros(o, device=data.device)) for o in sizes[1:]]
    for p in params:
        p.grad = 1e-3 * torch.randn_like(p)  # fixed gradients: the step's memory traffic, not its values, is timed
    step = optimizer_factory(params).step if optimizer_factory else lambda: None
    loader = training_batches(data)

    def epoch() -> None:
        for x, _labels in loader:
            floor["train_batch"](len(x))
            step()
        floor["val_pass"]()

    return epoch


def manual_step_epoch(data: FashionMNISTSplits) -> Callable[[], None]:
    """An epoch of a hand-written ReLU-network training step (no autograd, no optimizer) + validation.

    Before returning, one step's gradients are checked against autograd's on the same network and batch.
    """
    model = BaseNetwork("relu", hidden_sizes=HIDDEN).to(data.device)
    linears = list(model.linear_layers().values())
    weights = [m.weight.detach() for m in linears]
    biases = [m.bias.detach() for m in linears]
    loader = training_batches(data)

    def gradients(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """[dW, db] of every layer, last layer first, for the mean cross-entropy of batch (x, y)."""
        acts = [x]
        for k, (w, b) in enumerate(zip(weights, biases)):
            out = torch.addmm(b, acts[-1], w.t())
            acts.append(out.relu_() if k < len(weights) - 1 else out)
        logp = torch.log_softmax(acts[-1], dim=1)
        torch.ops.aten.nll_loss(logp, y)  # the loss value, as a loop computes it
        grad = torch.ops.aten.nll_loss_backward(torch.tensor(1.0, device=x.device), logp, y, None, 1, -100,
                                                torch.tensor(float(len(y)), device=x.device))
        grad = torch.ops.aten._log_softmax_backward_data(grad, logp, 1, logp.dtype)
        grads = []
        for k in range(len(weights) - 1, -1, -1):
            grads += [grad.t().mm(acts[k]), grad.sum(0)]
            if k > 0:
                grad = torch.ops.aten.threshold_backward(grad.mm(weights[k]), acts[k], 0)
        return grads

    x, y = data.train_images[:BATCH], data.train_labels[:BATCH]
    F.cross_entropy(model(x), y).backward()
    reference = [g for m in reversed(linears) for g in (m.weight.grad, m.bias.grad)]
    for mine, theirs in zip(gradients(x, y), reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)

    def epoch() -> None:
        for x, y in loader:
            gradients(x, y)
        evaluate(model, data.val_images, data.val_labels)

    return epoch


def best_chunk_floor(floor: Dict[str, Callable[..., None]], n_train: int, device: torch.device, chunks: int) -> float:
    """The floor as measured before: the best of ``chunks`` chunks of 20 training batches, scaled, + validation."""
    def best(fn: Callable[[], None], n: int, repeats: int) -> float:
        results = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            results.append((time.perf_counter() - start) / n)
        return min(results)

    return best(floor["train_batch"], 20, chunks) * n_train / BATCH + best(floor["val_pass"], 1, 3)


def interleaved(designs: Dict[str, Callable[[], None]], rounds: int, device: torch.device) -> Dict[str, List[float]]:
    """Seconds of one epoch of each design per round, designs interleaved (order rotated each round)."""
    names = list(designs)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            start = time.perf_counter()
            designs[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    """Run the measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run on 5k images")
    parser.add_argument("--seed-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10,
                        help="timed rounds, one epoch of each design per round (this machine needs ~10)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compile time separately)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    seed_everything(0)
    device = try_gpu()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    limit = 5_120 if args.quick else None
    seed_epochs, epochs = (1, 1) if args.quick else (args.seed_epochs, args.epochs)

    data = load_fashion_mnist(device=device)
    if limit:
        data = FashionMNISTSplits(data.train_images[:limit], data.train_labels[:limit], data.val_images[: limit // 5],
                                  data.val_labels[: limit // 5], data.test_images, data.test_labels)
    n_train, n_val = len(data.train_labels), len(data.val_labels)

    exercise = exercise_optimizers()
    floor = gemm_floor(n_train, n_val, device)
    designs = {
        "torch_optim": course_lib_epoch(data, torch_adam),
        "template_adam": course_lib_epoch(data, lambda p: exercise["Adam"](p, lr=1e-3)),
        "template_sgd": course_lib_epoch(data, lambda p: exercise["SGD"](p, lr=1e-1)),
        "template_sgd_momentum": course_lib_epoch(data, lambda p: exercise["SGDMomentum"](p, lr=1e-1, momentum=0.9)),
        "floor": floor["epoch"],
        "floor_data": floor_with_data_and_optimizer(floor, data),
        "floor_data_torch_adam": floor_with_data_and_optimizer(floor, data, torch_adam),
        "floor_data_template_adam": floor_with_data_and_optimizer(floor, data, lambda p: exercise["Adam"](p, lr=1e-3)),
        "manual_step": manual_step_epoch(data),
    }
    raw = interleaved(designs, epochs + 1, device)
    times = {name: ts[1:] if len(ts) > 1 else ts for name, ts in raw.items()}  # round 0 is a warm-up
    s_per_epoch = {name: statistics.median(ts) for name, ts in times.items()}
    vs_floor = {name: statistics.median(t / f for t, f in zip(ts, times["floor"])) for name, ts in times.items()}
    floor_s = s_per_epoch["floor"]
    no_autograd_bound = {target: statistics.median((b + m - d) / f for b, m, d, f in zip(
        times[bound], times["manual_step"], times["floor_data"], times["floor"])) for target, bound in BOUND_OF.items()}
    chunks = 2 if args.quick else 5
    old_floor_s = best_chunk_floor(floor, n_train, device, chunks=chunks)

    compiled = {}
    if args.compile:
        compiled_times = interleaved({"compiled": course_lib_epoch(data, torch_adam, compile_model=True)},
                                     epochs + 1, device)["compiled"]
        compiled_s = statistics.median(compiled_times[1:] or compiled_times)
        compiled = {"compiled_s_per_epoch": round(compiled_s, 4),
                    "compile_s": round(compiled_times[0] - compiled_s, 1),
                    "compile_pays_off_in_40_epochs": compiled_times[0] - compiled_s
                    < RETRAIN_EPOCHS * (s_per_epoch["torch_optim"] - compiled_s)}

    # The seed's design runs last: its DataLoader churn leaves the allocator slower for what follows.
    seed_times = seed_design_epochs(seed_epochs, limit, device)
    seed_s = statistics.median(seed_times[1:] if len(seed_times) > 1 else seed_times)
    retrain_s = (RETRAIN_EPOCHS * (50_000 / n_train)
                 * sum(s_per_epoch[k] for k in ("template_sgd", "template_sgd_momentum", "template_adam")))
    load_after = os.getloadavg()[0]

    where = f"{device}" + (f" ({gpu})" if gpu else f" ({platform.processor() or platform.machine()})")
    print(f"device {where}, torch {torch.__version__}, {torch.get_num_threads()} threads, {n_train} training "
          f"images per epoch{' (quick)' if args.quick else ''}, {len(times['floor'])} timed rounds, "
          f"load average {load_before:.1f} -> {load_after:.1f}")
    print(f"{'design':<44}{'s/epoch':>9}{'vs seed':>9}{'vs floor':>10}")
    rows = [("seed: DataLoader + per-image transform", seed_s, None),
            ("course_lib + torch.optim.Adam(fused)", s_per_epoch["torch_optim"], "torch_optim"),
            ("course_lib + exercises' template Adam", s_per_epoch["template_adam"], "template_adam"),
            ("course_lib + exercises' template SGD", s_per_epoch["template_sgd"], "template_sgd"),
            ("course_lib + exercises' template SGDMomentum", s_per_epoch["template_sgd_momentum"],
             "template_sgd_momentum"),
            ("GEMM floor (torch.mm only)", floor_s, "floor"),
            ("lower bound: floor + batch gather", s_per_epoch["floor_data"], "floor_data"),
            ("lower bound: floor + gather + fused Adam", s_per_epoch["floor_data_torch_adam"], "floor_data_torch_adam"),
            ("lower bound: floor + gather + template Adam", s_per_epoch["floor_data_template_adam"],
             "floor_data_template_adam"),
            ("hand-written step, no autograd, no optimizer", s_per_epoch["manual_step"], "manual_step")]
    for name, seconds, key in rows:
        ratio = vs_floor[key] if key else seconds / floor_s
        print(f"{name:<44}{seconds:>9.3f}{seed_s / seconds:>8.1f}x{ratio:>9.2f}x")
    for target, bound in BOUND_OF.items():
        reachable = "reachable" if vs_floor[bound] <= TARGETS[target] else "NOT reachable on this machine"
        print(f"target {target} <= {TARGETS[target]}x: measured {vs_floor[target]:.2f}x; lower bound "
              f"{vs_floor[bound]:.2f}x ({reachable}); with autograd's bookkeeping free "
              f"{no_autograd_bound[target]:.2f}x")
    print(f"floor as measured before (best of {chunks} chunks of 20 batches, scaled): {old_floor_s:.3f} s/epoch")
    print(f"optimization notebook retrain (3 optimizers x {RETRAIN_EPOCHS} epochs), estimated: {retrain_s:.0f} s")
    if compiled:
        pays = compiled["compile_pays_off_in_40_epochs"]
        print(f"torch.compile: {compiled['compiled_s_per_epoch']:.3f} s/epoch after a one-off "
              f"{compiled['compile_s']} s compile (pays off within {RETRAIN_EPOCHS} epochs: {pays})")
    print(json.dumps({
        "quick": args.quick, "device": str(device), "gpu": gpu, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
        "train_images": n_train, "rounds": len(times["floor"]),
        "load_avg_before": round(load_before, 2), "load_avg_after": round(load_after, 2),
        "seed_s_per_epoch": round(seed_s, 4), "torch_optim_s_per_epoch": round(s_per_epoch["torch_optim"], 4),
        "template_adam_s_per_epoch": round(s_per_epoch["template_adam"], 4),
        "template_sgd_s_per_epoch": round(s_per_epoch["template_sgd"], 4),
        "template_sgd_momentum_s_per_epoch": round(s_per_epoch["template_sgd_momentum"], 4),
        "floor_s_per_epoch": round(floor_s, 4), "floor_best_chunk_s_per_epoch": round(old_floor_s, 4),
        **{f"{k}_s_per_epoch": round(s_per_epoch[k], 4) for k in LOWER_BOUNDS},
        **{f"{k}_vs_floor": round(vs_floor[k], 3) for k in LOWER_BOUNDS},
        "speedup_torch_optim_vs_seed": round(seed_s / s_per_epoch["torch_optim"], 2),
        "speedup_template_adam_vs_seed": round(seed_s / s_per_epoch["template_adam"], 2),
        "torch_optim_vs_floor": round(vs_floor["torch_optim"], 3),
        "template_adam_vs_floor": round(vs_floor["template_adam"], 3),
        "targets_vs_floor": TARGETS,
        "meets_targets": all(vs_floor[k] <= v for k, v in TARGETS.items()),
        "targets_below_lower_bound": [k for k, bound in BOUND_OF.items() if vs_floor[bound] > TARGETS[k]],
        "no_autograd_bound_vs_floor": {k: round(v, 3) for k, v in no_autograd_bound.items()},
        "retrain_epochs": RETRAIN_EPOCHS, "retrain_estimate_s": round(retrain_s, 1),
        "per_round_s": {k: [round(t, 4) for t in ts] for k, ts in times.items()},
        **compiled,
    }))


if __name__ == "__main__":
    main()
