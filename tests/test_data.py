"""FashionMNIST: finding, verifying, normalizing, splitting and batching the real data."""

import gzip
import shutil

import numpy as np
import pytest
import torch
import torchvision

from course_lib import data
from course_lib.data import (
    RAW_SHA256,
    BatchLoader,
    ChecksumError,
    DatasetNotFoundError,
    load_fashion_mnist,
    prepare_fashion_mnist,
    read_idx,
)


@pytest.fixture(scope="module")
def raw_dir():
    """The verified raw folder the session's data came from."""
    return prepare_fashion_mnist()


def test_shapes_dtypes_and_split_sizes(fashion):
    """50k/10k/10k images of 784 floats with int64 labels in 0..9."""
    assert fashion.train_images.shape == (50_000, 784)
    assert fashion.val_images.shape == (10_000, 784)
    assert fashion.test_images.shape == (10_000, 784)
    assert fashion.train_images.dtype == torch.float32
    for labels in (fashion.train_labels, fashion.val_labels, fashion.test_labels):
        assert labels.dtype == torch.int64
        assert labels.min() == 0 and labels.max() == 9
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10


def test_normalization_constants_match_training_images(raw_dir):
    """TRAIN_MEAN/TRAIN_STD are the statistics of the 60k training pixels scaled to [0, 1]."""
    pixels = torch.from_numpy(read_idx(raw_dir / "train-images-idx3-ubyte").astype(np.float64)) / 255
    assert pixels.mean().item() == pytest.approx(data.TRAIN_MEAN, abs=5e-5)
    assert pixels.std().item() == pytest.approx(data.TRAIN_STD, abs=5e-5)


def test_normalized_data_has_mean_zero_std_one(fashion):
    """After normalization the training images have mean ~0 and std ~1 (the seed reports 0.008/1.009 on a batch)."""
    assert abs(fashion.train_images.mean().item()) < 0.01
    assert fashion.train_images.std().item() == pytest.approx(1.0, abs=0.01)


def test_split_equals_seed_random_split(raw_dir, fashion):
    """The 50k/10k split is the seed tutorial's random_split with seed 42 over torchvision's dataset."""
    tv = torchvision.datasets.FashionMNIST(root=str(raw_dir.parent.parent), train=True, download=False)
    seeded = torch.Generator().manual_seed(42)
    train_set, val_set = torch.utils.data.random_split(tv, [50_000, 10_000], generator=seeded)
    assert torch.equal(tv.targets[train_set.indices], fashion.train_labels)
    assert torch.equal(tv.targets[val_set.indices], fashion.val_labels)
    expected = (tv.data[val_set.indices[:5]].reshape(5, -1).float() / 255 - data.TRAIN_MEAN) / data.TRAIN_STD
    assert torch.allclose(expected, fashion.val_images[:5])


def test_checksums_are_of_decompressed_files(raw_dir):
    """Every raw idx file hashes to the SHA-256 in RAW_SHA256."""
    for name, digest in RAW_SHA256.items():
        assert data.sha256_of(raw_dir / name) == digest


def test_explicit_root_is_used_first(tmp_path, raw_dir, monkeypatch):
    """Files already in ROOT/FashionMNIST/raw are used; the Debian folder is not needed."""
    target = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(raw_dir, target)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    assert prepare_fashion_mnist(tmp_path, download=False) == target


def test_course_data_env_var_sets_root(tmp_path, monkeypatch):
    """COURSE_DATA names the default root."""
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.default_data_root() == tmp_path


def test_debian_files_are_gunzipped_into_root(tmp_path, raw_dir, monkeypatch):
    """With an empty root, the Debian .gz files are decompressed into it and verified."""
    if not all((data.DEBIAN_DIR / f"{n}.gz").is_file() for n in RAW_SHA256):
        pytest.fail("dataset-fashion-mnist is not installed: scripts/install.sh installs it")
    raw = prepare_fashion_mnist(tmp_path / "fresh", download=False)
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW_SHA256)


def test_truncated_file_raises_checksum_error_naming_it(tmp_path, raw_dir):
    """A truncated idx file gives a ChecksumError that names the file."""
    target = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(raw_dir, target)
    victim = target / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path, download=False)


def test_corrupt_debian_copy_raises_checksum_error(tmp_path, raw_dir, monkeypatch):
    """A corrupt .gz in the Debian folder is caught after decompression, naming the file."""
    fake_debian = tmp_path / "debian"
    fake_debian.mkdir()
    for name in RAW_SHA256:
        content = (raw_dir / name).read_bytes()
        if name == "train-labels-idx1-ubyte":
            content = content[:-1] + bytes([(content[-1] + 1) % 10])
        with gzip.open(fake_debian / f"{name}.gz", "wb", compresslevel=1) as f:
            f.write(content)
    monkeypatch.setattr(data, "DEBIAN_DIR", fake_debian)
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte"):
        prepare_fashion_mnist(tmp_path / "root", download=False)


def test_no_data_and_no_network_names_three_ways(tmp_path, monkeypatch):
    """Nothing on disk and a failing download give one error naming the three ways to get the data."""
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    # A closed local port stands in for "no network": torchvision's real download code fails on it.
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DatasetNotFoundError) as err:
        prepare_fashion_mnist(tmp_path / "empty", download=True)
    message = str(err.value)
    assert "COURSE_DATA" in message and "dataset-fashion-mnist" in message and "internet" in message
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        prepare_fashion_mnist(tmp_path / "empty2", download=False)


def test_read_idx_rejects_non_idx_file(tmp_path):
    """A file without the idx magic number is refused."""
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"\x00\x00\x09\x03" + bytes(20))
    with pytest.raises(ChecksumError, match="not an idx"):
        read_idx(bogus)


def test_batch_loader_covers_every_example_once_per_epoch():
    """Shuffled batches are a permutation of the data; sizes and len() agree; drop_last drops the tail."""
    images = torch.arange(1000, dtype=torch.float32).unsqueeze(1)
    labels = torch.arange(1000)
    loader = BatchLoader(images, labels, batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(1))
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert [len(b[1]) for b in batches] == [256, 256, 256, 232]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(1000)) and seen.tolist() != list(range(1000))
    assert all(torch.equal(x[:, 0].long(), y) for x, y in batches)  # images stay paired with labels
    assert len(BatchLoader(images, labels, 256, drop_last=True)) == 3
    assert sum(len(y) for _, y in BatchLoader(images, labels, 256, drop_last=True)) == 768


def test_batch_loader_is_reproducible_and_reshuffles_each_epoch():
    """The same generator seed gives the same order; a second epoch gives a different one."""
    images, labels = torch.zeros(100, 1), torch.arange(100)
    first = BatchLoader(images, labels, 10, shuffle=True, generator=torch.Generator().manual_seed(3))
    second = BatchLoader(images, labels, 10, shuffle=True, generator=torch.Generator().manual_seed(3))
    epoch1 = torch.cat([y for _, y in first])
    assert torch.equal(epoch1, torch.cat([y for _, y in second]))
    assert not torch.equal(epoch1, torch.cat([y for _, y in first]))


def test_batch_loader_rejects_mismatched_lengths():
    """Images and labels of different lengths are an error, not a silent truncation."""
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        BatchLoader(torch.zeros(10, 1), torch.zeros(9), 4)
