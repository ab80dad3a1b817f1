"""The shipped runs of the "Going deeper" chapters: what each run is, how to train it, how to load it.

Every run is a ``RunSpec``; ``scripts/train_deeper.py`` trains them all into ``course_lib/trained/deeper``
and the book's pages call ``load_or_train``: the shipped results if present, else a fresh run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from .checkpoints import checkpoint_exists, checkpoint_paths, load_model, read_json, shown_path, write_json
from .data import FashionMNISTSplits
from .depth import INITS, DeepMLP, init_weights, jacobian_singular_values, layer_variances
from .models import BaseNetwork
from .practice import make_optimizer, scheduler_factory, weight_norm
from .run_settings import TRAINED_DIR, RunSettings
from .training import train_model

DEEPER_DIR = TRAINED_DIR / "deeper"  # the shipped results of both chapters
GRID_TRAIN_SIZE = 10_000  # the depth grid trains on the first 10k of the 50k training images
QUICK_TRAIN_SIZE = 2_000  # quick mode (CI) trains every run on 2k images for one epoch
QUICK_EVAL_SIZE = 1_000  # and evaluates it on 1k validation and 1k test images
STATS_BATCH, JACOBIAN_BATCH = 512, 4  # images for the variances and for the Jacobians at initialization
DEPTHS, ACTIVATIONS, WIDTH = (10, 20, 50), ("relu", "tanh"), 256


@dataclass(frozen=True)
class RunSpec:
    """One shipped run: the network, its initialization, the optimizer and the training options."""

    name: str
    chapter: str  # "depth" or "practice"
    model: Dict[str, Any]  # "kind": "deep" (DeepMLP keyword arguments) or "base" (the course's BaseNetwork)
    init: str = "kaiming"
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 3
    schedule: Optional[str] = None
    warmup_steps: int = 0
    clip_grad_norm: Optional[float] = None
    patience: Optional[int] = None
    track_grad_norm: bool = False
    train_size: Optional[int] = None  # None: all 50k training images
    seed: int = 42
    ship_weights: bool = False
    init_stats: bool = False  # record variances and the Jacobian's spectrum at initialization
    tags: Dict[str, Any] = field(default_factory=dict)  # what the pages group runs by

    def build(self) -> torch.nn.Module:
        """A fresh, not yet initialized network of this run."""
        kwargs = {k: v for k, v in self.model.items() if k != "kind"}
        return DeepMLP(**kwargs) if self.model["kind"] == "deep" else BaseNetwork(**kwargs)


def _depth_runs() -> List[RunSpec]:
    """The depth grid (2 activations x 3 depths x 4 initializations) and the depth-50 BatchNorm/residual runs."""
    runs = [RunSpec(f"depth{d}_{act}_{init}", "depth", {"kind": "deep", "depth": d, "width": WIDTH, "act_fn": act},
                    init=init, epochs=3, train_size=GRID_TRAIN_SIZE, init_stats=True,
                    tags={"depth": d, "act": act, "variant": init})
            for act in ACTIVATIONS for d in DEPTHS for init in INITS]
    for variant, extra in (("batchnorm", {"batch_norm": True}), ("residual", {"residual": True})):
        runs.append(RunSpec(f"depth50_relu_{variant}", "depth",
                            {"kind": "deep", "depth": 50, "width": WIDTH, "act_fn": "relu", **extra},
                            init="kaiming", epochs=3, train_size=GRID_TRAIN_SIZE, init_stats=True,
                            ship_weights=variant == "residual", tags={"depth": 50, "act": "relu", "variant": variant}))
    return runs


BASE = {"kind": "base", "act_fn": "relu"}  # the course's 5-layer network (784-512-256-256-128-10)


def _practice_runs() -> List[RunSpec]:
    """The training-practice experiments on the course's 5-layer ReLU network (Kaiming init)."""
    runs = []
    # batch size and learning rate: eta = 0.01 * B / 64 (linear scaling), unscaled, and scaled with warm-up
    for batch, lr, warmup in ((64, 0.01, 0), (256, 0.04, 0), (1024, 0.16, 0), (1024, 0.01, 0), (1024, 0.16, 49),
                              (1024, 0.32, 0), (1024, 0.32, 49), (1024, 0.64, 0), (1024, 0.64, 49)):
        suffix = f"_warmup{warmup}" if warmup else ""
        runs.append(RunSpec(f"batch{batch}_lr{lr:g}{suffix}", "practice", BASE, batch_size=batch, lr=lr, epochs=6,
                            schedule="constant" if warmup else None, warmup_steps=warmup,
                            tags={"group": "batch", "batch": batch, "lr": lr, "warmup": warmup}))
    for schedule in ("constant", "step", "cosine", "onecycle"):
        runs.append(RunSpec(f"schedule_{schedule}", "practice", BASE, batch_size=256, lr=0.05, epochs=10,
                            schedule=schedule, tags={"group": "schedule", "schedule": schedule}))
    for kind, decay in (("adam_l2", 0.0), ("adam_l2", 1e-3), ("adamw", 1e-1)):
        label = "adam" if decay == 0 else f"{kind}_{decay:g}"
        runs.append(RunSpec(f"decay_{label}", "practice", BASE, optimizer=kind, lr=1e-3, weight_decay=decay,
                            batch_size=256, epochs=12, ship_weights=label == "adam",
                            tags={"group": "decay", "optimizer": kind, "weight_decay": decay}))
    for clip in (None, 1.0):
        runs.append(RunSpec(f"clip_{'none' if clip is None else f'{clip:g}'}", "practice", BASE, lr=0.2,
                            batch_size=256, epochs=5, clip_grad_norm=clip, track_grad_norm=True,
                            tags={"group": "clip", "clip": clip}))
    runs.append(RunSpec("early_stop_patience2", "practice", BASE, optimizer="adam_l2", lr=1e-3, batch_size=256,
                        epochs=12, patience=2, tags={"group": "early_stop", "patience": 2}))
    return runs


