"""train_model on the real FashionMNIST: training, best checkpoint, load-if-present, safe formats."""

import json
import zipfile

import pytest
import torch

from course_lib.checkpoints import ConfigMismatchError, checkpoint_paths, load_model, save_model
from course_lib.models import BaseNetwork
from course_lib.training import evaluate, train_model

SMALL = dict(input_size=784, num_classes=10, hidden_sizes=(64, 32))


def adam(params):
    """torch's Adam at the seed's learning rate."""
    return torch.optim.Adam(params, lr=1e-3)


@pytest.fixture(scope="module")
def trained(small_fashion, tmp_path_factory):
    """One 3-epoch training run on 4k real images, shared by the tests below."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    model = BaseNetwork("relu", **SMALL)
    results = train_model(model, "small_adam", adam, small_fashion, folder, max_epochs=3, progress=False)
    return model, results, folder


def test_results_json_has_curves_test_accuracy_and_provenance(trained):
    """Curves of the right length, a better-than-chance test accuracy and where it ran, also on disk."""
    model, results, folder = trained
    assert len(results["val_scores"]) == len(results["train_scores"]) == 3
    assert len(results["train_losses"]) == 3 * 16  # 4000 / 256 -> 16 batches per epoch
    assert results["test_acc"] > 0.6  # chance is 0.1
    assert results["train_losses"][-1] < results["train_losses"][0]
    prov = results["provenance"]
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__
    assert results["wall_time_s"] > 0 and results["epochs"] == 3 and results["seed"] == 42
    on_disk = json.loads(checkpoint_paths(folder, "small_adam")["results"].read_text())
    assert on_disk["test_acc"] == results["test_acc"]


def test_the_best_validation_epoch_is_kept(trained, small_fashion):
    """The model left in memory (and on disk) is the best validation epoch's, and the test accuracy is its own."""
    model, results, folder = trained
    best = max(results["val_scores"])
    assert results["best_epoch"] == results["val_scores"].index(best) + 1
    assert evaluate(model, small_fashion.val_images, small_fashion.val_labels) == pytest.approx(best)
    assert evaluate(model, small_fashion.test_images, small_fashion.test_labels) == pytest.approx(results["test_acc"])


def test_second_call_loads_instead_of_training(trained, small_fashion, capsys):
    """With a checkpoint present, train_model loads it, says why, and returns the stored results."""
    model, results, folder = trained
    fresh = BaseNetwork("relu", **SMALL)
    again = train_model(fresh, "small_adam", adam, small_fashion, folder, max_epochs=3, progress=False)
    assert "Loaded small_adam" in capsys.readouterr().out
    assert again == json.loads(json.dumps(results))
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_overwrite_retrains(trained, small_fashion, capsys, tmp_path):
    """overwrite=True trains again and says so."""
    _, _, folder = trained
    scratch = tmp_path / "copy"
    train_model(BaseNetwork("relu", **SMALL), "m", adam, small_fashion, scratch, max_epochs=1, progress=False)
    train_model(BaseNetwork("relu", **SMALL), "m", adam, small_fashion, scratch, max_epochs=1, overwrite=True,
                progress=False)
    assert "overwrite=True" in capsys.readouterr().out


def test_pretrained_dir_is_the_fallback(trained, small_fashion, tmp_path, capsys):
    """An empty checkpoint folder falls back to the pretrained folder (the shipped solutions)."""
    _, results, folder = trained
    loaded = train_model(BaseNetwork("relu", **SMALL), "small_adam", adam, small_fashion, tmp_path / "empty",
                         pretrained_dir=folder, progress=False)
    assert loaded["test_acc"] == results["test_acc"]
    assert str(folder) in capsys.readouterr().out


def test_checkpoint_is_plain_tensors_and_loads_weights_only(trained):
    """The .pt file holds only tensors (loads with weights_only=True) and no pickled Python class."""
    _, _, folder = trained
    path = checkpoint_paths(folder, "small_adam")["weights"]
    state = torch.load(path, weights_only=True)
    assert set(state) == {f"layers.{i}.{k}" for i in (0, 2, 4) for k in ("weight", "bias")}
    with zipfile.ZipFile(path) as archive:
        pickled = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        assert b"course_lib" not in archive.read(pickled)


def test_config_mismatch_names_the_field(trained, tmp_path):
    """Loading into a model with other hidden sizes fails, naming hidden_sizes and both values."""
    _, _, folder = trained
    wrong = BaseNetwork("relu", input_size=784, num_classes=10, hidden_sizes=(64, 16))
    with pytest.raises(ConfigMismatchError, match=r"hidden_sizes: model has \[64, 16\], .* has \[64, 32\]"):
        load_model(wrong, folder, "small_adam")
    other_act = BaseNetwork("tanh", **SMALL)
    with pytest.raises(ConfigMismatchError, match="act_fn"):
        load_model(other_act, folder, "small_adam")


def test_save_load_round_trip(tmp_path):
    """save_model then load_model restores every tensor exactly."""
    a, b = BaseNetwork("sigmoid", **SMALL), BaseNetwork("sigmoid", **SMALL)
    save_model(a, tmp_path, "net")
    load_model(b, tmp_path, "net")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert json.loads((tmp_path / "net.config.json").read_text())["act_fn"] == "sigmoid"
