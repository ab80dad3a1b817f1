"""The "Going deeper" library: deep MLPs, initializers, Jacobian spectra, schedules, retraining, shipped runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib.checkpoints import load_model, save_model
from course_lib.deeper_runs import DEEPER_DIR, REPEATS, RUNS, RUNS_BY_NAME, SEEDS, load_over_seeds
from course_lib.depth import (
    DeepMLP,
    init_weights,
    jacobian_singular_values,
    layer_variances,
    lsuv_,
    orthogonal_,
    stack_jacobians,
)
from course_lib.practice import early_stopping_epoch, schedule_values
from course_lib.run_settings import run_settings
from course_lib.training import evaluate, train_model

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (96, 96)])
def test_orthogonal_weights_are_orthogonal(shape):
    """W W^T = g^2 I for a wide matrix, W^T W = g^2 I for a tall one (both for a square one)."""
    gain = math.sqrt(2)
    w = orthogonal_(torch.empty(shape), gain=gain, generator=torch.Generator().manual_seed(1))
    rows, cols = shape
    gram = w @ w.T if rows <= cols else w.T @ w
    torch.testing.assert_close(gram, gain**2 * torch.eye(min(shape)), atol=1e-5, rtol=0)
    assert w.std() > 0.01  # not a trivially padded identity


def test_orthogonal_draws_differ_between_seeds():
    """Two seeds give two different orthogonal matrices (the init is random, not a fixed basis)."""
    a = orthogonal_(torch.empty(32, 32), generator=torch.Generator().manual_seed(1))
    b = orthogonal_(torch.empty(32, 32), generator=torch.Generator().manual_seed(2))
    assert (a - b).abs().max() > 0.1


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_lsuv_gives_every_layer_unit_variance_on_the_batch(act, fashion_batch):
    """After LSUV every linear layer's output (the logits included) has variance 1 within tol on the batch."""
    images, _ = fashion_batch
    model = init_weights(DeepMLP(8, 64, act), "lsuv", images=images, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = model.hidden_states(images)
    assert len(outputs) == 9
    for h in outputs:
        assert h.var().item() == pytest.approx(1.0, abs=0.03)
    plain = init_weights(DeepMLP(8, 64, act), "orthogonal", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert abs(plain.hidden_states(images)[-1].var().item() - 1) > 0.03  # LSUV changed something


def test_lsuv_refuses_residual_networks(fashion_batch):
    """LSUV is defined for plain networks: a residual one raises with a message."""
    with pytest.raises(ValueError, match="plain"):
        lsuv_(DeepMLP(3, 16, residual=True), fashion_batch[0])


@pytest.mark.parametrize("kwargs", [{"act_fn": "tanh"}, {"act_fn": "relu", "residual": True}])
def test_jacobian_matches_autograd(kwargs, fashion_batch):
    """stack_jacobians (torch.func) equals torch.autograd.functional.jacobian of the stack, image by image."""
    model = init_weights(DeepMLP(4, 12, **kwargs), "kaiming", generator=torch.Generator().manual_seed(0))
    images = fashion_batch[0][:3]
    jacobians = stack_jacobians(model, images)
    with torch.no_grad():
        h1 = model.linears[0](images)
    for i in range(3):
        reference = torch.autograd.functional.jacobian(lambda h: model.stack(h[None])[0], h1[i])
        torch.testing.assert_close(jacobians[i], reference, atol=1e-5, rtol=1e-4)
    values = jacobian_singular_values(model, images)
    expected = torch.linalg.svdvals(jacobians.double()).reshape(-1).sort(descending=True).values
    torch.testing.assert_close(torch.from_numpy(values), expected)


def test_variances_vanish_with_xavier_relu_and_hold_with_kaiming_at_depth_50(fashion_batch):
    """Xavier halves a ReLU layer's output variance per layer (256 -> 256); Kaiming keeps it (He et al., 2015)."""
    images, labels = fashion_batch
    stats = {}
    for scheme in ("xavier", "kaiming"):
        model = init_weights(DeepMLP(50, 256, "relu"), scheme, generator=torch.Generator().manual_seed(0))
        stats[scheme] = layer_variances(model, images, labels)
    xavier, kaiming = stats["xavier"]["activations"], stats["kaiming"]["activations"]
    # theory: factor 1/2 per hidden layer: 2^-49 ~ 2e-15 from layer 1 to layer 50
    assert xavier["Layer 50"] / xavier["Layer 1"] < 1e-12
    assert xavier["Layer 26"] / xavier["Layer 1"] == pytest.approx(2.0**-25, rel=0.9)
    assert all(0.2 < v / kaiming["Layer 1"] < 5 for key, v in kaiming.items() if key != "Layer 51")
    assert stats["xavier"]["gradients"]["Layer 1"] < 1e-12 * stats["kaiming"]["gradients"]["Layer 1"]


@pytest.mark.parametrize("kwargs", [{"batch_norm": True}, {"residual": True}, {"batch_norm": True, "residual": True}])
def test_batchnorm_and_residual_models_shapes_and_config_round_trip(kwargs, fashion_batch, tmp_path):
    """Logits [N, 10], hidden states [N, width]; from_config rebuilds the model; a checkpoint loads back exactly."""
    model = DeepMLP(6, 32, "relu", **kwargs)
    images = fashion_batch[0][:16]
    assert model(images).shape == (16, 10)
    states = model.hidden_states(images)
    assert len(states) == 7 and all(s.shape == (16, 32) for s in states[:-1])
    assert len(model.norms) == (6 if kwargs.get("batch_norm") else 0)
    assert json.loads(json.dumps(model.config)) == model.config
    twin = DeepMLP.from_config(model.config)
    assert twin.config == model.config
    save_model(model, tmp_path, "m")
    load_model(twin, tmp_path, "m")
    model.eval(), twin.eval()
    torch.testing.assert_close(twin(images), model(images))


def test_schedules_at_key_steps():
    """Step divides by 10 at each third, cosine is half-way at the middle, warm-up ramps linearly, one-cycle peaks."""
    step = schedule_values("step", 0.3, 30)
    assert step[0] == pytest.approx(0.3) and step[9] == pytest.approx(0.3)
    assert step[10] == pytest.approx(0.03) and step[20] == pytest.approx(0.003)
    cosine = schedule_values("cosine", 1.0, 101)
    assert cosine[0] == pytest.approx(1.0) and cosine[50] == pytest.approx(0.5, abs=0.01) and cosine[-1] < 0.01
    warm = schedule_values("cosine", 1.0, 110, warmup_steps=10)
    assert warm[0] == pytest.approx(0.1) and warm[4] == pytest.approx(0.46) and warm[10] == pytest.approx(1.0)
    assert schedule_values("constant", 0.2, 5, warmup_steps=2) == pytest.approx([0.1, 0.15, 0.2, 0.2, 0.2])
    cycle = schedule_values("onecycle", 1.0, 100)
    assert max(cycle) == pytest.approx(1.0, abs=0.01) and 25 <= cycle.index(max(cycle)) <= 31
    assert cycle[0] == pytest.approx(1.0 / 25, rel=0.01) and cycle[-1] < 1e-3


def test_early_stopping_epoch():
    """Stop ``patience`` epochs after the last improvement; a run that keeps improving goes to the end."""
    assert early_stopping_epoch([0.5, 0.6, 0.7, 0.65, 0.66, 0.64], patience=2) == 5
    assert early_stopping_epoch([0.5, 0.6, 0.7, 0.8], patience=1) == 4
    with pytest.raises(ValueError):
        early_stopping_epoch([0.5], patience=0)


def test_train_model_options_schedule_clip_and_patience(small_fashion, tmp_path):
    """A scheduler is stepped per batch, clipping bounds nothing it should not, patience stops a stalled run."""
    torch.manual_seed(0)
    model = DeepMLP(2, 32)
    halve = lambda optimizer, steps: torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)  # noqa: E731
    results = train_model(model, "opt", lambda p: torch.optim.SGD(p, lr=0.1), small_fashion, tmp_path, max_epochs=2,
                          batch_size=1000, progress=False, scheduler_factory=halve, clip_grad_norm=0.5,
                          track_grad_norm=True)
    assert results["epoch_start_lrs"] == pytest.approx([0.1, 0.05])  # 4 steps per epoch
    assert len(results["grad_norms"]) == 8 and results["clip_grad_norm"] == 0.5
    stalled = train_model(DeepMLP(2, 32), "stall", lambda p: torch.optim.SGD(p, lr=0.0), small_fashion, tmp_path,
                          max_epochs=6, batch_size=1000, progress=False, patience=2)
    assert stalled["stopped_epoch"] == 3 and len(stalled["val_scores"]) == 3


@pytest.mark.slow
def test_train_deeper_quick_writes_results_with_provenance(tmp_path):
    """`scripts/train_deeper.py --quick` trains into --out: results with provenance, weights where shipped, summary."""
    names = ["depth10_tanh_lsuv", "depth50_relu_residual", "clip_1"]
    out = subprocess.run([sys.executable, "scripts/train_deeper.py", "--quick", "--out", str(tmp_path), "--only",
                          *names], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1])["runs"] == 3
    for name in names:
        results = json.loads((tmp_path / f"{name}.results.json").read_text())
        assert results["quick"] is True and results["epochs"] == 1 and results["train_size"] == 2000
        assert results["provenance"]["torch"] and results["provenance"]["device"] in ("cpu", "cuda:0")
        assert results["config"] == RUNS_BY_NAME[name].build().config
    assert (tmp_path / "depth50_relu_residual.pt").is_file()  # ships weights
    assert not (tmp_path / "clip_1.pt").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["runs"]) == set(names) and summary["total_s"] > 0