RUNS: Tuple[RunSpec, ...] = tuple(_depth_runs() + _practice_runs())
# Each run again with other seeds (its initialization and the order of its batches): the pages quote a run's
# mean and standard deviation over ``SEEDS`` and compare two runs only where the difference exceeds that spread.
SEEDS = (42, 43, 44)


def repeat(spec: RunSpec, seed: int) -> RunSpec:
    """``spec`` trained with another seed (named NAME_seedSEED; it ships no weights)."""
    return replace(spec, name=f"{spec.name}_seed{seed}", seed=seed, ship_weights=False)


REPEATS: Tuple[RunSpec, ...] = tuple(repeat(run, seed) for run in RUNS for seed in SEEDS if seed != run.seed)
RUNS_BY_NAME = {run.name: run for run in RUNS + REPEATS}


def seed_names(name: str) -> List[str]:
    """The names of run ``name`` under every seed of ``SEEDS``, its own first."""
    spec = RUNS_BY_NAME[name]
    return [name] + [repeat(spec, seed).name for seed in SEEDS if seed != spec.seed]


def run_data(spec: RunSpec, data: FashionMNISTSplits, quick: bool) -> FashionMNISTSplits:
    """The data a run trains on: its fixed training subset and all validation/test images; in quick mode
    2k training and 1k validation and test images (evaluating a depth-50 network on 20k images is slow)."""
    if quick:
        q, e = QUICK_TRAIN_SIZE, QUICK_EVAL_SIZE
        return FashionMNISTSplits(data.train_images[:q], data.train_labels[:q], data.val_images[:e],
                                  data.val_labels[:e], data.test_images[:e], data.test_labels[:e])
    size = spec.train_size
    if size is None:
        return data
    return FashionMNISTSplits(data.train_images[:size], data.train_labels[:size], data.val_images, data.val_labels,
                              data.test_images, data.test_labels)


def _rounded(values, digits: int = 4) -> List[float]:
    """Values rounded to ``digits`` significant digits (smaller JSON, same plots)."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else v for v in map(float, values)]


def initial_statistics(model: torch.nn.Module, data: FashionMNISTSplits) -> Dict[str, Any]:
    """Per-layer variances and (without BatchNorm) the stack's Jacobian singular values, on training images."""
    images, labels = data.train_images[:STATS_BATCH], data.train_labels[:STATS_BATCH]
    stats: Dict[str, Any] = layer_variances(model, images, labels)
    if not model.config["batch_norm"]:  # eval-mode BatchNorm at init is the identity: its Jacobian says nothing
        stats["singular_values"] = _rounded(jacobian_singular_values(model, data.train_images[:JACOBIAN_BATCH]))
    return stats


