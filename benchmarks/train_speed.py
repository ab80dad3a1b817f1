"""Seconds per FashionMNIST epoch: course_lib's training against the seed tutorial's design and
against the machine's GEMM floor. Not a test: it prints a table, and as its last line one JSON object.

    python benchmarks/train_speed.py            # full: 2 seed epochs, 3 epochs of each course_lib variant
    python benchmarks/train_speed.py --quick    # seconds-long smoke run (CI)

An epoch is one pass over the 50k training images in batches of 256 plus the validation pass.
- seed: torchvision dataset with a per-image ToTensor+Normalize, DataLoader(batch 256, shuffle,
  drop_last, pin_memory) for training and batch 1024 for validation, hand-written Adam.
- torch_optim: course_lib (tensors on the device, BatchLoader, train_epoch/evaluate), torch.optim.Adam
  (fused=True: one kernel for all parameters).
- template_adam: the same, with the hand-written OptimizerTemplate Adam of the exercises.
- floor: only the matrix products the epoch must do (torch.mm at the layer shapes: forward, the
  weight gradients, the input gradients of every layer but the first, and the validation forward).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, random_split
from torchvision import transforms

from course_lib.data import BatchLoader, FashionMNISTSplits, TRAIN_MEAN, TRAIN_STD, load_fashion_mnist, prepare_fashion_mnist
from course_lib.device import seed_everything, try_gpu
from course_lib.models import BaseNetwork
from course_lib.optim import OptimizerTemplate
from course_lib.training import evaluate, train_epoch

HIDDEN = (512, 256, 256, 128)


class TemplateAdam(OptimizerTemplate):
    """The seed's hand-written Adam (bias-corrected, eps after the square root)."""

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
    train_loader = DataLoader(train_set, batch_size=256, shuffle=True, drop_last=True, pin_memory=pin)
    val_loader = DataLoader(val_set, batch_size=1024, shuffle=False, drop_last=False)
    model = BaseNetwork("relu", hidden_sizes=HIDDEN).to(device)
    optimizer = TemplateAdam(model.parameters(), lr=1e-3)
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
            for imgs, labels in val_loader:
                model(imgs.to(device)).argmax(dim=-1)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def course_lib_epochs(data: FashionMNISTSplits, optimizer_factory, epochs: int) -> list[float]:
    """Seconds per epoch of course_lib's loop (train_epoch + evaluate on the validation set)."""
    model = BaseNetwork("relu", hidden_sizes=HIDDEN).to(data.device)
    optimizer = optimizer_factory(model.parameters())
    loader = BatchLoader(data.train_images, data.train_labels, batch_size=256, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        train_epoch(model, optimizer, loader)
        evaluate(model, data.val_images, data.val_labels)
        sync(data.device)
        times.append(time.perf_counter() - start)
    return times


def gemm_floor_epoch(n_train: int, n_val: int, device: torch.device, repeats: int) -> float:
    """Seconds per epoch spent in the matrix products alone (best of ``repeats``)."""
    sizes = [784, *HIDDEN, 10]
    weights = [torch.randn(o, i, device=device) for i, o in zip(sizes[:-1], sizes[1:])]
    acts = [torch.randn(256, s, device=device) for s in sizes]
    val_in = torch.randn(4096, 784, device=device)

    def train_batch() -> None:
        for k, w in enumerate(weights):
            torch.mm(acts[k], w.t())  # forward
            torch.mm(acts[k + 1].t(), acts[k])  # weight gradient [out, in]
            if k > 0:
                torch.mm(acts[k + 1], w)  # input gradient

    def val_batch() -> None:
        x = val_in
        for w in weights:
            x = torch.mm(x, w.t())

    def best(fn, n: int) -> float:
        fn()
        results = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            results.append((time.perf_counter() - start) / n)
        return min(results)

    return best(train_batch, 20) * n_train / 256 + best(val_batch, 3) * n_val / 4096


def main() -> None:
    """Run all four measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run on 5k images")
    parser.add_argument("--seed-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each course_lib variant")
    args = parser.parse_args()
    seed_everything(0)
    device = try_gpu()
    limit = 5_120 if args.quick else None
    seed_epochs, epochs = (1, 1) if args.quick else (args.seed_epochs, args.epochs)

    data = load_fashion_mnist(device=device)
    if limit:
        data = FashionMNISTSplits(data.train_images[:limit], data.train_labels[:limit], data.val_images[: limit // 5],
                                  data.val_labels[: limit // 5], data.test_images, data.test_labels)
    n_train, n_val = len(data.train_labels), len(data.val_labels)

    # Skip each variant's first epoch when there are several: it pays for warm-up allocations.
    def typical(times: list[float]) -> float:
        return statistics.median(times[1:] if len(times) > 1 else times)

    # The seed's design runs last: its DataLoader churn leaves the allocator slower for what follows.
    torch_s = typical(course_lib_epochs(data, torch_adam, epochs + 1))
    template_s = typical(course_lib_epochs(data, lambda p: TemplateAdam(p, lr=1e-3), epochs + 1))
    floor_s = gemm_floor_epoch(n_train, n_val, device, repeats=3 if args.quick else 7)
    seed_s = typical(seed_design_epochs(seed_epochs, limit, device))

    print(f"device {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {n_train} training images per epoch{' (quick)' if args.quick else ''}")
    print(f"{'design':<38}{'s/epoch':>9}{'vs seed':>9}{'vs floor':>10}")
    rows = [("seed: DataLoader + per-image transform", seed_s), ("course_lib + torch.optim.Adam(fused)", torch_s),
            ("course_lib + hand-written template Adam", template_s), ("GEMM floor (torch.mm only)", floor_s)]
    for name, seconds in rows:
        print(f"{name:<38}{seconds:>9.3f}{seed_s / seconds:>8.1f}x{seconds / floor_s:>9.2f}x")
    print(json.dumps({
        "quick": args.quick, "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "python": sys.version.split()[0], "train_images": n_train,
        "seed_s_per_epoch": round(seed_s, 4), "torch_optim_s_per_epoch": round(torch_s, 4),
        "template_adam_s_per_epoch": round(template_s, 4), "floor_s_per_epoch": round(floor_s, 4),
        "speedup_torch_optim_vs_seed": round(seed_s / torch_s, 2),
        "speedup_template_adam_vs_seed": round(seed_s / template_s, 2),
        "torch_optim_vs_floor": round(torch_s / floor_s, 3),
    }))


if __name__ == "__main__":
    main()
