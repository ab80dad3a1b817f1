"""The shipped trained solutions (course_lib/trained): complete, honest about provenance, reproducible, small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib.checkpoints import load_model
from course_lib.models import BaseNetwork
from course_lib.training import evaluate

REPO = Path(__file__).resolve().parent.parent
TRAINED = REPO / "course_lib" / "trained"
sys.path.insert(0, str(REPO / "scripts"))
from train_solutions import RUNS, WITH_WEIGHTS  # noqa: E402  (the script decides what is shipped)

SHIPPED_BUDGET_BYTES = 10 * 2**20  # what `pip install` of course_lib carries along, Colab included
CONFIG = {"act_fn": "relu", "input_size": 784, "num_classes": 10, "hidden_sizes": [512, 256, 256, 128]}


def results_of(name: str) -> dict:
    """The shipped results JSON of a run."""
    return json.loads((TRAINED / f"{name}.results.json").read_text())


def test_the_runs_are_the_notebooks_runs():
    """Three seeds of each optimizer with Kaiming weights, and each optimizer from the poor initialization."""
    assert len(RUNS) == 12 and len(set(RUNS)) == 12
    assert set(WITH_WEIGHTS) == {"FashionMNIST_SGD", "FashionMNIST_SGDMomentum", "FashionMNIST_Adam"}
    notebook = (REPO / "solutions" / "optimization" / "optimization.ipynb").read_text()
    for pattern in ('_seed{seed}', '_poor_init', 'SEEDS = (42, 43, 44)'):
        assert pattern in notebook, f"the notebook no longer names its runs with {pattern!r}"


@pytest.mark.parametrize("name", RUNS)
def test_shipped_results_carry_provenance(name):
    """40 epochs, batch 256, the run's seed, wall time, device, torch version and git commit are recorded."""
    results = results_of(name)
    assert results["model_name"] == name
    assert results["epochs"] == 40 and len(results["val_scores"]) == 40 and results["batch_size"] == 256
    seed = int(name.rsplit("_seed", 1)[1]) if "_seed" in name else 42
    assert results["seed"] == seed and results["wall_time_s"] > 0
    provenance = results["provenance"]
    assert provenance["device"] in ("cpu", "cuda:0") and provenance["torch"] and provenance["git_commit"]
    assert results["config"] == CONFIG
    if name.endswith("_poor_init"):
        assert 0.1 <= results["test_acc"] <= 0.92
    else:
        assert 0.87 <= results["test_acc"] <= 0.92, "far from Lippe's (2022) 88.8-89.5 %"


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_shipped_weights_reproduce_the_reported_test_accuracy(name, fashion):
    """The shipped weights, loaded weights-only, give exactly the test accuracy the results JSON reports."""
    model = load_model(BaseNetwork("relu"), TRAINED, name)
    assert evaluate(model, fashion.test_images, fashion.test_labels) == pytest.approx(results_of(name)["test_acc"],
                                                                                       abs=1e-4)


def test_nothing_else_is_shipped_and_it_stays_small():
    """Exactly the runs' results and the seed-42 weights, within the size budget and far below git's limits."""
    expected = {f"{n}.results.json" for n in RUNS} | {f"{n}{s}" for n in WITH_WEIGHTS for s in (".pt", ".config.json")}
    shipped = {p.name for p in TRAINED.iterdir() if p.is_file()}
    assert shipped == expected
    sizes = {p.name: p.stat().st_size for p in TRAINED.iterdir()}
    assert sum(sizes.values()) <= SHIPPED_BUDGET_BYTES, sizes
    assert max(sizes.values()) < 50 * 2**20, "GitHub warns about files over 50 MB"


@pytest.mark.slow
def test_train_solutions_quick_mode_ships_every_run(tmp_path):
    """`train_solutions.py --epochs 1` executes the solution notebook and ships every run it defines."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "train_solutions.py"), "--epochs", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert set(summary["models"]) == set(RUNS)
    assert {p.name for p in tmp_path.iterdir()} == {f"{n}.results.json" for n in RUNS} | {
        f"{n}{s}" for n in WITH_WEIGHTS for s in (".pt", ".config.json")}
    assert all(results["epochs"] == 1 for results in summary["models"].values())