def train_run(spec: RunSpec, data: FashionMNISTSplits, out_dir: Path, quick: bool = False,
              progress: bool = False) -> Dict[str, Any]:
    """Train ``spec`` from scratch into ``out_dir`` (quick: one epoch on 2k images); return its results."""
    model = spec.build()  # initialized on the CPU with the run's own generator, whatever ran before
    init_weights(model, spec.init, data.train_images[:STATS_BATCH].cpu(),
                 generator=torch.Generator().manual_seed(spec.seed))
    model.to(data.device)
    stats = initial_statistics(model, data) if spec.init_stats else None
    train_data = run_data(spec, data, quick)
    steps = math.ceil(len(train_data.train_labels) / spec.batch_size) * (1 if quick else spec.epochs)
    warmup = min(spec.warmup_steps, steps // 2)  # the same as the spec's except in quick mode
    results = train_model(
        model, spec.name, lambda params: make_optimizer(spec.optimizer, params, spec.lr, spec.weight_decay),
        train_data, out_dir, max_epochs=1 if quick else spec.epochs, batch_size=spec.batch_size, overwrite=True,
        seed=spec.seed, progress=progress,
        scheduler_factory=None if spec.schedule is None else scheduler_factory(spec.schedule, warmup),
        clip_grad_norm=spec.clip_grad_norm, patience=spec.patience, track_grad_norm=spec.track_grad_norm)
    results.update(spec=asdict(spec), quick=quick, train_size=len(train_data.train_labels),
                   weight_norm=weight_norm(model), train_losses=_rounded(results["train_losses"]))
    if "grad_norms" in results:
        results["grad_norms"] = _rounded(results["grad_norms"])
    if stats is not None:
        results["init_stats"] = stats
    write_json(checkpoint_paths(out_dir, spec.name)["results"], results)
    return results


def shipped_results_path(name: str, directory: Path = DEEPER_DIR) -> Path:
    """Where the results JSON of run ``name`` lies in ``directory``."""
    return checkpoint_paths(directory, name)["results"]


def load_or_train(names: List[str], settings: RunSettings, data_fn, shipped_dir: Path = DEEPER_DIR,
                  ) -> Dict[str, Dict[str, Any]]:
    """Results of the runs ``names``: shipped ones unless ``settings.retrain``, else those in the checkpoint
    folder, else trained now (one epoch on 2k images in quick mode). Prints where each came from.

    ``data_fn()`` returns the FashionMNIST splits; it is called only if something must be trained.
    """
    results, data = {}, None
    for name in names:
        spec = RUNS_BY_NAME[name]
        sources = [] if settings.retrain else [shipped_dir, settings.checkpoint_dir]
        found = next((d for d in sources if shipped_results_path(name, d).is_file()), None)
        if found is not None:
            results[name] = read_json(shipped_results_path(name, found))
            continue
        reason = "COURSE_RETRAIN=1 or quick mode" if settings.retrain else f"no results in {shown_path(shipped_dir)}"
        print(f"Training {name} ({reason})")
        data = data_fn() if data is None else data
        results[name] = train_run(spec, data, settings.checkpoint_dir, quick=settings.quick)
    where = "retrained" if settings.retrain else f"loaded from {shown_path(shipped_dir)}"
    print(f"{len(results)} runs {where}" + (" (trained where missing)" if data is not None else ""))
    return results


def load_over_seeds(names: List[str], settings: RunSettings, data_fn, shipped_dir: Path = DEEPER_DIR,
                    ) -> Dict[str, List[Dict[str, Any]]]:
    """Results of each run in ``names`` under every seed of ``SEEDS``, its own seed first ("load if present,
    else train", as ``load_or_train``); in quick mode only its own seed, which is all a quick run can afford."""
    per_name = {name: seed_names(name)[:1] if settings.quick else seed_names(name) for name in names}
    flat = load_or_train([seeded for seeded_names in per_name.values() for seeded in seeded_names], settings,
                         data_fn, shipped_dir)
    return {name: [flat[seeded] for seeded in seeded_names] for name, seeded_names in per_name.items()}


def load_trained_model(name: str, settings: RunSettings, data_fn, shipped_dir: Path = DEEPER_DIR,
                       ) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """The trained network of a run that ships weights, and its results ("load if present, else train")."""
    spec = RUNS_BY_NAME[name]
    model = spec.build()
    for directory in ([] if settings.retrain else [shipped_dir]) + [settings.checkpoint_dir]:
        if checkpoint_exists(directory, name):
            print(f"Loaded the weights of {name} from {shown_path(directory)}")
            return load_model(model, directory, name), read_json(shipped_results_path(name, directory))
    print(f"Training {name}: no weights in {shown_path(shipped_dir)} or {shown_path(settings.checkpoint_dir)}")
    results = train_run(spec, data_fn(), settings.checkpoint_dir, quick=settings.quick)
    return load_model(model, settings.checkpoint_dir, name), results
