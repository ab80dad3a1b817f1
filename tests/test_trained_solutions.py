"""The shipped trained solutions (course_lib/trained): complete, honest about provenance, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from course_lib.checkpoints import load_model
from course_lib.models import BaseNetwork
from course_lib.training import evaluate

TRAINED = Path(__file__).resolve().parent.parent / "course_lib" / "trained"
NAMES = ("FashionMNIST_SGD", "FashionMNIST_SGDMomentum", "FashionMNIST_Adam")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_results_carry_provenance(name):
    """40 epochs, batch 256, seed, wall time, device, torch version and git commit are recorded."""
    results = json.loads((TRAINED / f"{name}.results.json").read_text())
    assert results["epochs"] == 40 and len(results["val_scores"]) == 40 and results["batch_size"] == 256
    assert results["seed"] == 42 and results["wall_time_s"] > 0
    provenance = results["provenance"]
    assert provenance["device"] in ("cpu", "cuda:0") and provenance["torch"] and provenance["git_commit"]
    assert results["config"] == {"act_fn": "relu", "input_size": 784, "num_classes": 10,
                                 "hidden_sizes": [512, 256, 256, 128]}
    assert 0.87 <= results["test_acc"] <= 0.92, "far from the seed's 88.8-89.5 %"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_reproduce_the_reported_test_accuracy(name, fashion):
    """The shipped weights, loaded weights-only, give exactly the test accuracy the results JSON reports."""
    results = json.loads((TRAINED / f"{name}.results.json").read_text())
    model = load_model(BaseNetwork("relu"), TRAINED, name)
    assert evaluate(model, fashion.test_images, fashion.test_labels) == pytest.approx(results["test_acc"], abs=1e-4)
