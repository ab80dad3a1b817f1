"""How long the released optimization notebook takes, as a student runs it (not a test; prints numbers).

    .venv/bin/python benchmarks/notebook_speed.py           # shipped results, then a real 40-epoch retrain
    .venv/bin/python benchmarks/notebook_speed.py --quick   # CI smoke test: the retrain is 1 epoch

The student notebook of book/exercises/ is filled with the reference answers and executed end to end
in a scratch folder: once loading the shipped trained models (``notebook_s``, goal <= 300 s on 2 CPU
cores), once retraining all three optimizers for real (``retrain_s`` = the extra time, goal <= 240 s
for 40 epochs). The last line of output is one JSON object.
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


def run_notebook(assignment: str, quick: bool = False, retrain: bool = False) -> float:
    """Execute the filled-in student notebook in a scratch folder; return its wall time in seconds."""
    notebook = filled_release(assignment)
    with tempfile.TemporaryDirectory(prefix="notebook_speed_") as workdir:
        settings = RunSettings(quick=quick, retrain=retrain or quick, checkpoint_dir=Path(workdir) / "checkpoints")
        full_env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO_ROOT), **settings.as_env()}
        start = time.perf_counter()
        NotebookClient(notebook, timeout=None, kernel_name="python3",
                       resources={"metadata": {"path": workdir}}).execute(env=full_env)
        return time.perf_counter() - start


def main() -> None:
    """Measure and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="retrain for one epoch only (CI smoke test)")
    args = parser.parse_args()
    notebook_s = run_notebook("optimization")
    print(f"optimization notebook with shipped results: {notebook_s:.1f} s", file=sys.stderr)
    with_retrain_s = run_notebook("optimization", quick=args.quick, retrain=True)
    print(f"... retraining all three ({'1 epoch' if args.quick else '40 epochs'}): {with_retrain_s:.1f} s",
          file=sys.stderr)
    import torch

    print(json.dumps({
        "notebook_s": round(notebook_s, 1),
        "retrain_s": round(with_retrain_s - notebook_s, 1),
        "retrain_epochs": 1 if args.quick else 40,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }))


if __name__ == "__main__":
    main()
