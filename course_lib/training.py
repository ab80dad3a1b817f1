"""Training and evaluation of a classifier on tensors that already sit on the training device."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from .checkpoints import (
    checkpoint_exists,
    checkpoint_paths,
    load_model,
    read_json,
    save_model,
    shown_path,
    write_json,
)
from .data import BatchLoader, FashionMNISTSplits

PathLike = Union[str, os.PathLike]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], Any]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 10_000) -> float:
    """Return the accuracy of ``model`` on (images, labels), in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for x, y in BatchLoader(images, labels, batch_size=batch_size):
        correct += (model(x).argmax(dim=-1) == y).sum()
    model.train(was_training)
    return correct.item() / len(labels)


def git_commit(path: PathLike = Path(__file__).parent) -> Optional[str]:
    """Return the git commit of the checkout holding ``path``, or None outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(device: torch.device) -> Dict[str, Any]:
    """Where and with what a result was produced: device, versions, machine, git commit."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "course_lib": __version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def train_epoch(
    model: torch.nn.Module,
    optimizer: Any,
    loader: BatchLoader,
    scheduler: Any = None,
    clip_grad_norm: Optional[float] = None,
    grad_norms: Optional[list] = None,
) -> tuple[list[float], float]:
    """Run one pass over ``loader``; return the per-batch losses and the training accuracy.

    Optional: ``scheduler.step()`` after every optimizer step; gradients clipped to total norm
    ``clip_grad_norm``; each step's gradient norm (before clipping) appended to ``grad_norms``.
    """
    model.train()
    losses, predictions, targets, norms = [], [], [], []
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if clip_grad_norm is not None or grad_norms is not None:
            limit = float("inf") if clip_grad_norm is None else clip_grad_norm
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), limit).detach())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())  # kept on the device: no synchronisation per step
        predictions.append(logits.detach().argmax(dim=-1))
        targets.append(y)
    if grad_norms is not None and norms:
        grad_norms += torch.stack(norms).tolist()
    if not losses:
        return [], 0.0
    correct = (torch.cat(predictions) == torch.cat(targets)).sum().item()
    return torch.stack(losses).tolist(), correct / len(loader.images)


def train_model(
    model: torch.nn.Module,
    model_name: str,
    optimizer_factory: OptimizerFactory,
    data: FashionMNISTSplits,
    checkpoint_dir: PathLike,
    max_epochs: int = 40,
    batch_size: int = 256,
    overwrite: bool = False,
    seed: int = 42,
    pretrained_dir: Optional[PathLike] = None,
    progress: bool = True,
    scheduler_factory: Optional[Callable[[Any, int], Any]] = None,
    clip_grad_norm: Optional[float] = None,
    patience: Optional[int] = None,
    track_grad_norm: bool = False,
) -> Dict[str, Any]:
    """Train ``model`` on ``data`` (on the data's device), or load it if it was trained before.

    Looks for ``model_name`` in ``checkpoint_dir``, then in ``pretrained_dir`` (e.g. the shipped
    solutions); loads it if found, unless ``overwrite=True``; otherwise trains for ``max_epochs``,
    keeps the weights of the epoch with the best validation accuracy in ``checkpoint_dir``, and
    evaluates them on the test set. Returns the results dict that is also saved as JSON.
    ``seed`` seeds only the batch shuffling (a private generator); seed the model's init yourself.
    Options (all off by default): ``scheduler_factory(optimizer, total_steps)`` gives a learning-rate
    scheduler stepped after every batch; ``clip_grad_norm`` clips the gradients' total norm;
    ``patience`` stops training that many epochs after the last validation improvement (early stopping);
    ``track_grad_norm`` records every step's gradient norm (before clipping) as ``grad_norms``.
    """
    device = data.device
    model.to(device)
    for source in (checkpoint_dir, pretrained_dir):
        if not overwrite and checkpoint_exists(source, model_name):
            load_model(model, source, model_name)
            print(f"Loaded {model_name} from {shown_path(source)} (trained before; pass overwrite=True to retrain)")
            return read_json(checkpoint_paths(source, model_name)["results"])
    reason = "overwrite=True" if overwrite else f"no checkpoint of {model_name} in {shown_path(checkpoint_dir)}"
    print(f"Training {model_name} for {max_epochs} epochs on {device} ({reason})")

    optimizer = optimizer_factory(model.parameters())
    loader = BatchLoader(data.train_images, data.train_labels, batch_size=batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(seed))
    scheduler = None if scheduler_factory is None else scheduler_factory(optimizer, max_epochs * len(loader))
    grad_norms: Optional[list] = [] if track_grad_norm else None
    learning_rates = []  # at the start of each epoch
    train_losses, train_scores, val_scores = [], [], []
    best_epoch, start = -1, time.perf_counter()
    bar = tqdm(range(max_epochs), desc=model_name, disable=not progress)
    for epoch in bar:
        learning_rates.append(optimizer.param_groups[0]["lr"] if hasattr(optimizer, "param_groups") else None)
        losses, train_acc = train_epoch(model, optimizer, loader, scheduler, clip_grad_norm, grad_norms)
        val_acc = evaluate(model, data.val_images, data.val_labels)
        train_losses += losses
        train_scores.append(train_acc)
        val_scores.append(val_acc)
        if best_epoch < 0 or val_acc > val_scores[best_epoch]:
            best_epoch = epoch
            save_model(model, checkpoint_dir, model_name)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", train=f"{train_acc:.2%}", val=f"{val_acc:.2%}")
        if patience is not None and epoch - best_epoch >= patience:
            print(f"{model_name}: early stop after epoch {epoch + 1} (no better validation for {patience} epochs)")
            break
    wall_time = time.perf_counter() - start

    load_model(model, checkpoint_dir, model_name)  # the best epoch's weights
    results = {
        "model_name": model_name,
        "test_acc": evaluate(model, data.test_images, data.test_labels),
        "best_epoch": best_epoch + 1,
        "val_scores": val_scores,
        "train_scores": train_scores,
        "train_losses": train_losses,
        "epochs": max_epochs,
        "batch_size": batch_size,
        "seed": seed,
        "wall_time_s": round(wall_time, 2),
        "config": model.config,
        "provenance": provenance(device),
    }
    if scheduler_factory is not None:
        results["epoch_start_lrs"] = learning_rates
    if clip_grad_norm is not None:
        results["clip_grad_norm"] = clip_grad_norm
    if patience is not None:
        results["patience"], results["stopped_epoch"] = patience, len(val_scores)
    if grad_norms is not None:
        results["grad_norms"] = grad_norms
    write_json(checkpoint_paths(checkpoint_dir, model_name)["results"], results)
    print(f"{model_name}: test accuracy {results['test_acc']:.2%} (best validation epoch {best_epoch + 1})")
    return results
