"""Shared fixtures: the real FashionMNIST, loaded once per test session."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_lib.data import FashionMNISTSplits, load_fashion_mnist


@pytest.fixture(scope="session")
def fashion() -> FashionMNISTSplits:
    """The real FashionMNIST (from the Debian package or the data cache), on the CPU."""
    return load_fashion_mnist()


@pytest.fixture(scope="session")
def fashion_batch(fashion):
    """The first 1024 training images and labels, as the seed's probes use."""
    return fashion.train_images[:1024], fashion.train_labels[:1024]


@pytest.fixture(scope="session")
def small_fashion(fashion) -> FashionMNISTSplits:
    """A 4k/1k/1k slice of the real data for quick training tests."""
    return FashionMNISTSplits(
        train_images=fashion.train_images[:4000], train_labels=fashion.train_labels[:4000],
        val_images=fashion.val_images[:1000], val_labels=fashion.val_labels[:1000],
        test_images=fashion.test_images[:1000], test_labels=fashion.test_labels[:1000],
    )


@pytest.fixture(autouse=True)
def _seed_each_test():
    """Each test starts from the same torch seed, so statistical assertions are reproducible."""
    torch.manual_seed(0)
