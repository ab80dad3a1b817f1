"""Train the runs of the optimization solution notebook on FashionMNIST and ship their results in course_lib.

    .venv/bin/python scripts/train_solutions.py            # 40 epochs each (about half an hour on a 2-core CPU)
    .venv/bin/python scripts/train_solutions.py --epochs 1 --out /tmp/trained   # a quick try

It executes solutions/optimization/optimization.ipynb itself, with retraining on, so every run uses the
notebook's own SGD, SGDMomentum and Adam classes and its own settings: the Kaiming-initialized ReLU
BaseNetwork with seeds 42, 43 and 44, and the poorly initialized one (every weight from N(0, 0.01^2),
seed 42), batch 256, SGD lr 0.1, momentum lr 0.1 / beta 0.9, Adam lr 1e-3; on CUDA when present,
else on the CPU. Training writes into a temporary folder; only when every run has finished are the
files copied to ``--out`` (default course_lib/trained):

- every run: NAME.results.json (curves, test accuracy and provenance: device, torch version, threads,
  wall time, seed, epochs, git commit), with the per-batch losses rounded to 4 decimals;
- the three seed-42 Kaiming runs also: NAME.pt (best-validation weights, a state dict of plain tensors,
  read back with ``weights_only=True``) and NAME.config.json. The other runs ship no weights, to keep
  the library small (each weight file is 2.5 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_lib.checkpoints import checkpoint_paths, read_json, write_json
from course_lib.run_settings import TRAINED_DIR, RunSettings

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "optimization" / "optimization.ipynb"
OPTIMIZERS = ("SGD", "SGDMomentum", "Adam")
WITH_WEIGHTS = tuple(f"FashionMNIST_{name}" for name in OPTIMIZERS)  # the seed-42 Kaiming runs
RUNS = WITH_WEIGHTS + tuple(f"FashionMNIST_{name}_seed{seed}" for seed in (43, 44) for name in OPTIMIZERS) + tuple(
    f"FashionMNIST_{name}_poor_init" for name in OPTIMIZERS)


def ship(scratch: Path, out_dir: Path) -> dict:
    """Copy every run's results (and the weights of WITH_WEIGHTS) from ``scratch`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name in RUNS:
        source, target = checkpoint_paths(scratch, name), checkpoint_paths(out_dir, name)
        results = read_json(source["results"])
        results["train_losses"] = [round(loss, 4) for loss in results["train_losses"]]
        write_json(target["results"], results)
        if name in WITH_WEIGHTS:
            for kind in ("weights", "config"):
                shutil.copyfile(source[kind], target[kind])
        summary[name] = {key: results[key] for key in ("test_acc", "best_epoch", "epochs", "wall_time_s")}
        summary[name]["device"] = results["provenance"]["device"]
    return summary


def train(out_dir: Path, epochs: int) -> dict:
    """Execute the solution notebook with retraining on; ship the trained runs to ``out_dir``."""
    if epochs not in (1, 40):
        raise SystemExit("--epochs must be 40 (the course's setting) or 1 (the quick mode)")
    with tempfile.TemporaryDirectory(prefix="train_solutions_") as scratch:
        settings = RunSettings(quick=epochs == 1, retrain=True, checkpoint_dir=Path(scratch))
        env = {
            **os.environ, **settings.as_env(), "MPLBACKEND": "Agg",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=None, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute(env=env)
        return ship(Path(scratch), out_dir)


def main() -> None:
    """Parse the command line, train, and print one JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=TRAINED_DIR, help="folder for the trained files")
    parser.add_argument("--epochs", type=int, default=40, help="40 (default) or 1 for a quick try")
    args = parser.parse_args()
    start = time.perf_counter()
    summary = train(args.out, args.epochs)
    for name, row in summary.items():
        print(f"{name}: test accuracy {row['test_acc']:.2%} (best epoch {row['best_epoch']}/{row['epochs']}, "
              f"{row['wall_time_s']:.0f} s on {row['device']})", file=sys.stderr)
    print(json.dumps({"total_s": round(time.perf_counter() - start, 1), "out": str(args.out), "models": summary}))


if __name__ == "__main__":
    main()