def test_shipped_results_are_complete_and_match_their_config():
    """Every run, and its repeats with the other seeds, ships a full (not quick) results JSON whose config and
    spec are the run's; init stats present."""
    for spec in RUNS + REPEATS:
        results = json.loads((DEEPER_DIR / f"{spec.name}.results.json").read_text())
        assert results["quick"] is False and results["model_name"] == spec.name
        assert results["config"] == spec.build().config and results["spec"]["name"] == spec.name
        assert results["epochs"] == spec.epochs and results["provenance"]["git_commit"]
        if spec.init_stats:
            assert len(results["init_stats"]["activations"]) == spec.model["depth"] + 1
    shipped = {p.name for p in DEEPER_DIR.iterdir()}
    expected = {f"{s.name}.results.json" for s in RUNS + REPEATS} | {"summary.json"} | {
        f"{s.name}{suffix}" for s in RUNS if s.ship_weights for suffix in (".pt", ".config.json")}
    assert shipped == expected
    assert sum((DEEPER_DIR / name).stat().st_size for name in shipped) < 20 * 2**20


@pytest.mark.parametrize("name", [s.name for s in RUNS if s.ship_weights])
def test_shipped_weights_reproduce_their_test_accuracy(name, fashion):
    """The shipped weights, loaded weights-only, give the test accuracy their results report."""
    model = load_model(RUNS_BY_NAME[name].build(), DEEPER_DIR, name)
    results = json.loads((DEEPER_DIR / f"{name}.results.json").read_text())
    assert evaluate(model, fashion.test_images, fashion.test_labels) == pytest.approx(results["test_acc"], abs=1e-4)


def test_load_over_seeds_gives_every_seed_its_own_first_and_only_its_own_in_quick_mode(fashion, tmp_path):
    """Shipped runs load under every seed of SEEDS, the run's own seed first; quick mode trains only that one."""
    never = lambda: pytest.fail("nothing should be trained")  # noqa: E731
    runs = load_over_seeds(["clip_1", "depth10_tanh_orthogonal"], run_settings(env={}), never)
    assert list(runs) == ["clip_1", "depth10_tanh_orthogonal"]
    assert [r["seed"] for r in runs["clip_1"]] == list(SEEDS)
    assert [r["model_name"] for r in runs["clip_1"]] == ["clip_1", "clip_1_seed43", "clip_1_seed44"]
    quick = run_settings(env={"COURSE_QUICK": "1", "COURSE_CHECKPOINTS": str(tmp_path)})
    trained = load_over_seeds(["clip_1"], quick, lambda: fashion)
    assert [r["model_name"] for r in trained["clip_1"]] == ["clip_1"] and trained["clip_1"][0]["quick"]
