"""Train every shipped run of the "Going deeper" chapters and ship the results in course_lib/trained/deeper.

    .venv/bin/python scripts/train_deeper.py                      # every run, 3 seeds each (about 40 min, 2-core CPU)
    .venv/bin/python scripts/train_deeper.py --quick --out /tmp/d  # one epoch on 2k images each (a smoke test)

The runs are ``course_lib.deeper_runs.RUNS``: the depth grid (ReLU and tanh MLPs of width 256 and depth
10, 20 and 50, each initialized four ways, 3 epochs of SGD with momentum on the first 10k training
images), the depth-50 ReLU network with BatchNorm and with residual blocks, and the training-practice
runs on the course's 5-layer network (batch size and learning rate, schedules, L2 and decoupled weight
decay, gradient clipping, early stopping; 5-12 epochs on all 50k images). On CUDA when present.
Training writes into a temporary folder; only when every run has finished are the files copied to
``--out``: each run's NAME.results.json (curves, test accuracy, initial statistics, provenance), the
weights and config of the runs marked ``ship_weights``, and summary.json with each run's wall time
and the total (the benchmark of the retrain). Seeded once here; each run also seeds its own init.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from course_lib.checkpoints import checkpoint_paths, read_json, write_json
from course_lib.data import load_fashion_mnist
from course_lib.deeper_runs import DEEPER_DIR, REPEATS, RUNS, train_run
from course_lib.device import seed_everything, try_gpu
from course_lib.training import provenance


def train_all(out_dir: Path, quick: bool, names: list[str]) -> dict:
    """Train the runs ``names`` into a scratch folder, then copy what ships to ``out_dir``; return the summary."""
    device = try_gpu()
    data = load_fashion_mnist(device=device)
    start, rows = time.perf_counter(), {}
    specs = [run for run in RUNS + REPEATS if run.name in names]
    with tempfile.TemporaryDirectory(prefix="train_deeper_") as scratch:
        for index, spec in enumerate(specs, start=1):
            began = time.perf_counter()
            results = train_run(spec, data, Path(scratch), quick=quick)
            rows[spec.name] = {"wall_s": round(time.perf_counter() - began, 2), "test_acc": results["test_acc"],
                               "epochs": len(results["val_scores"])}
            print(f"[{index}/{len(specs)}] {spec.name}: test {results['test_acc']:.2%}, "
                  f"{rows[spec.name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            source, target = checkpoint_paths(scratch, spec.name), checkpoint_paths(out_dir, spec.name)
            shutil.copyfile(source["results"], target["results"])
            if spec.ship_weights:
                for kind in ("weights", "config"):
                    shutil.copyfile(source[kind], target[kind])
    summary = {"total_s": round(time.perf_counter() - start, 1), "quick": quick, "runs": rows,
               "provenance": provenance(device)}
    previous = out_dir / "summary.json"
    if previous.is_file():  # a partial retrain (--only) keeps the other runs' rows; the total is their sum
        kept = read_json(previous)
        if kept.get("quick") == quick:
            summary["runs"] = {**kept.get("runs", {}), **rows}
            summary["total_s"] = round(sum(row["wall_s"] for row in summary["runs"].values()), 1)
    write_json(previous, summary)
    return summary


def main() -> None:
    """Parse the command line, seed once, train, and print one JSON line with the timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEEPER_DIR, help="folder for the shipped files")
    parser.add_argument("--quick", action="store_true", help="one epoch on 2k training images per run")
    parser.add_argument("--only", nargs="*", default=None, help="train only these runs (names)")
    parser.add_argument("--first-seed-only", action="store_true",
                        help="each run once, with its own seed (not the repeats with SEEDS' others)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on a shared 2-core machine, 2 threads ran 4x slower)")
    args = parser.parse_args()
    if args.only is not None:
        names = args.only
    else:
        names = [run.name for run in (RUNS if args.first_seed_only else RUNS + REPEATS)]
    unknown = sorted(set(names) - {run.name for run in RUNS + REPEATS})
    if unknown:
        raise SystemExit(f"unknown runs: {', '.join(unknown)}")
    seed_everything(42)  # once, here; every run draws its initialization from its own seeded generator
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # vanishing signals (1e-40) are denormal floats: 100x slower on a CPU
    summary = train_all(args.out, args.quick, names)
    print(json.dumps({"total_s": summary["total_s"], "quick": args.quick, "runs": len(summary["runs"]),
                      "out": str(args.out)}))


if __name__ == "__main__":
    main()
