"""Train the solution notebook's three optimizers on FashionMNIST and ship the results in course_lib.

    .venv/bin/python scripts/train_solutions.py            # 40 epochs each (a few minutes on a CPU)
    .venv/bin/python scripts/train_solutions.py --epochs 1 --out /tmp/trained   # a quick try

It executes solutions/optimization/optimization.ipynb itself, with its own SGD, SGDMomentum and Adam
classes and its own settings (Kaiming-initialized ReLU BaseNetwork, batch 256, SGD lr 0.1, momentum
lr 0.1 / beta 0.9, Adam lr 1e-3), on CUDA when present, else on the CPU. Training writes into a
temporary folder; only when all three have finished are their files copied to ``--out``
(default course_lib/trained): NAME.pt (best-validation weights, a state dict), NAME.config.json and
NAME.results.json (curves, test accuracy and provenance: device, torch version, wall time, seed,
epochs, git commit).
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

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "optimization" / "optimization.ipynb"
SHIPPED = ROOT / "course_lib" / "trained"
MODEL_NAMES = ("FashionMNIST_SGD", "FashionMNIST_SGDMomentum", "FashionMNIST_Adam")


def train(out_dir: Path, epochs: int) -> dict:
    """Execute the solution notebook with retraining on; copy the three trained models to ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="train_solutions_") as scratch:
        env = {
            "COURSE_RETRAIN": "1",
            "COURSE_CHECKPOINTS": scratch,
            "COURSE_QUICK": "1" if epochs == 1 else "",
            "MPLBACKEND": "Agg",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        if epochs not in (1, 40):
            raise SystemExit("--epochs must be 40 (the course's setting) or 1 (the quick mode)")
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=None, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute(env={**os.environ, **env})
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = {}
        for name in MODEL_NAMES:
            for suffix in (".pt", ".config.json", ".results.json"):
                shutil.copyfile(Path(scratch) / f"{name}{suffix}", out_dir / f"{name}{suffix}")
            results = json.loads((out_dir / f"{name}.results.json").read_text())
            summary[name] = {key: results[key] for key in ("test_acc", "best_epoch", "epochs", "wall_time_s")}
            summary[name]["device"] = results["provenance"]["device"]
    return summary


def main() -> None:
    """Parse the command line, train, and print one JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=SHIPPED, help="folder for the trained files")
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
