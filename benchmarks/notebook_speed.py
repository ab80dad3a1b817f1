"""How long the released optimization notebook takes, as a student runs it (not a test; prints numbers).

    .venv/bin/python benchmarks/notebook_speed.py           # shipped results, then a real 40-epoch retrain
    .venv/bin/python benchmarks/notebook_speed.py --quick   # CI smoke test: the retrain is 1 epoch

The student notebook of book/exercises/ is filled with the reference answers and executed end to end
in a scratch folder: once loading the shipped trained models (``notebook_s``, goal <= 300 s on 2 CPU
cores), once retraining all three optimizers for real (``retrain_s`` = the extra time spent in the cells that
call ``load_or_train``, goal <= 240 s for 40 epochs; timed per cell, so the rest of the notebook's
run-to-run noise does not enter it). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_lib.run_settings import RunSettings  # noqa: E402
from grading.authoring.release import filled_release  # noqa: E402
from grading.course import REPO_ROOT  # noqa: E402

TRAINING_CALL = "load_or_train("  # the cells that load shipped results, or train when retraining


def run_notebook(assignment: str, quick: bool = False, retrain: bool = False) -> tuple[float, float]:
    """Execute the filled-in student notebook in a scratch folder; return (wall time, time in training cells)."""
    notebook = filled_release(assignment)
    started: dict[int, float] = {}
    training_s = 0.0

    def cell_started(cell, cell_index: int, **_) -> None:
        started[cell_index] = time.perf_counter()

    def cell_done(cell, cell_index: int, **_) -> None:
        nonlocal training_s
        if TRAINING_CALL in cell.source:
            training_s += time.perf_counter() - started[cell_index]

    with tempfile.TemporaryDirectory(prefix="notebook_speed_") as workdir:
        settings = RunSettings(quick=quick, retrain=retrain or quick, checkpoint_dir=Path(workdir) / "checkpoints")
        full_env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO_ROOT), **settings.as_env()}
        start = time.perf_counter()
        NotebookClient(notebook, timeout=None, kernel_name="python3", on_cell_execute=cell_started,
                       on_cell_executed=cell_done, resources={"metadata": {"path": workdir}}).execute(env=full_env)
        return time.perf_counter() - start, training_s


def main() -> None:
    """Measure and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="retrain for one epoch only (CI smoke test)")
    args = parser.parse_args()
    notebook_s, loading_s = run_notebook("optimization")
    print(f"optimization notebook with shipped results: {notebook_s:.1f} s ({loading_s:.1f} s loading them)",
          file=sys.stderr)
    with_retrain_s, training_s = run_notebook("optimization", quick=args.quick, retrain=True)
    print(f"... retraining all three ({'1 epoch' if args.quick else '40 epochs'}): {with_retrain_s:.1f} s "
          f"({training_s:.1f} s in the training cells)", file=sys.stderr)
    import torch

    print(json.dumps({
        "notebook_s": round(notebook_s, 1),
        "retrain_s": round(training_s - loading_s, 1),
        "with_retrain_s": round(with_retrain_s, 1),
        "retrain_epochs": 1 if args.quick else 40,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }))


if __name__ == "__main__":
    main()
